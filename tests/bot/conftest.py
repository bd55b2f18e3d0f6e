"""Fixtures for the bot tests: a real database, a small synthesized catalog, the production job path.

Every bot talks to the workers' queue (``bot.core.QueueRunner`` over
``workers.broker.open_queue``): the in-memory broker with a worker in this
process, as ``mixwith serve`` runs by default. The catalog's tracks are
stored as ``catalog add`` stores them and fingerprinted, so clips are
identified, analysed and ranked by the real pipeline.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from pathlib import Path

import asyncpg
import numpy as np
import pytest
import soundfile as sf

from bot.core import MixService, QueueRunner
from db.queries import tracks as tracks_q
from engine.analysis import Analysis, analyze
from engine.synth import TrackSpec, demo_specs, render
from workers.broker import open_queue
from workers.processes import make_executor
from workers.identify import index_tracks
from workers.settings import BotSettings, Settings
from workers.tasks import JobClient

SR = 22050
TITLES = ("Sunset Drive", "Iron Pulse", "Rolling Thunder", "Late Night Bounce", "Slow Tide", "Mirror Ball")


@dataclass(frozen=True)
class CatalogTrack:
    track_id: int
    title: str
    artist: str
    path: Path
    spec: TrackSpec
    analysis: Analysis


@pytest.fixture(scope="session")
def catalog_audio(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, TrackSpec, Analysis]]:
    """Six synthesized tracks of known style, tempo and key, rendered and analysed once per session."""
    root = tmp_path_factory.mktemp("catalog")
    out = []
    for i, spec in enumerate(demo_specs(count=len(TITLES), duration_s=20.0, seed=11)):
        y = render(spec, sr=SR)
        path = root / f"track{i}.wav"
        sf.write(path, y, SR)
        out.append((path, spec, analyze(y, sr=SR)))
    return out


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The shared test settings, letting workers fetch links from the local fake servers."""
    return replace(settings, fetch=replace(settings.fetch, allow_loopback_for_tests=True))


@pytest.fixture
async def catalog(pool: asyncpg.Pool, catalog_audio: list, settings: Settings) -> list[CatalogTrack]:
    """The six tracks stored in the (per-test, emptied) database as the catalog ingest stores them, fingerprinted."""
    tracks = []
    async with pool.acquire() as conn:
        for i, (path, spec, a) in enumerate(catalog_audio):
            title, artist = TITLES[i], f"Synth Artist {i}"
            tid, _ = await tracks_q.add_analyzed_track(
                conn, content_hash=f"synth-{i}", title=title, artist=artist, album="", genre=spec.style,
                path=str(path), source="library", analysis=a.to_dict(),
            )
            tracks.append(CatalogTrack(tid, title, artist, path, spec, a))
    await index_tracks(pool, settings, [(t.track_id, str(t.path)) for t in tracks])
    return tracks


def memo_of(track: CatalogTrack, out: Path, *, start_s: float = 4.0, duration_s: float = 10.0, seed: int = 3) -> Path:
    """A phone-memo-like clip of a catalog track: an excerpt, quieter, with room noise, as AAC in .m4a."""
    y, _ = sf.read(track.path, dtype="float32")
    clip = y[int(start_s * SR) : int((start_s + duration_s) * SR)] * 0.6
    clip = clip + np.random.default_rng(seed).normal(0, 0.01, clip.shape).astype(np.float32)
    wav = out.with_suffix(".wav")
    sf.write(wav, clip, SR)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(wav), "-c:a", "aac", "-b:a", "96k", str(out)], check=True)
    wav.unlink()
    return out


@pytest.fixture(scope="session")
def engine_pool() -> Iterator[Executor]:
    """One engine process pool for the whole session (starting one per test costs seconds)."""
    executor = make_executor(1)
    yield executor
    executor.shutdown(cancel_futures=True)


@pytest.fixture
async def jobs(settings: Settings, engine_pool: Executor) -> AsyncIterator[JobClient]:
    """The workers' queue as ``mixwith serve`` opens it: in-memory broker, a worker in this process."""
    async with open_queue(settings, executor=engine_pool) as client:
        yield client


@pytest.fixture
def make_service(pool: asyncpg.Pool, catalog: list[CatalogTrack], jobs: JobClient,
                 tmp_path: Path) -> Callable[..., MixService]:
    """Build MixServices over the catalog on the production job path."""

    def build(*, settings: BotSettings | None = None, playlists: object = None, runner: object = None) -> MixService:
        return MixService(
            runner=runner or QueueRunner(jobs),  # type: ignore[arg-type]
            settings=settings or BotSettings(progress_interval_s=0.0, user_per_minute=100),
            spool_dir=tmp_path / "spool", pool=pool, playlists=playlists,  # type: ignore[arg-type]
        )

    return build
