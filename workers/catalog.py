"""Adding a DJ's files to the catalog.

Files are found recursively, hashed (the content hash makes re-adding a
no-op), analysed in parallel processes, and each result is committed as it
arrives, so an interrupted run loses nothing and a rerun picks up the rest.
Unreadable files never stop the batch: they come back with a reason.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import multiprocessing
import os
import re
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg

from db.queries import tracks as tracks_q
from engine.analysis import analyze
from engine.audio import AUDIO_EXTENSIONS, load
from engine.errors import EngineError
from workers.settings import AudioSettings

if TYPE_CHECKING:
    from workers.settings import Settings

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int, str], None]


@dataclass(frozen=True)
class FileFailure:
    """A file that could not be added, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class FileResult:
    """What the engine computed for one file (in a worker process)."""

    path: str
    analysis: dict[str, Any] | None = None
    error: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class IngestReport:
    """Outcome of one ``catalog add``."""

    added: tuple[tuple[int, str], ...]
    already_present: int
    failed: tuple[FileFailure, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": [{"track_id": t, "path": p} for t, p in self.added],
            "already_present": self.already_present,
            "failed": [{"path": f.path, "reason": f.reason} for f in self.failed],
        }


def discover(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[Path], list[FileFailure]]:
    """Audio files under ``paths`` (files or folders, recursive), sorted, without duplicates.

    A named file is taken whatever its extension (it will fail to decode with a
    reason if it is not audio); inside folders only audio extensions count.
    """
    found: dict[Path, None] = {}
    missing: list[FileFailure] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_file():
            found[p.resolve()] = None
        elif p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if Path(name).suffix.lower() in AUDIO_EXTENSIONS and not name.startswith("."):
                        found[(Path(root) / name).resolve()] = None
        else:
            missing.append(FileFailure(str(p), "no such file or folder"))
    return sorted(found), missing


