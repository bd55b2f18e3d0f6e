"""Requests seen by the chat bots, their replies, and the reactions on them.

Everything a reaction needs: the request behind a reply message, the track at
a rank, and feedback rows that a replayed event cannot count twice (the unique
``feedback_once_idx`` plus claimed event ids in ``bot_events``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg


async def insert_request(
    conn: asyncpg.Connection,
    *,
    request_id: str,
    platform: str,
    place: str,
    user_id: str,
    input_kind: str,
    input_ref: str,
    options: dict[str, Any],
) -> None:
    """Record a request as queued (a second insert of the same id is a no-op)."""
    await conn.execute(
        """INSERT INTO requests (id, platform, place, user_id, input_kind, input_ref, options)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (id) DO NOTHING""",
        request_id, platform, place, user_id, input_kind, input_ref, options,
    )


async def finish_request(
    conn: asyncpg.Connection,
    *,
    request_id: str,
    error: str | None,
    query: dict[str, Any] | None,
    identified_track_id: int | None,
    recommendations: Sequence[tuple[int, int, float, dict[str, float], Sequence[str]]] = (),
) -> None:
    """Mark a request done or failed and store its ranked tracks.

    ``recommendations`` rows are (rank, track_id, score, components, reasons);
    tracks no longer in the catalog are skipped rather than failing the reply.
    """
    async with conn.transaction():
        await conn.execute(
            """UPDATE requests
                  SET status = $2, error = $3, query = $4, identified_track_id = $5,
                      finished_at = now(), started_at = coalesce(started_at, created_at)
                WHERE id = $1""",
            request_id, "failed" if error else "done", error, query, identified_track_id,
        )
        if recommendations:
            await conn.executemany(
                """INSERT INTO recommendations (request_id, rank, track_id, score, components, reasons)
                   SELECT $1, $2, t.id, $4, $5, $6 FROM tracks t WHERE t.id = $3
                   ON CONFLICT (request_id, rank) DO NOTHING""",
                [(request_id, r, t, s, c, list(reasons)) for r, t, s, c, reasons in recommendations],
            )


async def set_reply_ref(conn: asyncpg.Connection, *, request_id: str, reply_ref: str) -> None:
    """Remember which platform message answered a request, so reactions find it."""
    await conn.execute("UPDATE requests SET reply_ref = $2 WHERE id = $1", request_id, reply_ref)


async def request_for_reply(conn: asyncpg.Connection, *, platform: str, reply_ref: str) -> str | None:
    """The request id answered by ``reply_ref`` on ``platform``, or None."""
    value = await conn.fetchval(
        "SELECT id FROM requests WHERE platform = $1 AND reply_ref = $2 ORDER BY created_at DESC LIMIT 1",
        platform, reply_ref,
    )
    return str(value) if value is not None else None


async def track_at_rank(conn: asyncpg.Connection, *, request_id: str, rank: int) -> int | None:
    """The track shown at ``rank`` (1-based) in the reply to ``request_id``."""
    return await conn.fetchval(
        "SELECT track_id FROM recommendations WHERE request_id = $1 AND rank = $2", request_id, rank
    )


async def claim_event(conn: asyncpg.Connection, *, platform: str, event_id: str) -> bool:
    """True the first time an event id is seen, False for every redelivery."""
    row = await conn.fetchval(
        """INSERT INTO bot_events (platform, event_id) VALUES ($1, $2)
           ON CONFLICT DO NOTHING RETURNING 1""",
        platform, event_id,
    )
    return row is not None


async def add_feedback(
    conn: asyncpg.Connection,
    *,
    platform: str,
    request_id: str,
    user_id: str,
    reaction: str,
    value: int,
    track_id: int | None,
) -> bool:
    """Store one reaction; False when the same reaction was already stored."""
    row = await conn.fetchval(
        """INSERT INTO feedback (request_id, track_id, user_id, platform, reaction, value)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT DO NOTHING RETURNING id""",
        request_id, track_id, user_id, platform, reaction, value,
    )
    return row is not None


async def remove_feedback(
    conn: asyncpg.Connection,
    *,
    platform: str,
    request_id: str,
    user_id: str,
    reaction: str,
    track_id: int | None,
) -> bool:
    """Undo one reaction; False when there was nothing to undo."""
    status = await conn.execute(
        """DELETE FROM feedback
            WHERE platform = $1 AND request_id = $2 AND user_id = $3 AND reaction = $4
              AND coalesce(track_id, 0) = coalesce($5::bigint, 0)""",
        platform, request_id, user_id, reaction, track_id,
    )
    return status != "DELETE 0"


async def count_feedback(conn: asyncpg.Connection, *, request_id: str) -> int:
    """Number of feedback rows on a request."""
    return await conn.fetchval("SELECT count(*) FROM feedback WHERE request_id = $1", request_id)


async def feedback_pairs(conn: asyncpg.Connection) -> list[tuple[int, int, float]]:
    """(query track, recommended track, summed reaction value) for retraining co-play models.

    A reaction on one track counts for that track; one on the whole reply
    counts for every track in it. Only requests whose input was identified
    in the catalog give pairs (an unknown clip has no item to pair with).
    """
    rows = await conn.fetch(
        """SELECT r.identified_track_id AS query_id, coalesce(f.track_id, rec.track_id) AS track_id,
                  sum(f.value)::real AS weight
             FROM feedback f
             JOIN requests r ON r.id = f.request_id
             LEFT JOIN recommendations rec ON f.track_id IS NULL AND rec.request_id = f.request_id
            WHERE r.identified_track_id IS NOT NULL
              AND coalesce(f.track_id, rec.track_id) IS NOT NULL
              AND coalesce(f.track_id, rec.track_id) <> r.identified_track_id
            GROUP BY 1, 2 ORDER BY 1, 2"""
    )
    return [(r["query_id"], r["track_id"], float(r["weight"])) for r in rows]
