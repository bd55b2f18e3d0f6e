"""Adding a DJ's files to the catalog.

Files are found recursively, hashed (the content hash makes re-adding a
no-op), analysed in parallel processes, and each result is committed as it
arrives, so an interrupted run loses nothing and a rerun picks up the rest.
Unreadable files never stop the batch: they come back with a reason.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import os
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg
import numpy as np

from db.queries import tracks as tracks_q

from engine.analysis import Analysis, analyze
from engine.audio import AUDIO_EXTENSIONS, load, resample
from engine.errors import EngineError
from engine.fingerprint import FP_SR, Fingerprints, fingerprint
from workers.embedding import TrackEmbedding, embed_audio, embed_file, process_embedder
from workers.identify import fingerprint_file
from workers.processes import make_executor
from workers.settings import AudioSettings, EmbedSettings

if TYPE_CHECKING:
    from engine.fpindex import FingerprintIndex
    from workers.settings import Settings

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int, str], None]


@dataclass(frozen=True)
class FileFailure:
    """A file that could not be added, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class FileWork:
    """What else to compute from a file's one decode, besides its analysis.

    Attributes
    ----------
    fingerprint : bool
        Landmark fingerprints of the whole file, for identification.
    embed : EmbedSettings or None
        Sounds-like vectors with these weights (loaded once per worker process).
    """

    fingerprint: bool = False
    embed: EmbedSettings | None = None


@dataclass(frozen=True)
class FileResult:
    """What the engine computed for one file (in a worker process).

    ``error`` means the file cannot join the catalog; ``fingerprint_error`` and
    ``embed_error`` only that one index will lack it.
    """

    path: str
    analysis: dict[str, Any] | None = None
    error: str | None = None
    fingerprints: Fingerprints | None = None
    fingerprint_error: str | None = None
    embedding: TrackEmbedding | None = None
    embed_error: str | None = None


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


def process_file(path: str, audio: AudioSettings, work: FileWork = FileWork()) -> FileResult:
    """Decode once and run the engine on one file (runs in a worker process).

    The analysis reads the first ``audio.analysis_seconds``; fingerprints and
    sounds-like vectors (``work``) come from the same decode, resampled, instead
    of decoding the file again for each (decoding costs as much CPU as analysing).
    Never raises for bad input: the reason goes into the result.
    """
    derive = work.fingerprint or work.embed is not None

    def decode_and_analyse() -> tuple[np.ndarray, Analysis]:
        y = load(path, sr=audio.sample_rate, limits=audio.limits,
                 max_seconds=None if derive else audio.analysis_seconds)
        return y, analyze(y[: int(audio.analysis_seconds * audio.sample_rate)], sr=audio.sample_rate)

    analysed, error = _guarded(path, "analysis", decode_and_analyse)
    if analysed is None:
        return FileResult(path=path, error=error)
    y, result = analysed
    if not derive:
        return FileResult(path=path, analysis=result.to_dict())
    y_fp = resample(y, orig_sr=audio.sample_rate, target_sr=FP_SR) if audio.sample_rate >= FP_SR else None
    fps, fp_error = _guarded(path, "fingerprinting", lambda: _fingerprint(path, y_fp, audio)) if work.fingerprint \
        else (None, None)
    emb, emb_error = _guarded(path, "embedding", lambda: _embed(path, y_fp, audio, work.embed)) if work.embed \
        else (None, None)
    return FileResult(path=path, analysis=result.to_dict(), fingerprints=fps, fingerprint_error=fp_error,
                      embedding=emb, embed_error=emb_error)


T = TypeVar("T")


def _guarded(path: str, what: str, step: Callable[[], T]) -> tuple[T | None, str | None]:
    """Run one step on a file: its result, or the reason it failed (a bug is logged with its traceback)."""
    try:
        return step(), None
    except EngineError as exc:
        return None, getattr(exc, "reason", str(exc))
    except Exception as exc:  # a bug on one file must not lose the batch
        logger.exception("%s failed on %s", what, path)
        return None, f"internal error: {type(exc).__name__}: {exc}"


def _fingerprint(path: str, y_fp: np.ndarray | None, audio: AudioSettings) -> Fingerprints:
    if y_fp is None:  # the analysis rate is below the fingerprints' band: decode at their rate
        return fingerprint_file(path, audio)
    return fingerprint(y_fp, sr=FP_SR)


def _embed(path: str, y_fp: np.ndarray | None, audio: AudioSettings, settings: EmbedSettings) -> TrackEmbedding:
    embedder, version = process_embedder(settings)
    if y_fp is None:
        return embed_file(path, embedder=embedder, model_version=version, limits=audio.limits,
                          max_seconds=settings.max_seconds)
    return embed_audio(y_fp, sr=FP_SR, embedder=embedder, model_version=version, max_seconds=settings.max_seconds)


