"""Model versions: embedder weights, Annoy and fingerprint indexes, ALS factors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg


@dataclass(frozen=True)
class ModelVersion:
    kind: str
    version: str
    artifact_path: str
    metrics: dict[str, Any]
    active: bool


async def register(
    conn: asyncpg.Connection,
    *,
    kind: str,
    version: str,
    artifact_path: str,
    metrics: dict[str, Any] | None = None,
    activate: bool = True,
) -> None:
    """Record a model version (idempotent), optionally making it the active one of its kind."""
    async with conn.transaction():
        await conn.execute(
            """INSERT INTO model_versions (kind, version, artifact_path, metrics)
               VALUES ($1, $2, $3, $4)
               ON CONFLICT (kind, version) DO UPDATE SET artifact_path = EXCLUDED.artifact_path,
                                                         metrics = EXCLUDED.metrics""",
            kind, version, artifact_path, metrics or {},
        )
        if activate:
            await conn.execute("UPDATE model_versions SET active = false WHERE kind = $1 AND active", kind)
            await conn.execute("UPDATE model_versions SET active = true WHERE kind = $1 AND version = $2", kind, version)


async def active(conn: asyncpg.Connection, kind: str) -> ModelVersion | None:
    """The active version of ``kind``, or None."""
    row = await conn.fetchrow(
        "SELECT kind, version, artifact_path, metrics, active FROM model_versions WHERE kind = $1 AND active", kind
    )
    return ModelVersion(**dict(row)) if row else None


async def list_versions(conn: asyncpg.Connection, kind: str | None = None) -> list[ModelVersion]:
    rows = await conn.fetch(
        """SELECT kind, version, artifact_path, metrics, active FROM model_versions
           WHERE $1::text IS NULL OR kind = $1 ORDER BY kind, created_at""",
        kind,
    )
    return [ModelVersion(**dict(r)) for r in rows]


async def active_versions(conn: asyncpg.Connection) -> dict[str, str]:
    """``{kind: version}`` of every active model: a cheap signature for hot reload."""
    rows = await conn.fetch("SELECT kind, version FROM model_versions WHERE active")
    return {r["kind"]: r["version"] for r in rows}
