"""Queue tasks (``mixwith``, ``ingest``) and the per-process worker state they run on.

Tasks are thin: they hand the message to :meth:`Worker.execute`, which owns
what every job needs — exactly-once answers by request id, progress events,
the per-job timeout, retries with backoff for ``TransientError`` only, and the
record in PostgreSQL. A ``Worker`` opens its resources (database pool, guarded
HTTP session, process pool with the engine) once at startup and closes them
at shutdown; jobs borrow them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import socket
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from taskiq import AsyncBroker, AsyncTaskiqDecoratedTask, Context, TaskiqDepends

from db.pool import create_pool
from db.queries import cache as cache_q
from db.queries import jobs as jobs_q
from db.queries import models as models_q
from workers import pipeline
from workers.batching import MicroBatcher
from workers.catalog import add_to_catalog
from workers.errors import InputError, MixwithError, TransientError
from workers.jobs import INTERNAL_ERROR, Answer, JobHandle, JobStore
from workers.messages import MixRequest, MixResult, Progress, Stage
from workers.settings import AudioSettings, Settings
from workers.sources.base import FetchedAudio, TrackMeta
from workers.sources.direct import make_session
from workers.sources.fetch import Sources
from workers.sources.links import check_url, parse_link
from workers.sources.upload import UploadSpool

logger = logging.getLogger(__name__)

# A job whose worker died this many times is answered as failed instead of handed on again.
MAX_DELIVERIES = 3


@dataclass
class JobContext:
    """What a handler may touch while its job runs."""

    request_id: str
    publish: Callable[[Progress], Awaitable[None]]
    stage_now: Stage = "queued"
    timings: dict[str, float] | None = None
    source_key: str | None = None
    identified_track_id: int | None = None
    _t: float = 0.0
    _sending: asyncio.Future[None] | None = None

    async def stage(self, stage: Stage, message: str = "") -> None:
        """Enter a stage: time the previous one and tell the front end."""
        self.enter(stage, message)

    def enter(self, stage: Stage, message: str = "") -> None:
        """``stage`` for synchronous callers (the pipeline's stage callback)."""
        now = time.perf_counter()
        if self.timings is not None and self._t:
            self.timings[self.stage_now] = round(self.timings.get(self.stage_now, 0.0) + now - self._t, 4)
        self.stage_now, self._t = stage, now
        self.send(Progress(self.request_id, stage, message))

    def send(self, event: Progress) -> None:
        """Publish in the background, in order: the job does not wait for the round trip."""
        previous = self._sending

        async def chained() -> None:
            if previous is not None:
                await previous
            await self.publish(event)

        self._sending = asyncio.ensure_future(chained())

    async def flush(self) -> None:
        """Wait until every event sent so far is published (before the answer, to keep the order)."""
        if self._sending is not None:
            try:
                await self._sending
            except Exception:  # a lost progress event must not lose the answer
                logger.exception("could not publish progress of %s", self.request_id)


Handler = Callable[[dict[str, Any], JobContext], Awaitable[dict[str, Any]]]

# How often a worker looks for newly activated models (a retrain, a new index build).
RELOAD_CHECK_S = 10.0


class Worker:
    """Per-process worker state: resources opened once, shared by every job.

    Use :meth:`open` and :meth:`close` (the broker module does both).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        store: JobStore,
        pool: asyncpg.Pool,
        session: aiohttp.ClientSession,
        executor: Executor,
        sources: Sources,
        preview_dir: Path,
    ) -> None:
        self.settings = settings
        self.store = store
        self.pool = pool
        self.session = session
        self.executor = executor
        self.sources = sources
        self.preview_dir = preview_dir
        self.handlers: dict[str, Handler] = {"mixwith": self._mix, "ingest": self._ingest}
        self._batchers: dict[str, MicroBatcher[Any, Any]] = {}
        self._running: set[asyncio.Task[Any]] = set()
        self._own_executor = False
        self.resources = pipeline.Resources()
        self._resource_versions: dict[str, str] = {}
        self._resources_checked = 0.0

    def batched(self, name: str, fn: Callable[[list[Any]], Any]) -> MicroBatcher[Any, Any]:
        """The worker's shared micro-batcher for model ``name`` (e.g. the embedder's batched forward).

        Concurrent jobs that ``await worker.batched("embed", model.embed_sets).submit(x)``
        share one forward pass per ``batch_size`` items or ``batch_wait_ms``.
        """
        if name not in self._batchers:
            q = self.settings.queue
            self._batchers[name] = MicroBatcher(fn, max_batch=q.batch_size, max_wait_ms=q.batch_wait_ms)
        return self._batchers[name]

    def _embed_windows(self, resources: pipeline.Resources) -> pipeline.EmbedWindows | None:
        """The embedder's forward pass, shared by concurrent jobs (one batcher per model version)."""
        embedder = resources.embedder
        if embedder is None:
            return None
        return self.batched(f"embed:{resources.embed_version}", embedder.embed_sets).submit

    @classmethod
    async def open(cls, settings: Settings, *, store: JobStore, executor: Executor | None = None) -> "Worker":
        """Open the database pool, HTTP session and (unless given) a warmed-up engine process pool.

        An ``executor`` passed in stays its owner's: it is used, not shut down.
        """
        pool = await create_pool(dsn=settings.database_url, pg_dir=settings.pg_dir,
                                 max_size=max(4, settings.queue.concurrency + 1))
        session = make_session(settings.fetch)
        own_executor = executor is None
        if executor is None:
            executor = await start_engine_pool(settings.audio)
        work = settings.home / "work"
        spool = UploadSpool(settings.home / "uploads", max_bytes=settings.fetch.max_bytes,
                            retention_s=settings.fetch.upload_retention_s)
        spool.sweep()
        preview_dir = settings.home / "cache" / "previews"
        preview_dir.mkdir(parents=True, exist_ok=True)
        worker = cls(settings, store=store, pool=pool, session=session, executor=executor,
                     sources=Sources(settings.fetch, session=session, work_dir=work, spool=spool),
                     preview_dir=preview_dir)
        worker._own_executor = own_executor
        worker.sources.set_catalog_lookup(worker._catalog_lookup)
        worker.sweep_previews()
        await worker.reload_resources(force=True)
        return worker

    async def reload_resources(self, *, force: bool = False) -> bool:
        """Swap in newly activated models (retrained ALS, new index build) without dropping jobs.

        Checks ``model_versions`` at most every ``RELOAD_CHECK_S``; running jobs keep
        the ``Resources`` object they started with. Returns True when it reloaded.
        """
        now = time.monotonic()
        if not force and now - self._resources_checked < RELOAD_CHECK_S:
            return False
        self._resources_checked = now
        async with self.pool.acquire() as conn:
            versions = await models_q.active_versions(conn)
        if not force and versions == self._resource_versions:
            return False
        fresh = await pipeline.Resources.load(self.pool, self.settings)
        self.resources, self._resource_versions = fresh, versions
        logger.info("models loaded: %s", ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) or "none")
        return True

    async def close(self) -> None:
        for batcher in self._batchers.values():
            await batcher.close()
        await self.session.close()
        self.resources.close()
        if self._own_executor:
            self.executor.shutdown(wait=False, cancel_futures=True)
        await self.pool.close()

    # --- the job envelope --------------------------------------------------------------------

    async def execute(self, kind: str, payload: dict[str, Any]) -> None:
        """Run one delivered job and answer it, unless it was answered already."""
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        try:
            await self._execute(kind, payload)
        finally:
            self._running.discard(task)  # type: ignore[arg-type]

    async def abandon_running(self) -> int:
        """Cancel the jobs still running (a shutdown past its grace period); return how many.

        They end without an answer and stay unacknowledged, so another worker
        takes them over; closing the resources under them would instead fail
        them with an internal error.
        """
        tasks = [t for t in self._running if not t.done()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return len(tasks)

    async def _execute(self, kind: str, payload: dict[str, Any]) -> None:
        request_id = str(payload["request_id"])
        deliveries, existing = await self.store.start(request_id)
        if existing is not None:
            # answered before its worker died: make sure the record says so too (idempotent)
            logger.info("job %s was already answered; dropping this delivery", request_id)
            await self._record(kind, payload, existing, JobContext(request_id=request_id, publish=self.store.publish),
                               deliveries=deliveries)
            return
        timings: dict[str, float] = {}
        ctx = JobContext(request_id=request_id, publish=self.store.publish, timings=timings)
        t0 = time.perf_counter()
        q = self.settings.queue
        try:
            if deliveries > MAX_DELIVERIES:
                raise MixwithError("This request stopped its worker several times, so I gave up on it.")
            t_work = time.perf_counter()
            try:
                async with asyncio.timeout(q.job_timeout_s):
                    result = await self._with_retries(self.handlers[kind], payload, ctx)
            finally:
                # the job's own work, apart from the queue's bookkeeping around it
                timings["work"] = round(time.perf_counter() - t_work, 4)
            answer = Answer(request_id, ok=True, result=result)
        except TimeoutError:
            answer = Answer(request_id, ok=False, error=f"This took longer than {q.job_timeout_s:g} s, so I stopped it.",
                            error_kind="TransientError")
        except MixwithError as exc:
            answer = Answer(request_id, ok=False, error=str(exc), error_kind=type(exc).__name__)
        except asyncio.CancelledError:
            raise  # shutting down: no answer, the broker hands the job to another worker
        except Exception:
            logger.exception("job %s (%s) failed with a bug", request_id, kind)
            answer = Answer(request_id, ok=False, error=INTERNAL_ERROR, error_kind="")
        timings[ctx.stage_now] = round(timings.get(ctx.stage_now, 0.0) + time.perf_counter() - (ctx._t or t0), 4)
        timings["total"] = round(time.perf_counter() - t0, 4)
        timings["deliveries"] = deliveries
        answer = replace(answer, timings=timings, worker=f"{socket.gethostname()}-{os.getpid()}")
        await ctx.flush()
        if not await self.store.finish(answer, drop_upload=self.settings.fetch.upload_retention_s <= 0):
            logger.info("job %s was answered by another delivery meanwhile", request_id)
        # after the answer, so the user does not wait on bookkeeping; before the ack, so a kill
        # here means another delivery, which finds the answer and only writes this record
        await self._record(kind, payload, answer, ctx, deliveries=deliveries)

    async def _with_retries(self, handler: Handler, payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        q = self.settings.queue
        for attempt in range(q.retries + 1):
            try:
                return await handler(payload, ctx)
            except TransientError as exc:
                if attempt >= q.retries:
                    raise
                delay = q.retry_backoff_s * 2**attempt
                logger.info("job %s: %s; retry %d in %.1f s", ctx.request_id, exc, attempt + 1, delay)
                ctx.send(Progress(ctx.request_id, ctx.stage_now, f"{exc} Trying again in {delay:g} s."))
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _record(self, kind: str, payload: dict[str, Any], answer: Answer, ctx: JobContext, *,
                      deliveries: int) -> None:
        """Write the request, its outcome and its recommendations in one transaction (idempotent)."""
        if kind != "mixwith":
            return
        r = MixRequest.from_dict(payload)
        try:
            async with self.pool.acquire() as conn:
                await jobs_q.record_request(
                    conn, request_id=r.request_id, platform=r.platform, place=r.place, user_id=r.user_id,
                    input_kind=r.input_kind, input_ref=r.input_ref[:2048], options=r.options.to_dict(),
                    status="done" if answer.ok else "failed", error=answer.error or None,
                    query=answer.result.get("query") if answer.ok else None, timings=answer.timings,
                    attempts=deliveries, source_key=ctx.source_key, identified_track_id=ctx.identified_track_id,
                    recommendations=answer.result.get("results", []) if answer.ok else (),
                )
        except (asyncpg.PostgresError, OSError):
            logger.exception("could not record the outcome of %s", answer.request_id)

    # --- mixwith ---------------------------------------------------------------------------

    async def _mix(self, payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        request = MixRequest.from_dict(payload)
        await self.reload_resources()
        resources = self.resources  # this job keeps these even if a reload swaps them meanwhile
        upload = await self.store.get_upload(request.request_id) if request.input_kind == "upload" else None
        key = source_key_of(request, upload)
        ctx.source_key = key
        await ctx.stage("fetching", "fetching the audio")
        if request.input_kind == "link":
            link = parse_link(request.input_ref)
            if link.service == "direct":
                # checked before the cache too: a cached answer must not reveal an address we now refuse
                await asyncio.to_thread(check_url, link.url,
                                        allow_loopback=self.settings.fetch.allow_loopback_for_tests)
        cached = await self._cached(key)
        if cached is None:
            fetched = await self._fetch(request, upload, key)
            try:
                if fetched.track_id is None:
                    try:
                        query = await pipeline.understand_file(
                            self.pool, fetched.path, settings=self.settings, resources=resources,
                            executor=self.executor, title=fetched.title, artist=fetched.artist,
                            on_stage=ctx.enter, embed_windows=self._embed_windows(resources),
                        )
                    except InputError as exc:
                        # name the input as the user knows it, not our spool file
                        reason = str(exc).split(": ", 1)[-1]
                        raise InputError(f"{_display_name(request, fetched)}: {reason}") from None
                    query_dict: dict[str, Any] | None = query.to_dict()
                else:
                    query_dict = None
            finally:
                if request.input_kind == "upload":
                    self.sources.spool.release(fetched.path)
            cached = {"query": query_dict, "title": fetched.title, "artist": fetched.artist,
                      "track_id": fetched.track_id, "isrc": fetched.isrc, "spotify_id": fetched.spotify_id}
            if key:
                await self._cache(key, cached)
        await ctx.stage("ranking", "ranking the catalog")
        options = request.options
        query_d = cached.get("query")
        if cached.get("track_id") is not None:
            ctx.identified_track_id = int(cached["track_id"])
            result = await pipeline.recommend_track(self.pool, ctx.identified_track_id, settings=self.settings,
                                                    options=options, resources=resources,
                                                    request_id=request.request_id)
        elif query_d is not None:
            query = pipeline.Query.from_dict(query_d)
            if query.track_id is not None:
                ctx.identified_track_id = query.track_id
            result = await pipeline.build_result(self.pool, query, settings=self.settings, options=options,
                                                 resources=resources, request_id=request.request_id)
        else:  # a cache entry from before queries were cached whole
            raise TransientError("the cached analysis is outdated; trying again")
        return result.to_dict()

    async def _fetch(self, request: MixRequest, upload: bytes | None, key: str | None) -> FetchedAudio:
        preview = self._preview(key) if key and request.input_kind == "link" else None
        if preview is not None:
            return FetchedAudio(path=preview, title=preview.stem, source_key=key or "")
        fetched = await self.sources.fetch(request, upload=upload)
        if key and request.input_kind == "link" and fetched.track_id is None and fetched.path.exists():
            kept = self._preview_path(key, fetched.path.suffix)
            shutil.move(str(fetched.path), kept)
            fetched = replace(fetched, path=kept)
        return fetched

    def _preview_path(self, key: str, suffix: str) -> Path:
        return self.preview_dir / (hashlib.sha256(key.encode()).hexdigest()[:32] + suffix)

    def _preview(self, key: str) -> Path | None:
        stem = hashlib.sha256(key.encode()).hexdigest()[:32]
        ttl = self.settings.fetch.cache_ttl_s
        for path in self.preview_dir.glob(stem + ".*"):
            if time.time() - path.stat().st_mtime < ttl:
                return path
        return None

    def sweep_previews(self) -> int:
        """Delete previews older than the cache TTL."""
        removed = 0
        for path in self.preview_dir.iterdir():
            if time.time() - path.stat().st_mtime > self.settings.fetch.cache_ttl_s:
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    async def _cached(self, key: str | None) -> dict[str, Any] | None:
        if not key:
            return None
        async with self.pool.acquire() as conn:
            return await cache_q.get_cached(conn, key, "analysis")

    async def _cache(self, key: str, payload: dict[str, Any]) -> None:
        async with self.pool.acquire() as conn:
            await cache_q.put_cached(conn, key, "analysis", payload, ttl_s=self.settings.fetch.cache_ttl_s)

    async def _catalog_lookup(self, meta: TrackMeta) -> FetchedAudio | None:
        async with self.pool.acquire() as conn:
            track_id = await cache_q.match_track(conn, spotify_id=meta.spotify_id, isrc=meta.isrc,
                                                 title=meta.title, artist=meta.artists[0] if meta.artists else "")
        if track_id is None:
            return None
        return FetchedAudio(path=Path(os.devnull), title=meta.title, artist=meta.artist, track_id=track_id)

    # --- ingest ------------------------------------------------------------------------------

    async def _ingest(self, payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        paths = [str(p) for p in payload.get("paths") or ()]
        if not paths:
            raise InputError("Name at least one file or folder to add.")
        await ctx.stage("analysing", f"adding {len(paths)} path(s) to the catalog")

        def on_progress(done: int, total: int, path: str) -> None:
            ctx.send(Progress(ctx.request_id, "analysing", f"{done}/{total}"))

        # the same catalog update as `mixwith catalog add`: analysis, fingerprints, sounds-like index. It runs in
        # engine processes of its own (started for it, stopped after): in the request pool every /mixwith request
        # would queue behind all of a library's files, and those processes would keep the import's models loaded.
        update = await add_to_catalog(self.pool, paths, settings=self.settings,
                                      source=str(payload.get("source") or "library"),
                                      on_progress=on_progress, executor=None)
        await self.reload_resources(force=True)  # the next request sees the new tracks at once
        return update.to_dict()


# Imported once in the fork server, so every engine process starts with them loaded
# (scipy.signal alone takes seconds to import).
ENGINE_PRELOAD = ["numpy", "scipy.signal", "soundfile", "engine.analysis", "engine.audio", "workers.catalog"]


async def start_engine_pool(audio: AudioSettings) -> Executor:
    """A process pool for engine work, each process warmed up by one real analysis.

    Models, indexes and compiled code are thus loaded once per process, at
    startup, and no user's job pays for them.
    """
    from workers.processes import make_executor

    executor = make_executor(audio.processes, preload=ENGINE_PRELOAD)
    loop = asyncio.get_running_loop()
    await asyncio.gather(*(loop.run_in_executor(executor, _warm_engine, audio) for _ in range(max(1, audio.processes))))
    return executor


def _warm_engine(audio: AudioSettings) -> int:
    """Decode and analyse a short synthesized track in this engine process; return its pid."""
    import tempfile

    import soundfile as sf

    from engine.camelot import Key
    from engine.synth import TrackSpec, render
    from workers.catalog import process_file

    y = render(TrackSpec(style="house", bpm=124.0, key=Key(9, "minor"), duration_s=6.0, seed=0), sr=audio.sample_rate)
    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        sf.write(tmp.name, y, audio.sample_rate)
        process_file(tmp.name, audio)
    return os.getpid()


def _display_name(request: MixRequest, fetched: FetchedAudio) -> str:
    if request.input_kind == "upload":
        return Path(request.input_ref).name or "the upload"
    return fetched.title or "the linked audio"


def source_key_of(request: MixRequest, upload: bytes | None) -> str | None:
    """The cache key of a request's input, known before fetching anything (None: not cached)."""
    if request.input_kind == "upload":
        return f"upload:{hashlib.sha256(upload).hexdigest()}" if upload else None
    if request.input_kind == "link":
        return parse_link(request.input_ref).source_key
    return None


# --- taskiq wiring ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tasks:
    """The registered tasks of one broker."""

    mixwith: AsyncTaskiqDecoratedTask[Any, None]
    ingest: AsyncTaskiqDecoratedTask[Any, None]


def register_tasks(broker: AsyncBroker) -> Tasks:
    """Register the thin tasks on ``broker``; the worker comes from ``broker.state.worker``."""

    async def mixwith(request: dict[str, Any], context: Context = TaskiqDepends()) -> None:
        await context.state.worker.execute("mixwith", request)

    async def ingest(job: dict[str, Any], context: Context = TaskiqDepends()) -> None:
        await context.state.worker.execute("ingest", job)

    return Tasks(
        mixwith=broker.register_task(mixwith, task_name="mixwith"),
        ingest=broker.register_task(ingest, task_name="ingest"),
    )


class JobClient:
    """What the bots and the CLI call: submit a job, follow its progress, get its answer.

    ``submit`` is idempotent by ``request.request_id``: submitting the same
    request again (a retried slash command) returns a handle on the first job.
    """

    def __init__(self, *, tasks: Tasks, store: JobStore, settings: Settings, local_worker: Worker | None = None) -> None:
        self._tasks = tasks
        self._store = store
        self._settings = settings
        self.local_worker = local_worker  # the in-process worker (memory broker), else None

    async def submit(self, request: MixRequest, *, upload: bytes | None = None) -> JobHandle:
        """Queue a mix job; ``upload`` carries the bytes of an uploaded clip.

        Raises
        ------
        InputError
            An upload request without bytes, or bytes over the size limit.
        TransientError
            The queue cannot be reached.
        """
        if request.input_kind == "upload":
            if not upload:
                raise InputError("The upload is empty.")
            if len(upload) > self._settings.fetch.max_bytes:
                raise InputError(f"The upload is {len(upload) / 1e6:.1f} MB; the limit is "
                                 f"{self._settings.fetch.max_bytes / 1e6:.1f} MB.")
        return await self._submit("mixwith", request.request_id, request.to_dict(), upload=upload)

    async def submit_ingest(self, paths: list[str], *, request_id: str, source: str = "library") -> JobHandle:
        """Queue a catalog ingest of files/folders on the worker's disk."""
        return await self._submit("ingest", request_id, {"request_id": request_id, "paths": paths, "source": source})

    async def mix(self, request: MixRequest, *, upload: bytes | None = None, timeout_s: float | None = None) -> MixResult:
        """Submit and wait: the MixResult, or the worker's MixwithError raised here."""
        handle = await self.submit(request, upload=upload)
        return await handle.result(timeout_s=timeout_s)

    def handle(self, request_id: str) -> JobHandle:
        """Follow a job submitted earlier (by this process or another)."""
        return JobHandle(self._store, request_id, duplicate=True)

    async def _submit(self, kind: str, request_id: str, payload: dict[str, Any], *, upload: bytes | None = None) -> JobHandle:
        try:
            if not await self._store.submit(request_id, kind, upload=upload):
                return JobHandle(self._store, request_id, duplicate=True)
            task = self._tasks.mixwith if kind == "mixwith" else self._tasks.ingest
            await task.kiq(payload)
        except (OSError, ConnectionError) as exc:
            raise TransientError("The job queue cannot be reached right now; try again shortly.") from exc
        except Exception as exc:  # redis-py raises its own ConnectionError/TimeoutError classes
            if type(exc).__module__.startswith("redis"):
                raise TransientError("The job queue cannot be reached right now; try again shortly.") from exc
            raise
        return JobHandle(self._store, request_id, duplicate=False)
