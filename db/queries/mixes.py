"""Mix histories, sample relations and what collaborative filtering reads from them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

STUB_SOURCE = "mix-history"


@dataclass(frozen=True)
class CatalogEntry:
    """The catalog facts matching a mix history needs."""

    track_id: int
    artist: str
    title: str
    spotify_id: str | None = None
    isrc: str | None = None


async def catalog_entries(conn: asyncpg.Connection) -> list[CatalogEntry]:
    """Every track (stubs included) with the fields matching needs."""
    rows = await conn.fetch("SELECT id, artist, title, spotify_id, isrc FROM tracks ORDER BY id")
    return [CatalogEntry(r["id"], r["artist"], r["title"], r["spotify_id"], r["isrc"]) for r in rows]


async def create_stub(
    conn: asyncpg.Connection,
    *,
    artist: str,
    title: str,
    spotify_id: str | None = None,
    isrc: str | None = None,
    path: str | None = None,
) -> int:
    """Insert a track known only from mix histories (no audio, ``content_hash`` NULL)."""
    return await conn.fetchval(
        """INSERT INTO tracks (content_hash, title, artist, spotify_id, isrc, path, source)
           VALUES (NULL, $1, $2, $3, $4, $5, $6) RETURNING id""",
        title, artist, spotify_id, isrc, path, STUB_SOURCE,
    )


async def replace_mix(
    conn: asyncpg.Connection,
    *,
    source: str,
    external_id: str,
    track_ids: Sequence[int],
    title: str = "",
    dj: str = "",
) -> int:
    """Store a mix's tracklist, replacing an earlier import of the same (source, id)."""
    async with conn.transaction():
        mix_id = await conn.fetchval(
            """INSERT INTO mixes (source, external_id, title, dj) VALUES ($1, $2, $3, $4)
               ON CONFLICT (source, external_id) DO UPDATE SET title = EXCLUDED.title, dj = EXCLUDED.dj,
                                                               imported_at = now()
               RETURNING id""",
            source, external_id, title, dj,
        )
        await conn.execute("DELETE FROM mix_tracks WHERE mix_id = $1", mix_id)
        await conn.executemany(
            "INSERT INTO mix_tracks (mix_id, position, track_id) VALUES ($1, $2, $3)",
            [(mix_id, i, t) for i, t in enumerate(track_ids, start=1)],
        )
    return mix_id


async def add_relation(conn: asyncpg.Connection, *, track_id: int, related_id: int, kind: str = "samples") -> None:
    """Record that ``track_id`` relates to ``related_id`` (idempotent)."""
    await conn.execute(
        """INSERT INTO track_relations (track_id, related_id, kind) VALUES ($1, $2, $3)
           ON CONFLICT DO NOTHING""",
        track_id, related_id, kind,
    )


async def mix_sequences(conn: asyncpg.Connection) -> list[list[int]]:
    """Every mix as its track ids in play order."""
    rows = await conn.fetch(
        """SELECT array_agg(track_id ORDER BY position) AS ids FROM mix_tracks GROUP BY mix_id ORDER BY mix_id"""
    )
    return [list(r["ids"]) for r in rows]


async def relation_pairs(conn: asyncpg.Connection) -> list[tuple[int, int, str]]:
    rows = await conn.fetch("SELECT track_id, related_id, kind FROM track_relations ORDER BY track_id, related_id")
    return [(r["track_id"], r["related_id"], r["kind"]) for r in rows]


async def track_tempi(conn: asyncpg.Connection, track_ids: Sequence[int]) -> dict[int, float]:
    """Newest analysed BPM of each given track that has one."""
    rows = await conn.fetch(
        """SELECT DISTINCT ON (track_id) track_id, bpm FROM analyses
           WHERE track_id = ANY($1::bigint[]) ORDER BY track_id, analyzed_at DESC""",
        list(track_ids),
    )
    return {r["track_id"]: float(r["bpm"]) for r in rows}


async def coplay_counts(conn: asyncpg.Connection, track_id: int, candidate_ids: Sequence[int]) -> dict[int, int]:
    """In how many mixes each candidate was played together with ``track_id``."""
    rows = await conn.fetch(
        """SELECT b.track_id, count(DISTINCT a.mix_id)::int AS n
           FROM mix_tracks a JOIN mix_tracks b ON b.mix_id = a.mix_id
           WHERE a.track_id = $1 AND b.track_id = ANY($2::bigint[]) AND b.track_id <> $1
           GROUP BY b.track_id""",
        track_id, list(candidate_ids),
    )
    return {r["track_id"]: r["n"] for r in rows}


@dataclass(frozen=True)
class MixStats:
    mixes: int
    entries: int
    tracks: int
    stubs: int
    relations: int


async def stats(conn: asyncpg.Connection) -> MixStats:
    r = await conn.fetchrow(
        """SELECT (SELECT count(*) FROM mixes)::int AS mixes,
                  (SELECT count(*) FROM mix_tracks)::int AS entries,
                  (SELECT count(DISTINCT track_id) FROM mix_tracks)::int AS tracks,
                  (SELECT count(*) FROM tracks WHERE content_hash IS NULL)::int AS stubs,
                  (SELECT count(*) FROM track_relations)::int AS relations"""
    )
    return MixStats(**dict(r))
