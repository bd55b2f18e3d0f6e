"""The /mixwith job as plain stage functions: understand the input, then rank and order.

``understand_file`` turns audio on disk into a ``Query``: the catalog track
when its fingerprints identify it, else the clip's own tempo, key and energy,
plus its sounds-like vector. ``build_result`` ranks the catalog for a query
(harmonic/tempo neighbours ∪ ALS co-play ∪ sounds-like neighbours), then orders
the chosen tracks as a set. ``Resources`` holds the models and indexes, loaded
once per process and passed in. Engine work runs off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import numpy as np

from db.queries import tracks as tracks_q
from engine.camelot import Key, compatible_keys, parse_key
from engine.errors import EngineError
from engine.rank import Scored, TrackFeatures, Weights
from workers.catalog import process_file
from workers.errors import InputError, NotFoundError
from workers.messages import Candidate, MixOptions, MixResult, Stage
from workers.settings import Settings

if TYPE_CHECKING:
    from engine.als import AlsModel
    from engine.embed.model import Embedder
    from engine.fpindex import FingerprintIndex
    from engine.index import VectorIndex

logger = logging.getLogger(__name__)

StageCallback = Callable[[Stage, str], None]
EmbedWindows = Callable[[np.ndarray], Awaitable[np.ndarray]]
"""Audio windows ``(n, window_samples)`` → their unit vectors ``(n, embed_dim)``."""


@dataclass
class Resources:
    """Models and indexes a process loads once and passes to every job; each is optional.

    Attributes
    ----------
    fingerprints : FingerprintIndex or None
        Identification index (memory-mapped, shared by processes).
    embedder : Embedder or None
        Sounds-like CNN, loaded only when a sounds-like index exists.
    vectors : VectorIndex or None
        Sounds-like index of the embedder's version.
    als : AlsModel or None
        Active collaborative-filtering model.
    """

    fingerprints: "FingerprintIndex | None" = None
    embedder: "Embedder | None" = None
    embed_version: str = ""
    vectors: "VectorIndex | None" = None
    als: "AlsModel | None" = None

    @classmethod
    async def load(cls, pool: asyncpg.Pool, settings: Settings) -> "Resources":
        """Open whatever the data home has; a missing part is logged, never fatal."""
        from workers.identify import open_index
        from workers.mixes import load_active_model

        res = cls()
        loop = asyncio.get_running_loop()
        try:
            index = await loop.run_in_executor(None, open_index, settings)
            res.fingerprints = index if len(index) else None
        except (EngineError, OSError) as exc:
            logger.warning("identification unavailable: %s", exc)
        async with pool.acquire() as conn:
            res.als = await load_active_model(conn)
        await loop.run_in_executor(None, res._load_sounds_like, settings)
        return res

    def _load_sounds_like(self, settings: Settings) -> None:
        from engine.index import VectorIndex, live_build
        from engine.embed.model import DEFAULT_WEIGHTS
        from workers.embedding import open_embedder

        # the embedder costs a torch import: load it only when there is an index to search
        if not settings.index_dir.exists():
            return
        try:
            embedder, version = open_embedder(settings.embed)
        except (EngineError, OSError, RuntimeError) as exc:
            logger.warning("sounds-like unavailable (weights %s): %s", settings.embed.weights or DEFAULT_WEIGHTS, exc)
            return
        if live_build(settings.index_dir, version) is None:
            # indexes are per embedder version: new default weights need one `index build` to re-embed
            logger.warning("sounds-like off: no index for embedder %s yet; run `mixwith index build`", version)
            return
        self.embedder, self.embed_version = embedder, version
        self.vectors = VectorIndex.load(settings.index_dir, version, search_k=settings.embed.index_search_k)

    def close(self) -> None:
        if self.vectors is not None:
            self.vectors.close()


@dataclass(frozen=True)
class Query:
    """What we know about the input: its analysis and, if found, its catalog track.

    ``to_dict``/``from_dict`` let the workers cache it by source.
    """

    analysis: dict[str, Any]
    track_id: int | None = None
    title: str = ""
    artist: str = ""
    identified: dict[str, Any] | None = None
    vector: tuple[float, ...] | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def features(self) -> TrackFeatures:
        return TrackFeatures(
            track_id=self.track_id if self.track_id is not None else -1,
            bpm=float(self.analysis["bpm"]),
            key=_key(self.analysis.get("camelot")),
            energy=int(self.analysis["energy"]),
            artist=self.artist,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"analysis": self.analysis, "track_id": self.track_id, "title": self.title, "artist": self.artist,
                "identified": self.identified, "vector": list(self.vector) if self.vector else None,
                "notes": list(self.notes)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Query":
        vec = d.get("vector")
        return cls(analysis=d["analysis"], track_id=d.get("track_id"), title=d.get("title") or "",
                   artist=d.get("artist") or "", identified=d.get("identified"),
                   vector=tuple(vec) if vec else None, notes=tuple(d.get("notes") or ()))


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
        pitch_range_pct=r.pitch_range_pct, tempo_clash=r.tempo_clash, camelot_rules=r.camelot_rules,
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


async def _row_query(conn: asyncpg.Connection, track_id: int, **extra: Any) -> Query | None:
    row = await tracks_q.get_track(conn, track_id)
    if row is None or row.bpm is None:
        return None
    analysis = {
        "duration": row.duration_s, "bpm": row.bpm, "bpm_alternates": list(row.bpm_alternates),
        "key": row.key, "camelot": row.camelot, "open_key": row.open_key, "energy": row.energy,
        "loudness_lufs": row.loudness_lufs,
    }
    return Query(analysis=analysis, track_id=row.id, title=row.title, artist=row.artist, **extra)


def _stored_vector(resources: Resources, track_id: int) -> tuple[float, ...] | None:
    if resources.vectors is None:
        return None
    ids, vecs = resources.vectors.vectors()
    hit = np.flatnonzero(ids == track_id)
    return tuple(float(x) for x in vecs[hit[0]]) if hit.size else None


def _clip_windows_file(path: Path, *, settings: Settings, embedder: "Embedder") -> np.ndarray:
    from engine.audio import load
    from workers.embedding import clip_windows

    y = load(path, sr=embedder.sr, limits=settings.audio.limits, max_seconds=settings.embed.max_seconds)
    return clip_windows(y, sr=embedder.sr, embedder=embedder)


async def understand_file(
    pool: asyncpg.Pool,
    path: Path,
    *,
    settings: Settings,
    resources: Resources,
    executor: Executor | None = None,
    on_stage: StageCallback | None = None,
    title: str = "",
    artist: str = "",
    embed_windows: EmbedWindows | None = None,
) -> Query:
    """Identify the clip against the catalog, else analyse it; add its sounds-like vector.

    ``embed_windows`` turns the clip's audio windows into vectors; a worker passes
    its micro-batcher, so concurrent jobs share forward passes. By default the
    clip is embedded on its own, in a thread.

    Raises
    ------
    InputError
        When the audio is unusable (with the decoder's reason).
    """
    loop = asyncio.get_running_loop()
    if resources.fingerprints is not None:
        from workers.identify import _describe, identify_file

        if on_stage:
            on_stage("identifying", "looking for it in the catalog")
        index = resources.fingerprints
        ident = await loop.run_in_executor(None, lambda: identify_file(path, settings=settings, index=index))
        if ident.match is not None:
            async with pool.acquire() as conn:
                row = await tracks_q.get_track(conn, ident.match.track_id)
                found = await _row_query(conn, ident.match.track_id) if row is not None else None
            if found is not None and row is not None:
                m = _describe(ident.match, row)
                who = f"{row.artist} – " if row.artist else ""
                note = f"identified as {who}{row.title} (confidence {m['confidence']:.2f})"
                return replace(found, identified=m, vector=_stored_vector(resources, row.id), notes=(note,))
            logger.warning("fingerprints name track %d, which the catalog no longer has", ident.match.track_id)
    if on_stage:
        on_stage("analysing", "measuring tempo, key and energy")
    analysis = await analyse_file(path, settings=settings, executor=executor)
    vector = None
    if resources.embedder is not None:
        from engine.embed.model import mean_vector

        embedder = resources.embedder
        try:
            windows = await loop.run_in_executor(
                None, lambda: _clip_windows_file(path, settings=settings, embedder=embedder))
            vectors = await (embed_windows(windows) if embed_windows is not None
                             else loop.run_in_executor(None, embedder.embed_batch, windows))
            vector = tuple(float(x) for x in mean_vector(vectors))
        except EngineError as exc:  # the analysis worked; sounds-like is a bonus
            logger.warning("could not embed %s: %s", path.name, exc)
    notes: tuple[str, ...] = ()
    if resources.fingerprints is not None:
        notes = ("not in the catalog: ranked from the clip's own tempo, key and energy",)
    return Query(analysis=analysis, title=title or path.stem, artist=artist, vector=vector, notes=notes)


async def rank_catalog(
    conn: asyncpg.Connection,
    query: Query,
    *,
    settings: Settings,
    options: MixOptions,
    resources: Resources | None = None,
) -> list[tuple[Scored, tracks_q.TrackRow]]:
    """Score catalog tracks against the query with the hybrid ranker, best first.

    Candidates: tracks in the tempo window (half/double time included; key-compatible
    tracks of any tempo when that window is thin or the query has no tempo), the
    query's ALS neighbours, and its sounds-like neighbours; at most
    ``settings.rank.max_candidates`` from each database lookup.
    """
    from workers.embedding import sound_scores
    from workers.mixes import rank_rows

    resources = resources or Resources()
    limit = settings.rank.max_candidates
    feats = query.features

    def others(found: list[tracks_q.TrackRow]) -> list[tracks_q.TrackRow]:
        # an identified query's own track is in its own tempo window; it must not count towards `count`
        return [r for r in found if r.id != query.track_id]

    rows: list[tracks_q.TrackRow] = []
    if feats.bpm > 0:
        rows = others(await tracks_q.candidates_by_tempo(
            conn, bpm_ranges=_tempo_window(feats.bpm, settings.rank.pitch_range_pct * 2), limit=limit
        ))
    if len(rows) < options.count and feats.key is not None:
        # no tempo (a beatless clip) or a thin tempo window: harmonic neighbours of any tempo
        keys = compatible_keys(feats.key, rules=settings.rank.camelot_rules)
        have = {r.id for r in rows}
        by_key = await tracks_q.candidates_by_key(
            conn, camelots=[k.camelot for k in keys], energy=feats.energy, limit=limit
        )
        rows += [r for r in others(by_key) if r.id not in have]
    if len(rows) < options.count:
        rows = others(await tracks_q.list_tracks(conn, analysed_only=True, limit=limit))
    sound: dict[int, float] = {}
    if query.vector is not None and resources.vectors is not None:
        exclude = frozenset({query.track_id}) if query.track_id is not None else frozenset()
        sound = sound_scores(resources.vectors, np.asarray(query.vector, dtype=np.float32),
                             k=settings.embed.candidates, exclude=exclude)
        have = {r.id for r in rows}
        extra = await tracks_q.get_tracks(conn, [t for t in sound if t not in have])
        rows = list(rows) + [r for r in extra.values() if r.bpm is not None]
    ranked = await rank_rows(
        conn, query.features, rows, weights=weights_from(settings), options=options,
        mix_settings=settings.mixes, model=resources.als, sound=sound or None,
    )
    return [(s, r) for s, r in ranked if r.id != query.track_id]


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
    resources: Resources | None = None,
    request_id: str | None = None,
    notes: tuple[str, ...] = (),
    on_stage: StageCallback | None = None,
) -> MixResult:
    """Rank the catalog for ``query``, order the chosen tracks as a set, package the reply."""
    from workers.mixes import ENERGY_ARCS, order_candidates

    if on_stage:
        on_stage("ranking", "ranking the catalog")
    async with pool.acquire() as conn:
        ranked = await rank_catalog(conn, query, settings=settings, options=options, resources=resources)
    chosen = ranked[: options.count]
    results = tuple(_candidate(i + 1, s, row) for i, (s, row) in enumerate(chosen))
    notes = query.notes + notes
    if options.order and len(results) > 1:
        arc = options.arc or (ENERGY_ARCS.get(options.energy) if options.energy else None)
        results = order_candidates(query.features, results, weights=weights_from(settings), arc=arc)
        notes = notes + (f"ordered as a set ({arc} energy arc)" if arc else "ordered as a set",)
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
    resources: Resources | None = None,
    request_id: str | None = None,
    executor: Executor | None = None,
    on_stage: StageCallback | None = None,
) -> MixResult:
    """Recommend tracks that mix with the audio in ``path`` (identified when in the catalog).

    Raises
    ------
    InputError
        When the file is not usable audio.
    """
    own = resources is None
    res = await Resources.load(pool, settings) if own else resources
    assert res is not None
    try:
        query = await understand_file(pool, path, settings=settings, resources=res, executor=executor,
                                      on_stage=on_stage)
        return await build_result(pool, query, settings=settings, options=options, resources=res,
                                  request_id=request_id, on_stage=on_stage)
    finally:
        if own:
            res.close()


async def recommend_track(
    pool: asyncpg.Pool,
    track_id: int,
    *,
    settings: Settings,
    options: MixOptions = MixOptions(),
    resources: Resources | None = None,
    request_id: str | None = None,
    on_stage: StageCallback | None = None,
    notes: tuple[str, ...] = (),
) -> MixResult:
    """Recommend tracks that mix with catalog track ``track_id``."""
    async with pool.acquire() as conn:
        query = await _row_query(conn, track_id)
    if query is None:
        raise NotFoundError(f"track {track_id} is not in the catalog")
    if resources is not None:
        query = replace(query, vector=_stored_vector(resources, track_id))
    return await build_result(pool, query, settings=settings, options=options, resources=resources,
                              request_id=request_id, notes=notes, on_stage=on_stage)