def content_hash(path: Path, *, chunk_bytes: int = 1 << 20) -> str:
    """SHA-256 of the file's bytes, hex."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(chunk_bytes):
            h.update(chunk)
    return h.hexdigest()


def read_tags(path: Path) -> dict[str, str]:
    """Title, artist, album and genre from the file's tags, else from its name.

    A name like ``Artist - Title.mp3`` gives both; otherwise the stem is the title.
    """
    tags: dict[str, str] = {}
    try:
        import mutagen

        f = mutagen.File(path, easy=True)
        if f is not None and f.tags is not None:
            for name in ("title", "artist", "album", "genre"):
                values = f.tags.get(name)
                if values:
                    tags[name] = str(values[0]).strip()
    except Exception as exc:  # mutagen raises many types on damaged tags; names still work
        logger.debug("no tags in %s: %s", path, exc)
    if not tags.get("title"):
        stem = re.sub(r"[_]+", " ", path.stem).strip()
        m = re.match(r"^(?:\d+[\s.\-]+)?(.+?)\s+-\s+(.+)$", stem)
        if m and not tags.get("artist"):
            tags["artist"], tags["title"] = m.group(1).strip(), m.group(2).strip()
        else:
            tags["title"] = stem
    return {k: tags.get(k, "") for k in ("title", "artist", "album", "genre")}


def process_file(path: str, audio: AudioSettings) -> FileResult:
    """Decode once and run the engine on one file (runs in a worker process).

    Never raises for bad input: the reason goes into ``FileResult.error``.
    """
    try:
        y = load(path, sr=audio.sample_rate, limits=audio.limits, max_seconds=audio.analysis_seconds)
        result = analyze(y, sr=audio.sample_rate)
    except EngineError as exc:
        return FileResult(path=path, error=getattr(exc, "reason", str(exc)))
    except Exception as exc:  # a bug on one file must not lose the batch; logged with traceback
        logger.exception("analysis failed on %s", path)
        return FileResult(path=path, error=f"internal error: {type(exc).__name__}: {exc}")
    return FileResult(path=path, analysis=result.to_dict())


def make_executor(processes: int) -> Executor:
    """A process pool that starts clean workers (no inherited event loop or sockets)."""
    ctx = multiprocessing.get_context("forkserver")
    return ProcessPoolExecutor(max_workers=max(1, processes), mp_context=ctx)


async def add_paths(
    pool: asyncpg.Pool,
    paths: Sequence[str | os.PathLike[str]],
    *,
    audio: AudioSettings,
    source: str = "library",
    on_progress: ProgressCallback | None = None,
    executor: Executor | None = None,
) -> IngestReport:
    """Add files and folders to the catalog.

    Parameters
    ----------
    pool : asyncpg.Pool
    paths : sequence of path-like
    audio : AudioSettings
        Decode limits, analysis rate and process count.
    source : str
        Recorded on each new track ("library", "demo").
    on_progress : callable(done, total, path), optional
    executor : Executor, optional
        Where the engine runs; a process pool of ``audio.processes`` by default.
    """
    files, failures = discover(paths)
    loop = asyncio.get_running_loop()
    hashes = dict(zip(files, await asyncio.gather(*(loop.run_in_executor(None, content_hash, f) for f in files))))
    async with pool.acquire() as conn:
        present = await tracks_q.hashes_present(conn, list(hashes.values()))
    todo: list[Path] = []
    seen: set[str] = set()
    already = 0
    for f in files:
        h = hashes[f]
        if h in present or h in seen:
            already += 1
        else:
            seen.add(h)
            todo.append(f)

    added: list[tuple[int, str]] = []
    total = len(todo)
    if on_progress:
        on_progress(0, total, "")
    own_executor = executor is None and total > 0
    ex = make_executor(min(audio.processes, total)) if own_executor else executor
    try:
        futures = [loop.run_in_executor(ex, process_file, str(f), audio) for f in todo]
        done = 0
        for fut in asyncio.as_completed(futures):
            res: FileResult = await fut
            done += 1
            path = Path(res.path)
            if res.error is not None or res.analysis is None:
                failures.append(FileFailure(res.path, res.error or "no analysis"))
            else:
                tags = read_tags(path)
                async with pool.acquire() as conn:
                    track_id, created = await tracks_q.add_analyzed_track(
                        conn,
                        content_hash=hashes[path],
                        path=res.path,
                        source=source,
                        analysis=res.analysis,
                        **tags,
                    )
                if created:
                    added.append((track_id, res.path))
                else:
                    already += 1
            if on_progress:
                on_progress(done, total, res.path)
    finally:
        if own_executor and ex is not None:
            ex.shutdown(cancel_futures=True)
    failures.sort(key=lambda f: f.path)
    return IngestReport(added=tuple(sorted(added)), already_present=already, failed=tuple(failures))


@dataclass(frozen=True)
class CatalogUpdate:
    """Everything one ``catalog add`` did: analysis, fingerprints, sounds-like index."""

    ingest: IngestReport
    fingerprinted: tuple[int, ...] = ()
    fingerprint_failed: tuple[tuple[int, str], ...] = ()
    indexed: int = 0
    index_note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.ingest.to_dict(),
            "fingerprinted": list(self.fingerprinted),
            "fingerprint_failed": [{"track_id": t, "reason": r} for t, r in self.fingerprint_failed],
            "sounds_like_indexed": self.indexed,
        }


async def add_to_catalog(
    pool: asyncpg.Pool,
    paths: Sequence[str | os.PathLike[str]],
    *,
    settings: "Settings",
    source: str = "library",
    on_progress: ProgressCallback | None = None,
    executor: Executor | None = None,
) -> CatalogUpdate:
    """Analyse new files, fingerprint them for identification, refresh the sounds-like index.

    The two indexes are also brought up to date when nothing was added: a
    fingerprint index this version cannot read (an older format after an
    upgrade, or damage) is rebuilt from the whole catalog, and a sounds-like
    index is built for an embedder version that has none (new default weights).
    Each step after the analysis is skipped with a logged warning, never fatal:
    the tracks are in the catalog either way.
    """
    from engine.fpindex import IndexError_
    from engine.index import live_build
    from workers.embedding import build_catalog_index, open_embedder
    from workers.identify import index_tracks, reindex_catalog

    report = await add_paths(pool, paths, audio=settings.audio, source=source, on_progress=on_progress,
                             executor=executor)
    loop = asyncio.get_running_loop()
    try:  # index_tracks opens the index before fingerprinting anything
        update = await index_tracks(pool, settings, report.added, executor=executor)
    except IndexError_ as exc:
        logger.warning("fingerprinting the whole catalog again: %s", exc)
        update = await reindex_catalog(pool, settings, executor=executor)
    indexed, note = 0, ""
    try:
        embedder, version = await loop.run_in_executor(None, open_embedder, settings.embed)
        stale = live_build(settings.index_dir, version) is None
        if stale and not report.added:
            async with pool.acquire() as conn:
                stale = await tracks_q.count_tracks(conn) > 0
        if report.added or stale:
            built = await build_catalog_index(pool, settings=settings, embedder=embedder, model_version=version)
            indexed = built.n_items
    except (EngineError, OSError, RuntimeError) as exc:
        note = f"sounds-like index not rebuilt: {exc}"
        logger.warning("%s", note)
    return CatalogUpdate(ingest=report, fingerprinted=update.indexed, fingerprint_failed=update.failed,
                         indexed=indexed, index_note=note)
