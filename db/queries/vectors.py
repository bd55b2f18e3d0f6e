"""Sounds-like track vectors (table ``track_vectors``), one row per track and embedder version.

The Annoy index is rebuilt from these rows, so a rebuild after ``catalog add``
embeds only new tracks, and a new embedder version starts a fresh set of rows
(vectors of different versions live in different spaces and never mix).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import asyncpg


async def upsert(conn: asyncpg.Connection, *, model_version: str,
                 vectors: Iterable[tuple[int, Sequence[float]]]) -> int:
    """Store ``(track_id, vector)`` pairs for ``model_version``, replacing older vectors of that version.

    Returns the number of rows written.
    """
    rows = [(int(tid), model_version, [float(x) for x in vec]) for tid, vec in vectors]
    if rows:
        await conn.executemany(
            """INSERT INTO track_vectors (track_id, model_version, vector) VALUES ($1, $2, $3)
               ON CONFLICT (track_id, model_version) DO UPDATE SET vector = EXCLUDED.vector""",
            rows,
        )
    return len(rows)


async def for_version(conn: asyncpg.Connection, model_version: str,
                      track_ids: Sequence[int] | None = None) -> dict[int, list[float]]:
    """``{track_id: vector}`` of ``model_version`` (all tracks, or only ``track_ids``)."""
    rows = await conn.fetch(
        """SELECT track_id, vector FROM track_vectors
           WHERE model_version = $1 AND ($2::bigint[] IS NULL OR track_id = ANY($2::bigint[]))""",
        model_version, None if track_ids is None else [int(t) for t in track_ids],
    )
    return {int(r["track_id"]): list(r["vector"]) for r in rows}


async def count_by_version(conn: asyncpg.Connection) -> dict[str, int]:
    """How many tracks each embedder version has vectors for."""
    rows = await conn.fetch("SELECT model_version, count(*) AS n FROM track_vectors GROUP BY model_version")
    return {r["model_version"]: int(r["n"]) for r in rows}


async def delete_other_versions(conn: asyncpg.Connection, keep: str) -> int:
    """Drop vectors of every version but ``keep`` (after switching embedders); returns rows deleted."""
    status = await conn.execute("DELETE FROM track_vectors WHERE model_version <> $1", keep)
    return int(status.split()[-1])
