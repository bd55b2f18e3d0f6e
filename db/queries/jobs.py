"""Requests and their recommendations, as the workers record them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg


@dataclass(frozen=True)
class RequestRow:
    id: str
    platform: str
    input_kind: str
    input_ref: str
    status: str
    error: str | None
    attempts: int
    timings: dict[str, Any]
    query: dict[str, Any] | None
    reply_ref: str | None


async def record_request(
    conn: asyncpg.Connection,
    *,
    request_id: str,
    platform: str,
    place: str,
    user_id: str,
    input_kind: str,
    input_ref: str,
    options: dict[str, Any],
    status: str,
    error: str | None,
    query: dict[str, Any] | None,
    timings: dict[str, float],
    attempts: int,
    source_key: str | None,
    identified_track_id: int | None,
    recommendations: Sequence[dict[str, Any]] = (),
) -> bool:
    """Record a finished request and its recommendations in one transaction.

    A row the front end inserted at submission (status ``queued``, with its
    ``reply_ref``) is completed in place. Idempotent: once a request is done
    or failed, a second record (a duplicate delivery) changes nothing and
    returns False. ``recommendations`` are
    ``Candidate.to_dict()`` rows (rank, track_id, score, components, reasons).
    """
    async with conn.transaction():
        created = await conn.fetchval(
            """INSERT INTO requests (id, platform, place, user_id, input_kind, input_ref, options, status, error,
                                     query, timings, attempts, source_key, identified_track_id,
                                     created_at, started_at, finished_at)
               VALUES ($1::uuid, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,
                       now() - make_interval(secs => $15), now() - make_interval(secs => $15), now())
               ON CONFLICT (id) DO UPDATE
                  SET status = EXCLUDED.status, error = EXCLUDED.error, query = EXCLUDED.query,
                      timings = EXCLUDED.timings, attempts = EXCLUDED.attempts, source_key = EXCLUDED.source_key,
                      identified_track_id = EXCLUDED.identified_track_id,
                      started_at = coalesce(requests.started_at, EXCLUDED.started_at),
                      finished_at = EXCLUDED.finished_at
                WHERE requests.status NOT IN ('done', 'failed')
               RETURNING id""",
            request_id, platform, place, user_id, input_kind, input_ref, options, status, error, query, timings,
            attempts, source_key, identified_track_id, float(timings.get("total", 0.0)),
        )
        if created is None:
            return False
        if recommendations:
            await conn.executemany(
                """INSERT INTO recommendations (request_id, rank, track_id, score, components, reasons)
                   VALUES ($1::uuid, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING""",
                [(request_id, r["rank"], r["track_id"], float(r["score"]), r.get("components") or {},
                  list(r.get("reasons") or ())) for r in recommendations],
            )
    return True


async def get_request(conn: asyncpg.Connection, request_id: str) -> RequestRow | None:
    row = await conn.fetchrow(
        """SELECT id::text AS id, platform, input_kind, input_ref, status, error, attempts, timings, query, reply_ref
             FROM requests WHERE id = $1::uuid""",
        request_id,
    )
    return RequestRow(**dict(row)) if row else None


async def set_reply_ref(conn: asyncpg.Connection, request_id: str, reply_ref: str) -> None:
    """Remember the platform message that carried the answer (reactions refer to it)."""
    await conn.execute("UPDATE requests SET reply_ref = $2 WHERE id = $1::uuid", request_id, reply_ref)


async def recommendations_of(conn: asyncpg.Connection, request_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT rank, track_id, score, components, reasons FROM recommendations WHERE request_id = $1::uuid ORDER BY rank",
        request_id,
    )


async def count_by_status(conn: asyncpg.Connection, request_ids: Sequence[str]) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT status, count(*) AS n FROM requests WHERE id = ANY($1::uuid[]) GROUP BY status", list(request_ids)
    )
    return {r["status"]: r["n"] for r in rows}
