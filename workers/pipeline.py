"""The /mixwith job as plain stage functions: analyse → candidates → rank → order.

Front ends and queue tasks call ``recommend_file`` (audio on local disk) or
``recommend_track`` (a catalog track). Engine work runs off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from db.queries import tracks as tracks_q
from engine.camelot import Key, parse_key
from engine.errors import EngineError
from engine.rank import Scored, TrackFeatures, Weights, score_candidates
from workers.catalog import process_file
from workers.errors import InputError, NotFoundError
from workers.messages import Candidate, MixOptions, MixResult, Stage
from workers.settings import Settings

logger = logging.getLogger(__name__)

StageCallback = Callable[[Stage, str], None]


@dataclass(frozen=True)
class Query:
    """What we know about the input: its analysis and, if found, its catalog track."""

    analysis: dict[str, Any]
    track_id: int | None = None
    title: str = ""
    artist: str = ""
    identified: dict[str, Any] | None = None

    @property
    def features(self) -> TrackFeatures:
        return TrackFeatures(
            track_id=self.track_id if self.track_id is not None else -1,
            bpm=float(self.analysis["bpm"]),
            key=_key(self.analysis.get("camelot")),
            energy=int(self.analysis["energy"]),
            artist=self.artist,
        )


def _key(camelot: str | None) -> Key | None:
    if not camelot:
        return None
    try:
        return parse_key(camelot)
    except EngineError:
        return None


def weights_from(settings: Settings) -> Weights:
    r = settings.rank
    return Weights(
        key=r.w_key, tempo=r.w_tempo, energy=r.w_energy, sound=r.w_sound, coplay=r.w_coplay,
        pitch_range_pct=r.pitch_range_pct, camelot_rules=r.camelot_rules,
    )


async def analyse_file(path: Path, *, settings: Settings, executor: Executor | None = None) -> dict[str, Any]:
    """Decode and analyse a local file off the event loop.

    Raises
    ------
    InputError
        With the decoder's reason ("not audio", "silent", ...).
    """
    loop = asyncio.get_running_loop()
    res = await loop.run_in_executor(executor, process_file, str(path), settings.audio)
    if res.error is not None or res.analysis is None:
        raise InputError(f"{path.name}: {res.error}")
    return res.analysis


def _tempo_window(bpm: float, pct: float) -> list[tuple[float, float]]:
    f = pct / 100.0
    return [(b * (1 - f), b * (1 + f)) for b in (bpm, bpm / 2, bpm * 2)]


async def rank_catalog(
    conn: asyncpg.Connection, query: Query, *, settings: Settings, options: MixOptions
) -> list[tuple[Scored, tracks_q.TrackRow]]:
    """Score catalog tracks against the query, applying the user's filters, best first."""
    weights = weights_from(settings)
    rows = await tracks_q.candidates_by_tempo(
        conn, bpm_ranges=_tempo_window(float(query.analysis["bpm"]), settings.rank.pitch_range_pct * 2)
    )
    if len(rows) < options.count:
        rows = await tracks_q.list_tracks(conn, analysed_only=True)
    by_id = {r.id: r for r in rows}
    feats = []
    for r in rows:
        if r.bpm is None or r.energy is None:
            continue
        if options.bpm_min is not None and r.bpm < options.bpm_min:
            continue
        if options.bpm_max is not None and r.bpm > options.bpm_max:
            continue
        if options.exclude_same_artist and query.artist and r.artist.lower() == query.artist.lower():
            continue
        feats.append(TrackFeatures(track_id=r.id, bpm=r.bpm, key=_key(r.camelot), energy=r.energy, artist=r.artist))
    scored = score_candidates(query.features, feats, weights=weights)
    if options.key_lock:
        scored = [s for s in scored if s.components.get("key", 0.0) > 0]
    return [(s, by_id[s.track_id]) for s in scored]


def _candidate(rank: int, s: Scored, row: tracks_q.TrackRow) -> Candidate:
    return Candidate(
        rank=rank,
        track_id=row.id,
        title=row.title,
        artist=row.artist,
        path=row.path,
        bpm=float(row.bpm or 0.0),
        key=row.key or "",
        camelot=row.camelot or "",
        energy=int(row.energy or 0),
        score=round(float(s.score), 3),
        reasons=s.reasons,
        components={k: round(float(v), 3) for k, v in s.components.items()},
        sources=s.sources,
        spotify_id=row.spotify_id,
        isrc=row.isrc,
    )


async def build_result(
    pool: asyncpg.Pool,
    query: Query,
    *,
    settings: Settings,
    options: MixOptions,
    request_id: str | None = None,
    notes: tuple[str, ...] = (),
    on_stage: StageCallback | None = None,
) -> MixResult:
    """Rank the catalog for ``query`` and package the reply."""
    if on_stage:
        on_stage("ranking", "ranking the catalog")
    async with pool.acquire() as conn:
        ranked = await rank_catalog(conn, query, settings=settings, options=options)
    chosen = ranked[: options.count]
    results = tuple(_candidate(i + 1, s, row) for i, (s, row) in enumerate(chosen))
    q = dict(query.analysis)
    q.update({"title": query.title, "artist": query.artist, "track_id": query.track_id, "identified": query.identified})
    if not results:
        notes = notes + ("the catalog has no analysed tracks yet: add some with `mixwith catalog add`",)
    return MixResult(request_id=request_id or str(uuid.uuid4()), query=q, results=results, notes=notes)


async def recommend_file(
    pool: asyncpg.Pool,
    path: Path,
    *,
    settings: Settings,
    options: MixOptions = MixOptions(),
    request_id: str | None = None,
    executor: Executor | None = None,
    on_stage: StageCallback | None = None,
) -> MixResult:
    """Recommend tracks that mix with the audio in ``path``.

    Raises
    ------
    InputError
        When the file is not usable audio.
    """
    if on_stage:
        on_stage("analysing", "measuring tempo, key and energy")
    analysis = await analyse_file(path, settings=settings, executor=executor)
    query = Query(analysis=analysis, title=path.stem)
    return await build_result(
        pool, query, settings=settings, options=options, request_id=request_id, on_stage=on_stage
    )


async def recommend_track(
    pool: asyncpg.Pool,
    track_id: int,
    *,
    settings: Settings,
    options: MixOptions = MixOptions(),
    request_id: str | None = None,
    on_stage: StageCallback | None = None,
) -> MixResult:
    """Recommend tracks that mix with catalog track ``track_id``."""
    async with pool.acquire() as conn:
        row = await tracks_q.get_track(conn, track_id)
    if row is None or row.bpm is None:
        raise NotFoundError(f"track {track_id} is not in the catalog")
    analysis = {
        "duration": row.duration_s, "bpm": row.bpm, "bpm_alternates": list(row.bpm_alternates),
        "key": row.key, "camelot": row.camelot, "open_key": row.open_key, "energy": row.energy,
        "loudness_lufs": row.loudness_lufs,
    }
    query = Query(analysis=analysis, track_id=row.id, title=row.title, artist=row.artist)
    return await build_result(
        pool, query, settings=settings, options=options, request_id=request_id, on_stage=on_stage
    )
