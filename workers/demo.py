"""``mixwith demo``: a varied catalog built offline, ingested, and one phone memo answered.

Tracks are rendered by ``engine.synth`` (drums, bass, chords, lead) so their
tempo and key are real properties of the audio, then written as FLAC like a
DJ's own files. The query is an excerpt of one of them, degraded like a voice
memo recorded in a club and encoded as AAC in .m4a.
"""

from __future__ import annotations

import logging
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import numpy as np
import soundfile as sf

from engine.degrade import phone_memo, write_aac
from engine.synth import TrackSpec, demo_specs, render
from workers.catalog import CatalogUpdate, ProgressCallback, add_to_catalog
from workers.messages import MixOptions, MixResult
from workers.pipeline import recommend_file
from workers.settings import Settings

logger = logging.getLogger(__name__)

_ADJECTIVES = ("Midnight", "Neon", "Velvet", "Solar", "Deep", "Broken", "Golden", "Hollow", "Electric", "Quiet", "Lunar", "Rapid")
_NOUNS = ("Drive", "Signal", "Garden", "Circuit", "Tide", "Motion", "Echo", "Skyline", "Pulse", "Harbor", "Static", "Bloom")
_ARTISTS = ("Kaito Ren", "Mara Voss", "DJ Okapi", "Lumen Field", "Sable & Stone", "Nadia Q", "Tessellate", "Hot Plate")


@dataclass(frozen=True)
class DemoTrack:
    spec: TrackSpec
    title: str
    artist: str
    path: Path


@dataclass(frozen=True)
class DemoOutcome:
    tracks: tuple[DemoTrack, ...]
    ingest: CatalogUpdate
    memo_path: Path
    memo_of: DemoTrack
    result: MixResult


def _title(i: int) -> str:
    return f"{_ADJECTIVES[i % len(_ADJECTIVES)]} {_NOUNS[(i * 5 + i // len(_NOUNS)) % len(_NOUNS)]}"


def write_demo_catalog(folder: Path, *, count: int, duration_s: float, sr: int = 22050) -> list[DemoTrack]:
    """Render the demo tracks as tagged FLAC files in ``folder`` (skipping ones already there)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, spec in enumerate(demo_specs(count=count, duration_s=duration_s)):
        title = _title(i)
        artist = _ARTISTS[i % len(_ARTISTS)]
        path = folder / f"{i + 1:02d} {artist} - {title}.flac"
        if not path.exists():
            y = render(spec, sr=sr)
            tmp = path.with_suffix(".tmp.flac")
            sf.write(tmp, y, sr, format="FLAC")
            _tag(tmp, title=title, artist=artist, genre=spec.style)
            tmp.replace(path)
        out.append(DemoTrack(spec=spec, title=title, artist=artist, path=path))
    return out


def _tag(path: Path, *, title: str, artist: str, genre: str) -> None:
    from mutagen.flac import FLAC

    f = FLAC(path)
    f["title"] = title
    f["artist"] = artist
    f["album"] = "mixwith demo"
    f["genre"] = genre
    f.save()


def make_memo(track: DemoTrack, folder: Path, *, seconds: float = 12.0, seed: int = 3) -> Path:
    """A phone-memo-like excerpt of ``track``: reverb, crowd at 5 dB SNR, 150 Hz–7 kHz, AAC 64 kbps."""
    y, sr = sf.read(track.path, dtype="float32")
    rng = np.random.default_rng(seed)
    start = int(len(y) * 0.3)
    clip = y[start : start + int(seconds * sr)]
    memo = phone_memo(clip, sr=sr, rng=rng, snr_db=5.0, rt60_s=0.5)
    return write_aac(memo, sr=sr, path=folder / "voice-memo.m4a", bitrate_kbps=64)


async def run_demo(
    pool: asyncpg.Pool,
    *,
    settings: Settings,
    count: int = 48,
    duration_s: float = 30.0,
    results: int = 10,
    on_progress: ProgressCallback | None = None,
    executor: Executor | None = None,
) -> DemoOutcome:
    """Build (or reuse) the demo catalog under the data home, ingest it, answer a memo."""
    folder = settings.home / "demo"
    tracks = write_demo_catalog(folder / "tracks", count=count, duration_s=duration_s, sr=settings.audio.sample_rate)
    report = await add_to_catalog(
        pool, [t.path for t in tracks], settings=settings, source="demo", on_progress=on_progress, executor=executor
    )
    memo_of = tracks[len(tracks) // 3]
    memo = make_memo(memo_of, folder)
    result = await recommend_file(
        pool, memo, settings=settings, options=MixOptions(count=results), executor=executor
    )
    return DemoOutcome(tracks=tuple(tracks), ingest=report, memo_path=memo, memo_of=memo_of, result=result)
