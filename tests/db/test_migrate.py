"""Migrations: applied once, in order, and safe to run again."""

from __future__ import annotations

import asyncpg

from db.migrate import apply_migrations, list_migrations


def test_migration_files_are_numbered_in_order() -> None:
    """Every migration file has a unique number and they sort by it."""
    versions = [v for v, _, _ in list_migrations()]
    assert versions == sorted(set(versions))
    assert versions[0] == 1


async def test_migrations_are_idempotent(pool: asyncpg.Pool) -> None:
    """A second run applies nothing and leaves the schema as it was."""
    async with pool.acquire() as conn:
        before = await conn.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
        assert await apply_migrations(conn) == []
        after = await conn.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
    assert [tuple(r) for r in before] == [tuple(r) for r in after]
    assert len(after) == len(list_migrations())


async def test_schema_has_the_mission_tables(pool: asyncpg.Pool) -> None:
    """The tables every later feature relies on exist."""
    async with pool.acquire() as conn:
        names = {r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")}
    assert {"tracks", "analyses", "mixes", "mix_tracks", "requests", "recommendations", "feedback", "model_versions"} <= names


async def test_feedback_replay_is_harmless(pool: asyncpg.Pool) -> None:
    """The same reaction stored twice stays one row."""
    async with pool.acquire() as conn:
        rid = await conn.fetchval(
            "INSERT INTO requests (id, platform, input_kind, input_ref) VALUES (gen_random_uuid(), 'slack', 'link', 'x') RETURNING id"
        )
        for _ in range(2):
            await conn.execute(
                """INSERT INTO feedback (request_id, user_id, platform, reaction, value) VALUES ($1, 'u1', 'slack', '+1', 1)
                   ON CONFLICT DO NOTHING""",
                rid,
            )
        assert await conn.fetchval("SELECT count(*) FROM feedback") == 1
