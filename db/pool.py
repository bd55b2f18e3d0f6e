"""Connection pool: a real PostgreSQL when ``DATABASE_URL`` is set, else an embedded one.

The embedded server (pgserver: PostgreSQL 16 on a unix socket) lives under the
data home, so a DJ needs no database administration at all.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import asyncpg

from db.errors import DatabaseError
from db.migrate import apply_migrations

logger = logging.getLogger(__name__)


def embedded_dsn(pg_dir: Path) -> str:
    """Start (or join) the embedded server in ``pg_dir`` and return its DSN.

    The server keeps running while any process holds it and stops after the
    last one exits.
    """
    try:
        with warnings.catch_warnings():
            # pgserver keeps its lockfile in the user's runtime dir; without XDG_RUNTIME_DIR (containers,
            # cron, plain ssh) platformdirs falls back to /tmp/runtime-UID and warns on every command
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
            import pgserver
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise DatabaseError("pgserver is not installed; set DATABASE_URL to a PostgreSQL server") from exc
    pg_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        server = pgserver.get_server(pg_dir, cleanup_mode="stop")
        return server.get_uri()
    except Exception as exc:  # pgserver raises bare exceptions with the initdb/pg_ctl output
        raise DatabaseError(
            f"could not start the embedded PostgreSQL in {pg_dir} ({exc}); "
            "set DATABASE_URL to use an existing server"
        ) from exc


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(typename, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(
    *, dsn: str | None, pg_dir: Path, min_size: int = 1, max_size: int = 5, migrate: bool = True
) -> asyncpg.Pool:
    """Open a pool and bring the schema up to date.

    Parameters
    ----------
    dsn : str or None
        PostgreSQL DSN; None starts the embedded server in ``pg_dir``.
    pg_dir : Path
        Data directory of the embedded server.
    min_size, max_size : int
        Pool bounds.
    migrate : bool
        Apply pending migrations first.

    Raises
    ------
    DatabaseError
        When neither the given server nor the embedded one can be used.
    """
    if dsn is None:
        dsn = embedded_dsn(pg_dir)
        where = f"embedded PostgreSQL in {pg_dir}"
    else:
        where = "DATABASE_URL"
    try:
        pool: asyncpg.Pool = await asyncpg.create_pool(
            dsn, min_size=min_size, max_size=max_size, init=_init_connection, command_timeout=60
        )
    except (OSError, asyncpg.PostgresError) as exc:
        raise DatabaseError(f"cannot connect to the database ({where}): {exc}") from exc
    if migrate:
        async with pool.acquire() as conn:
            applied = await apply_migrations(conn)
            if applied:
                logger.info("applied migrations: %s", ", ".join(applied))
    return pool


async def fetch_version(conn: asyncpg.Connection) -> Any:
    """Server version string, for diagnostics."""
    return await conn.fetchval("SELECT version()")
