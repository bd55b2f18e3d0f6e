"""Catalog queries: tracks and their analyses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg


@dataclass(frozen=True)
class TrackRow:
    """A catalog track with its newest analysis (analysis fields None when missing)."""

    id: int
    title: str
    artist: str
    album: str
    genre: str
    duration_s: float | None
    path: str | None
    spotify_id: str | None
    isrc: str | None
    source: str
    content_hash: str | None
    bpm: float | None = None
    bpm_alternates: tuple[float, ...] = ()
    key: str | None = None
    camelot: str | None = None
    open_key: str | None = None
    energy: int | None = None
    loudness_lufs: float | None = None

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> "TrackRow":
        d = dict(r)
        d["bpm_alternates"] = tuple(d.get("bpm_alternates") or ())
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


_SELECT = """
SELECT t.id, t.title, t.artist, t.album, t.genre, t.duration_s, t.path, t.spotify_id, t.isrc,
       t.source, t.content_hash, a.bpm, a.bpm_alternates, a.key, a.camelot, a.open_key,
       a.energy, a.loudness_lufs
FROM tracks t
LEFT JOIN LATERAL (
    SELECT * FROM analyses a WHERE a.track_id = t.id ORDER BY a.analyzed_at DESC LIMIT 1
) a ON true
"""


async def hashes_present(conn: asyncpg.Connection, hashes: Sequence[str]) -> set[str]:
    """The subset of ``hashes`` already in the catalog with an analysis."""
    rows = await conn.fetch(
        """SELECT t.content_hash FROM tracks t
           WHERE t.content_hash = ANY($1::text[])
             AND EXISTS (SELECT 1 FROM analyses a WHERE a.track_id = t.id)""",
        list(hashes),
    )
    return {r["content_hash"] for r in rows}


async def add_analyzed_track(
    conn: asyncpg.Connection,
    *,
    content_hash: str,
    title: str,
    artist: str,
    album: str,
    genre: str,
    path: str,
    source: str,
    analysis: dict[str, Any],
) -> tuple[int, bool]:
    """Insert a track and its analysis in one transaction.

    Returns
    -------
    (track_id, created) : the id, and False when the content hash was already known.
    """
    async with conn.transaction():
        row = await conn.fetchrow(
            """INSERT INTO tracks (content_hash, title, artist, album, genre, duration_s, path, source)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
               ON CONFLICT (content_hash) DO NOTHING
               RETURNING id""",
            content_hash, title, artist, album, genre, analysis["duration"], path, source,
        )
        created = row is not None
        if created:
            track_id = row["id"]
        else:
            track_id = await conn.fetchval("SELECT id FROM tracks WHERE content_hash = $1", content_hash)
        await conn.execute(
            """INSERT INTO analyses (track_id, analyzer_version, bpm, bpm_alternates, bpm_confidence,
                                     key, camelot, open_key, key_confidence, key_changes, energy, loudness_lufs)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
               ON CONFLICT (track_id, analyzer_version) DO UPDATE SET
                   bpm = EXCLUDED.bpm, bpm_alternates = EXCLUDED.bpm_alternates,
                   bpm_confidence = EXCLUDED.bpm_confidence, key = EXCLUDED.key,
                   camelot = EXCLUDED.camelot, open_key = EXCLUDED.open_key,
                   key_confidence = EXCLUDED.key_confidence, key_changes = EXCLUDED.key_changes,
                   energy = EXCLUDED.energy, loudness_lufs = EXCLUDED.loudness_lufs,
                   analyzed_at = now()""",
            track_id, analysis["version"], analysis["bpm"], list(analysis["bpm_alternates"]),
            analysis["bpm_confidence"], analysis["key"], analysis["camelot"], analysis["open_key"],
            analysis["key_confidence"], analysis["key_changes"], analysis["energy"], analysis["loudness_lufs"],
        )
    return track_id, created


async def get_track(conn: asyncpg.Connection, track_id: int) -> TrackRow | None:
    row = await conn.fetchrow(_SELECT + " WHERE t.id = $1", track_id)
    return TrackRow.from_record(row) if row else None


async def get_tracks(conn: asyncpg.Connection, track_ids: Sequence[int]) -> dict[int, TrackRow]:
    rows = await conn.fetch(_SELECT + " WHERE t.id = ANY($1::bigint[])", list(track_ids))
    return {r["id"]: TrackRow.from_record(r) for r in rows}


async def list_tracks(
    conn: asyncpg.Connection, *, search: str | None = None, limit: int | None = None, analysed_only: bool = False
) -> list[TrackRow]:
    """Catalog tracks, newest first; ``search`` matches title or artist (case-insensitive)."""
    where = []
    args: list[Any] = []
    if search:
        args.append(f"%{search.lower()}%")
        where.append(f"(lower(t.title) LIKE ${len(args)} OR lower(t.artist) LIKE ${len(args)})")
    if analysed_only:
        where.append("a.bpm IS NOT NULL")
    sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY t.id"
    if limit is not None:
        args.append(limit)
        sql += f" LIMIT ${len(args)}"
    return [TrackRow.from_record(r) for r in await conn.fetch(sql, *args)]


async def candidates_by_tempo(
    conn: asyncpg.Connection, *, bpm_ranges: Sequence[tuple[float, float]], limit: int = 5000
) -> list[TrackRow]:
    """Analysed tracks whose BPM falls in any of ``bpm_ranges`` (inclusive), closest to a range's centre first.

    Closeness is relative (|bpm - centre| / centre), so a big catalog cut at ``limit``
    keeps the tracks a pitch fader reaches most easily, not the oldest ones.
    """
    lows = [lo for lo, _ in bpm_ranges]
    highs = [hi for _, hi in bpm_ranges]
    rows = await conn.fetch(
        _SELECT
        + """ , LATERAL (
                 SELECT min(abs(a.bpm - (r.lo + r.hi) / 2) / ((r.lo + r.hi) / 2)) AS off
                 FROM unnest($1::real[], $2::real[]) AS r(lo, hi)
                 WHERE a.bpm BETWEEN r.lo AND r.hi AND r.hi > 0) c
              WHERE a.bpm IS NOT NULL AND c.off IS NOT NULL
              ORDER BY c.off, t.id LIMIT $3""",
        lows, highs, limit,
    )
    return [TrackRow.from_record(r) for r in rows]


async def candidates_by_key(
    conn: asyncpg.Connection, *, camelots: Sequence[str], energy: int | None = None, limit: int = 5000
) -> list[TrackRow]:
    """Analysed tracks in any of the Camelot keys ``camelots`` (e.g. ``["8A", "9A"]``).

    Closest energy first when ``energy`` is given, then oldest first.
    """
    rows = await conn.fetch(
        _SELECT
        + """ WHERE a.bpm IS NOT NULL AND a.camelot = ANY($1::text[])
              ORDER BY abs(coalesce(a.energy, 0) - coalesce($2::int, a.energy, 0)), t.id LIMIT $3""",
        list(camelots), energy, limit,
    )
    return [TrackRow.from_record(r) for r in rows]


async def remove_tracks(conn: asyncpg.Connection, track_ids: Sequence[int]) -> list[int]:
    """Delete tracks (and, by cascade, their analyses); return the ids removed."""
    rows = await conn.fetch("DELETE FROM tracks WHERE id = ANY($1::bigint[]) RETURNING id", list(track_ids))
    return [r["id"] for r in rows]


async def remove_by_path_prefix(conn: asyncpg.Connection, prefix: str) -> list[int]:
    """Delete tracks whose path starts with ``prefix``; return the ids removed."""
    rows = await conn.fetch(
        "DELETE FROM tracks WHERE path = $1 OR starts_with(path, $2) RETURNING id",
        prefix, prefix.rstrip("/") + "/",
    )
    return [r["id"] for r in rows]


async def count_tracks(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM tracks"))
