"""Shared fixtures: a real PostgreSQL, settings in a temp home, synthesized audio.

The database is an embedded server (pgserver) in a temp dir, or, when
``DATABASE_URL`` is set, a fresh database created on that server for this run
and dropped afterwards. Every test that takes ``pool`` starts from empty tables.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import numpy as np
import pytest
import soundfile as sf

from db.pool import create_pool
from engine.camelot import Key
from engine.synth import TrackSpec, render
from workers.settings import AudioSettings, Settings

SR = 22050


def pytest_configure(config: pytest.Config) -> None:
    # numba-free, BLAS-light defaults keep the suite steady on 2 cores
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """DSN of an empty database that lives for the test session."""
    base = os.environ.get("DATABASE_URL")
    if not base:
        import pgserver

        with tempfile.TemporaryDirectory(prefix="mixwith-pg-") as tmp:
            server = pgserver.get_server(Path(tmp) / "pg", cleanup_mode="delete")
            yield server.get_uri()
            server.cleanup()
        return
    import asyncio

    name = f"mixwith_test_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(base)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    dsn = _with_database(base, name)
    try:
        yield dsn
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _with_database(dsn: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@pytest.fixture(scope="session")
async def _session_pool(pg_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(dsn=pg_dsn, pg_dir=tmp_path_factory.mktemp("unused-pg"), max_size=8)
    yield pool
    await pool.close()


@pytest.fixture
async def pool(_session_pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Pool]:
    """The session's pool, with every table emptied first."""
    async with _session_pool.acquire() as conn:
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'"
        )
        if tables:
            names = ", ".join(f'"{t["tablename"]}"' for t in tables)
            await conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    yield _session_pool


@pytest.fixture
def settings(tmp_path: Path, pg_dsn: str) -> Settings:
    """Settings with a temp data home, the test database, one analysis process."""
    return Settings(home=tmp_path / "home", database_url=pg_dsn, audio=AudioSettings(processes=1))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261122)


@pytest.fixture
def write_track(tmp_path: Path) -> Callable[..., Path]:
    """Render a synthesized track of known style, tempo and key to a file."""

    def _write(
        name: str = "track.wav",
        *,
        style: str = "house",
        bpm: float = 124.0,
        key: Key = Key(9, "minor"),
        duration_s: float = 12.0,
        seed: int = 1,
        folder: Path | None = None,
    ) -> Path:
        y = render(TrackSpec(style=style, bpm=bpm, key=key, duration_s=duration_s, seed=seed), sr=SR)
        path = (folder or tmp_path) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        fmt = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}.get(path.suffix.lower())
        if fmt is None:
            raise ValueError(f"write_track writes wav, flac or ogg, not {path.suffix}")
        sf.write(path, y, SR, format=fmt)
        return path

    return _write
