"""Fixtures for the bot tests: a real database, a small synthesized catalog, a job runner.

The runner here calls the real engine (decode, analyse, score) in a thread
through ``bot.core.ThreadRunner``. Until ``workers/pipeline.py`` lands on main
it also does the catalog lookup itself, by comparing the clip's spectrum
with each catalog track's, which is enough to tell six synthesized tracks
apart; the lead's pipeline (fingerprints, embeddings, ALS) replaces it.
"""

from __future__ import annotations

import subprocess
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import numpy as np
import pytest
import soundfile as sf

from bot.core import MixService, ThreadRunner
from db.queries import tracks as tracks_q
from engine.analysis import Analysis, analyze
from engine.audio import load
from engine.camelot import parse_key
from engine.rank import TrackFeatures, Weights, score_candidates
from engine.spectrum import stft_magnitude
from engine.synth import TrackSpec, demo_specs, render
from engine.errors import DecodeError
from workers.errors import FetchError, InputError
from workers.messages import Candidate, MixRequest, MixResult, Progress
from workers.settings import BotSettings

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
    envelope: np.ndarray  # mean log spectrum, for the stand-in lookup


def _envelope(y: np.ndarray) -> np.ndarray:
    mag = stft_magnitude(y, sr=SR, n_fft=2048, hop_length=1024)
    env = np.log1p(mag.S.mean(axis=1))
    return env / (np.linalg.norm(env) + 1e-9)


@pytest.fixture(scope="session")
def catalog_audio(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, TrackSpec, Analysis, np.ndarray]]:
    """Six synthesized tracks of known style, tempo and key, rendered and analysed once per session."""
    root = tmp_path_factory.mktemp("catalog")
    out = []
    for i, spec in enumerate(demo_specs(count=len(TITLES), duration_s=20.0, seed=11)):
        y = render(spec, sr=SR)
        path = root / f"track{i}.wav"
        sf.write(path, y, SR)
        out.append((path, spec, analyze(y, sr=SR), _envelope(y)))
    return out


@pytest.fixture
async def catalog(pool: asyncpg.Pool, catalog_audio: list) -> list[CatalogTrack]:
    """The six tracks stored in the (per-test, emptied) database as the catalog ingest stores them."""
    tracks = []
    async with pool.acquire() as conn:
        for i, (path, spec, a, env) in enumerate(catalog_audio):
            title, artist = TITLES[i], f"Synth Artist {i}"
            tid, _ = await tracks_q.add_analyzed_track(
                conn, content_hash=f"synth-{i}", title=title, artist=artist, album="", genre=spec.style,
                path=str(path), source="library", analysis=a.to_dict(),
            )
            tracks.append(CatalogTrack(tid, title, artist, path, spec, a, env))
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


def make_run(tracks: list[CatalogTrack]) -> Callable[[MixRequest, Callable[[Progress], None]], MixResult]:
    """A blocking job function over ``tracks`` with the real engine."""

    def run(req: MixRequest, report: Callable[[Progress], None]) -> MixResult:
        try:
            return _run(req, report)
        except DecodeError as exc:  # as the workers do: engine input errors become user errors
            raise InputError(f"I could not read that audio: {exc}.") from exc

    def _run(req: MixRequest, report: Callable[[Progress], None]) -> MixResult:
        report(Progress(req.request_id, "fetching", "reading your clip"))
        if req.upload_path is not None:
            y = load(req.upload_path, sr=SR, max_seconds=60.0)
        else:
            # Direct links to a local fake host stand in for workers/sources here.
            with tempfile.TemporaryDirectory() as d:
                path = Path(d) / Path(urllib.parse.urlparse(req.input_ref).path).name
                try:
                    with urllib.request.urlopen(req.input_ref, timeout=10) as r:
                        path.write_bytes(r.read())
                except OSError as exc:
                    raise FetchError("That link could not be fetched.") from exc
                y = load(path, sr=SR, max_seconds=60.0)
        report(Progress(req.request_id, "identifying"))
        env = _envelope(y)
        sims = [float(env @ t.envelope) for t in tracks]
        best = int(np.argmax(sims))
        ident = tracks[best] if sims[best] > 0.97 else None
        report(Progress(req.request_id, "analysing"))
        a = ident.analysis if ident else analyze(y, sr=SR)
        report(Progress(req.request_id, "ranking"))
        feats = {t.track_id: TrackFeatures(t.track_id, t.analysis.bpm, parse_key(t.analysis.key), t.analysis.energy, t.artist) for t in tracks}
        qid = ident.track_id if ident else -1
        query = TrackFeatures(qid, a.bpm, parse_key(a.key), a.energy)
        scored = score_candidates(query, list(feats.values()), weights=Weights())[: req.options.count]
        by_id = {t.track_id: t for t in tracks}
        results = tuple(
            Candidate(
                rank=i, track_id=s.track_id, title=by_id[s.track_id].title, artist=by_id[s.track_id].artist,
                path=str(by_id[s.track_id].path), bpm=by_id[s.track_id].analysis.bpm, key=by_id[s.track_id].analysis.key,
                camelot=by_id[s.track_id].analysis.camelot, energy=by_id[s.track_id].analysis.energy, score=s.score,
                reasons=s.reasons, components=dict(s.components), sources=s.sources,
                isrc=f"QZTST26{tracks.index(by_id[s.track_id]):05d}",
            )
            for i, s in enumerate(scored, start=1)
        )
        q = a.to_dict()
        q["identified"] = {"track_id": ident.track_id, "title": ident.title, "artist": ident.artist} if ident else None
        return MixResult(req.request_id, q, results, () if ident else ("Not in the catalog: matched by its analysis.",))

    return run


@pytest.fixture
def make_service(pool: asyncpg.Pool, catalog: list[CatalogTrack], tmp_path: Path) -> Iterator[Callable[..., MixService]]:
    """Build MixServices over the catalog with the real engine runner; closed after the test."""
    runners: list = []

    def build(
        *, settings: BotSettings | None = None, playlists: object = None, concurrency: int = 2, runner: object = None
    ) -> MixService:
        if runner is None:
            runner = ThreadRunner(make_run(catalog), concurrency=concurrency)
        runners.append(runner)
        return MixService(
            runner=runner, settings=settings or BotSettings(progress_interval_s=0.0, user_per_minute=100),
            spool_dir=tmp_path / "spool", pool=pool, playlists=playlists,  # type: ignore[arg-type]
        )

    yield build
    for r in runners:
        if hasattr(r, "close"):
            r.close()