async def add_paths(
    pool: asyncpg.Pool,
    paths: Sequence[str | os.PathLike[str]],
    *,
    audio: AudioSettings,
    source: str = "library",
    on_progress: ProgressCallback | None = None,
    executor: Executor | None = None,
    work: FileWork = FileWork(),
    on_added: Callable[[int, FileResult], Awaitable[None]] | None = None,
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
    work : FileWork
        What else each file's decode is used for (fingerprints, sounds-like vectors).
    on_added : async callable(track_id, FileResult), optional
        Called for each track this run created, with everything computed for it.
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
        futures = [loop.run_in_executor(ex, process_file, str(f), audio, work) for f in todo]
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
                    if on_added is not None:
                        await on_added(track_id, res)
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


FINGERPRINT_BATCH = 200
"""Added tracks whose fingerprints are held before being written to the index (bounds memory on big libraries)."""


class _Gathered:
    """Fingerprints and sound vectors of the tracks a ``catalog add`` creates, taken as each file finishes."""

    def __init__(self, index: "FingerprintIndex | None", *, model_version: str | None, windows_below: int) -> None:
        self.index = index
        self.model_version = model_version
        self.windows_below = windows_below
        self.pending: list[tuple[int, Fingerprints]] = []
        self.fingerprinted: list[int] = []
        self.fingerprint_failed: list[tuple[int, str]] = []
        self.embedded: dict[int, TrackEmbedding] = {}

    async def take(self, track_id: int, res: FileResult) -> None:
        if self.index is not None:
            if res.fingerprints is not None:
                self.pending.append((track_id, res.fingerprints))
                if len(self.pending) >= FINGERPRINT_BATCH:
                    await self.flush()
            else:
                reason = res.fingerprint_error or "no fingerprints"
                logger.warning("track %d not fingerprinted: %s", track_id, reason)
                self.fingerprint_failed.append((track_id, reason))
        emb = res.embedding
        if emb is not None and emb.model_version == self.model_version:
            if len(self.embedded) >= self.windows_below:  # past the exact-search size no build keeps windows
                emb = dataclasses.replace(emb, windows=emb.windows[:0])
            self.embedded[track_id] = emb
        elif res.embed_error:
            logger.warning("track %d not embedded: %s", track_id, res.embed_error)

    async def flush(self) -> None:
        if self.index is None or not self.pending:
            return
        batch, self.pending = self.pending, []
        await asyncio.get_running_loop().run_in_executor(None, self.index.add_many, batch)
        self.fingerprinted.extend(t for t, _ in batch)


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

    Each file is decoded once: its analysis, fingerprints and sound vectors come
    from that decode. The two indexes are also brought up to date when nothing
    was added: a fingerprint index this version cannot read (an older format
    after an upgrade, or damage) is rebuilt from the whole catalog, and a
    sounds-like index is built for an embedder version that has none (new
    default weights). Each step after the analysis is skipped with a logged
    warning, never fatal: the tracks are in the catalog either way.
    """
    from engine.fpindex import IndexError_
    from engine.index import live_build
    from workers.embedding import build_catalog_index, open_embedder
    from workers.identify import open_index, register_index, reindex_catalog

    loop = asyncio.get_running_loop()
    index: FingerprintIndex | None
    try:
        index = open_index(settings)
    except IndexError_ as exc:
        logger.warning("fingerprinting the whole catalog again: %s", exc)
        index = None  # rebuilt from every file once the new ones are in
    embedder, version, note = None, None, ""
    try:
        embedder, version = await loop.run_in_executor(None, open_embedder, settings.embed)
    except (EngineError, OSError, RuntimeError) as exc:
        note = f"sounds-like index not rebuilt: {exc}"
        logger.warning("%s", note)
    gathered = _Gathered(index, model_version=version, windows_below=settings.embed.index_exact_below)
    work = FileWork(fingerprint=index is not None, embed=settings.embed if embedder is not None else None)
    report = await add_paths(pool, paths, audio=settings.audio, source=source, on_progress=on_progress,
                             executor=executor, work=work, on_added=gathered.take)
    if index is None:
        update = await reindex_catalog(pool, settings, executor=executor)
        fingerprinted, fingerprint_failed = update.indexed, update.failed
    else:
        await gathered.flush()
        if gathered.fingerprinted:
            await register_index(pool, index)
        fingerprinted, fingerprint_failed = tuple(gathered.fingerprinted), tuple(gathered.fingerprint_failed)
    indexed = 0
    if embedder is not None and version is not None:
        try:
            stale = live_build(settings.index_dir, version) is None
            if stale and not report.added:
                async with pool.acquire() as conn:
                    stale = await tracks_q.count_tracks(conn) > 0
            if report.added or stale:
                built = await build_catalog_index(pool, settings=settings, embedder=embedder, model_version=version,
                                                  fresh=gathered.embedded)
                indexed = built.n_items
        except (EngineError, OSError, RuntimeError) as exc:
            note = f"sounds-like index not rebuilt: {exc}"
            logger.warning("%s", note)
    return CatalogUpdate(ingest=report, fingerprinted=fingerprinted, fingerprint_failed=fingerprint_failed,
                         indexed=indexed, index_note=note)
