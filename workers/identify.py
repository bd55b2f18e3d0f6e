"""Fingerprinting catalog tracks and identifying clips against them.

The fingerprint index is one directory (``settings.fingerprint_dir``) that
every worker process memory-maps; hashes never go to PostgreSQL, only the
index's version and size go to ``model_versions`` (kind ``fingerprints``).
Catalog ids (``tracks.id``) are the index's track ids. The engine does the
work; this module decodes files, runs the engine off the event loop and joins
matches with catalog metadata.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from db.queries import models as models_q
from db.queries import tracks as tracks_q
from engine.audio import DecodeLimits, load
from engine.errors import EngineError
from engine.fingerprint import (
    DEFAULT_CALIBRATION,
    FP_SR,
    Fingerprints,
    Identification,
    Match,
    fingerprint,
)
from engine.fpindex import FingerprintIndex
from workers.errors import InputError
from workers.settings import AudioSettings, Settings

logger = logging.getLogger(__name__)

MODEL_KIND = "fingerprints"


@dataclass(frozen=True)
class FingerprintJob:
    """The outcome of fingerprinting one catalog file (made in a worker process)."""

    track_id: int
    path: str
    fingerprints: Fingerprints | None = None
    error: str | None = None


@dataclass(frozen=True)
class IndexUpdate:
    """What an index update did."""

    indexed: tuple[int, ...]
    failed: tuple[tuple[int, str], ...]
    version: int


def open_index(settings: Settings) -> FingerprintIndex:
    """The catalog's fingerprint index (created empty on first use)."""
    return FingerprintIndex.open(settings.fingerprint_dir, create=True, max_segments=settings.identify.max_segments)


def fingerprint_file(path: str | Path, audio: AudioSettings) -> Fingerprints:
    """Decode a whole catalog file at the fingerprint rate and fingerprint it.

    Raises
    ------
    EngineError
        With the decoder's reason.
    """
    y = load(path, sr=FP_SR, limits=audio.limits)
    return fingerprint(y, sr=FP_SR)


def fingerprint_job(track_id: int, path: str, audio: AudioSettings) -> FingerprintJob:
    """``fingerprint_file`` for a process pool: never raises for bad input."""
    try:
        return FingerprintJob(track_id, path, fingerprints=fingerprint_file(path, audio))
    except EngineError as exc:
        return FingerprintJob(track_id, path, error=getattr(exc, "reason", str(exc)))
    except Exception as exc:  # a bug on one file must not lose the batch; logged with traceback
        logger.exception("fingerprinting failed on %s", path)
        return FingerprintJob(track_id, path, error=f"internal error: {type(exc).__name__}: {exc}")


async def register_index(pool: asyncpg.Pool, index: FingerprintIndex) -> None:
    """Record the index's current version in ``model_versions`` (workers reload on a new one)."""
    async with pool.acquire() as conn:
        await models_q.register(
            conn, kind=MODEL_KIND, version=str(index.version), artifact_path=str(index.path),
            metrics=index.stats().to_dict(),
        )


async def index_tracks(
    pool: asyncpg.Pool,
    settings: Settings,
    tracks: Sequence[tuple[int, str]],
    *,
    executor: Executor | None = None,
) -> IndexUpdate:
    """Fingerprint catalog tracks and add them to the index in one new version.

    Parameters
    ----------
    pool : asyncpg.Pool
    settings : Settings
    tracks : sequence of (track_id, path)
        Usually ``IngestReport.added``.
    executor : Executor, optional
        Where decoding and fingerprinting run; a process pool by default.
    """
    index = open_index(settings)
    if not tracks:
        return IndexUpdate(indexed=(), failed=(), version=index.version)
    good, failed = await _fingerprint_files(settings, tracks, executor)
    if good:
        await asyncio.get_running_loop().run_in_executor(None, index.add_many, good)
        await register_index(pool, index)
    return IndexUpdate(indexed=tuple(t for t, _ in good), failed=failed, version=index.version)


async def _fingerprint_files(
    settings: Settings, tracks: Sequence[tuple[int, str]], executor: Executor | None
) -> tuple[list[tuple[int, Fingerprints]], tuple[tuple[int, str], ...]]:
    """Fingerprints of the files that worked, and (track_id, reason) of those that did not."""
    loop = asyncio.get_running_loop()
    own = executor is None
    if own:
        from workers.processes import make_executor

        executor = make_executor(min(settings.audio.processes, len(tracks)))
    try:
        jobs = await asyncio.gather(
            *(loop.run_in_executor(executor, fingerprint_job, int(t), str(p), settings.audio) for t, p in tracks)
        )
    finally:
        if own and executor is not None:
            executor.shutdown(cancel_futures=True)
    good = [(j.track_id, j.fingerprints) for j in jobs if j.fingerprints is not None]
    failed = tuple((j.track_id, j.error or "no fingerprints") for j in jobs if j.fingerprints is None)
    for tid, reason in failed:
        logger.warning("track %d not fingerprinted: %s", tid, reason)
    return good, failed


