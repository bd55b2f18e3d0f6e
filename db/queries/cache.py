"""Source cache: analyses and metadata by normalised source key, with an expiry.

Also the catalog match for links that name a known song (Spotify id, ISRC,
title and artist), so such a request needs no download at all.
"""

from __future__ import annotations

from typing import Any

import asyncpg


async def get_cached(conn: asyncpg.Connection, source_key: str, kind: str) -> dict[str, Any] | None:
    """The cached payload, or None when absent or expired."""
    return await conn.fetchval(
        "SELECT payload FROM source_cache WHERE source_key = $1 AND kind = $2 AND expires_at > now()",
        source_key, kind,
    )


async def put_cached(conn: asyncpg.Connection, source_key: str, kind: str, payload: dict[str, Any], *, ttl_s: float) -> None:
    """Store (or refresh) an entry that expires ``ttl_s`` seconds from now."""
    await conn.execute(
        """INSERT INTO source_cache (source_key, kind, payload, expires_at)
           VALUES ($1, $2, $3, now() + make_interval(secs => $4))
           ON CONFLICT (source_key, kind)
           DO UPDATE SET payload = EXCLUDED.payload, created_at = now(), expires_at = EXCLUDED.expires_at""",
        source_key, kind, payload, float(ttl_s),
    )


async def purge_expired(conn: asyncpg.Connection) -> int:
    """Delete expired entries; return how many."""
    status = await conn.execute("DELETE FROM source_cache WHERE expires_at <= now()")
    return int(status.split()[-1])


async def match_track(
    conn: asyncpg.Connection, *, spotify_id: str | None, isrc: str | None, title: str, artist: str
) -> int | None:
    """The catalog track a song's identifiers name: by Spotify id, then ISRC, then title and artist.

    Only analysed tracks count (a stub from a mix history has nothing to rank against).
    """
    sql = """
        SELECT t.id FROM tracks t
        WHERE EXISTS (SELECT 1 FROM analyses a WHERE a.track_id = t.id) AND ({cond})
        ORDER BY t.id LIMIT 1"""
    if spotify_id:
        found = await conn.fetchval(sql.format(cond="t.spotify_id = $1"), spotify_id)
        if found is not None:
            return found
    if isrc:
        found = await conn.fetchval(sql.format(cond="upper(t.isrc) = upper($1)"), isrc)
        if found is not None:
            return found
    if title:
        # strpos, not LIKE: user-supplied text carries no wildcards
        return await conn.fetchval(
            sql.format(cond="lower(t.title) = lower($1) AND ($2 = '' OR strpos(lower($2), lower(t.artist)) > 0 "
                            "OR strpos(lower(t.artist), lower($2)) > 0)"),
            title, artist or "",
        )
    return None
