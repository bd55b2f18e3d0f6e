"""Cache of Spotify track lookups (id, ISRC or search → Spotify track id)."""

from __future__ import annotations

import asyncpg



async def get_lookup(conn: asyncpg.Connection, *, key: str) -> tuple[bool, str | None]:
    """(found, spotify_id): found is False when the key was never looked up."""
    row = await conn.fetchrow("SELECT spotify_id FROM spotify_lookups WHERE lookup_key = $1", key)
    return (False, None) if row is None else (True, row["spotify_id"])


async def put_lookup(conn: asyncpg.Connection, *, key: str, spotify_id: str | None) -> None:
    """Remember a lookup's answer (None: not on Spotify)."""
    await conn.execute(
        """INSERT INTO spotify_lookups (lookup_key, spotify_id) VALUES ($1, $2)
           ON CONFLICT (lookup_key) DO UPDATE SET spotify_id = EXCLUDED.spotify_id, looked_up_at = now()""",
        key, spotify_id,
    )