async def reindex_catalog(pool: asyncpg.Pool, settings: Settings, *, executor: Executor | None = None) -> IndexUpdate:
    """Fingerprint every catalog track into a fresh index and put it in place of the old one.

    For an index of an older format (which ``open_index`` refuses) or a damaged one.
    The fresh index is built beside the old one, so identification keeps working
    (or keeps failing clearly) until the swap.
    """
    async with pool.acquire() as conn:
        rows = await tracks_q.list_tracks(conn)
    root = settings.fingerprint_dir
    fresh_dir = root.with_name(root.name + ".reindex")
    shutil.rmtree(fresh_dir, ignore_errors=True)
    old_version = FingerprintIndex.stored_version(root)
    # go on numbering from the index being replaced: model_versions keeps one row per version
    fresh = FingerprintIndex.open(fresh_dir, create=True, max_segments=settings.identify.max_segments,
                                  first_version=0 if old_version is None else old_version + 1)
    good, failed = await _fingerprint_files(settings, [(r.id, r.path) for r in rows], executor) if rows else ([], ())
    loop = asyncio.get_running_loop()
    if good:
        await loop.run_in_executor(None, fresh.add_many, good)
    old_dir = root.with_name(root.name + ".old")
    shutil.rmtree(old_dir, ignore_errors=True)
    if root.exists():
        root.rename(old_dir)
    fresh_dir.rename(root)
    shutil.rmtree(old_dir, ignore_errors=True)
    index = open_index(settings)
    await register_index(pool, index)
    logger.info("fingerprint index rebuilt: %d tracks, %d failed", len(good), len(failed))
    return IndexUpdate(indexed=tuple(t for t, _ in good), failed=failed, version=index.version)


async def unindex_tracks(pool: asyncpg.Pool, settings: Settings, track_ids: Sequence[int]) -> int:
    """Remove tracks from the index (unknown ids are ignored); return its version."""
    index = open_index(settings)
    if track_ids:
        before = index.version
        await asyncio.get_running_loop().run_in_executor(None, index.remove, [int(t) for t in track_ids])
        if index.version != before:
            await register_index(pool, index)
    return index.version


def identify_file(path: str | Path, *, settings: Settings, index: FingerprintIndex) -> Identification:
    """Identify the catalog track in a clip on disk (synchronous: run it off the event loop).

    Raises
    ------
    InputError
        When the clip cannot be decoded (with the decoder's reason).
    """
    limits: DecodeLimits = settings.audio.limits
    try:
        y = load(path, sr=FP_SR, limits=limits, max_seconds=settings.identify.query_seconds, check_silence=False)
    except EngineError as exc:
        raise InputError(f"{Path(path).name}: {getattr(exc, 'reason', exc)}") from None
    index.reload()
    calibration = DEFAULT_CALIBRATION
    if settings.identify.accept_confidence != calibration.accept_confidence:
        from dataclasses import replace

        calibration = replace(calibration, accept_confidence=settings.identify.accept_confidence)
    return index.identify(y, sr=FP_SR, calibration=calibration)


def _describe(m: Match, row: tracks_q.TrackRow) -> dict[str, Any]:
    return {
        "track_id": row.id, "title": row.title, "artist": row.artist, "path": row.path,
        "offset": m.offset_s, "score": m.score, "confidence": m.confidence, "speed": m.speed,
        "verified": m.verified, "dense_verified": m.dense_verified,
    }


async def identify_clip(
    pool: asyncpg.Pool, path: str | Path, *, settings: Settings, executor: Executor | None = None
) -> dict[str, Any]:
    """``{"match": {...} | None, "candidates": [...]}`` for a clip, with catalog metadata.

    The public JSON of ``mixwith identify FILE --json``: match and candidates carry
    track_id, title, artist, path, offset (s into the track), score (aligned
    hashes), confidence (calibrated 0–1), speed (1.03 = played 3 % fast),
    verified (how far the track's own peaks stand out in the clip, in standard
    deviations of chance) and dense_verified (the same for its per-frame band bits).
    """
    index = open_index(settings)
    loop = asyncio.get_running_loop()
    ident = await loop.run_in_executor(executor, lambda: identify_file(path, settings=settings, index=index))
    async with pool.acquire() as conn:
        rows = await tracks_q.get_tracks(conn, [c.track_id for c in ident.candidates])
    candidates = [_describe(c, rows[c.track_id]) for c in ident.candidates if c.track_id in rows]
    matched = None
    if ident.match is not None and ident.match.track_id in rows:
        matched = _describe(ident.match, rows[ident.match.track_id])
    elif ident.match is not None:
        logger.warning("index names track %d, which the catalog no longer has", ident.match.track_id)
    return {"match": matched, "candidates": candidates, "index_version": index.version}
