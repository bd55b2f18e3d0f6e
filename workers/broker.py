"""The one place the task broker is chosen, started and stopped.

``MIXWITH_BROKER=memory`` (the default) runs jobs inside the calling
process: taskiq's in-memory broker schedules them on the event loop and the
heavy engine work goes to a local process pool, so a bot keeps answering.
``MIXWITH_BROKER=redis://…`` puts jobs on a Redis stream that any number of
``mixwith worker`` processes consume; a job whose worker died is taken over
by another after ``claim_idle_s`` (the stream keeps it pending until acked).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from taskiq import AckableMessage, AsyncBroker, InMemoryBroker
from taskiq.receiver import Receiver
from taskiq_redis import RedisStreamBroker

from workers.jobs import JobStore, MemoryJobStore, RedisJobStore
from workers.settings import QueueSettings, Settings
from workers.tasks import JobClient, Worker, register_tasks

logger = logging.getLogger(__name__)


class ReclaimingStreamBroker(RedisStreamBroker):
    """RedisStreamBroker that also reclaims orphaned jobs while no new ones arrive.

    taskiq-redis 1.2 runs XAUTOCLAIM only after XREADGROUP returned new
    messages, so a job left pending by a killed worker would wait for the
    next submission. Here every worker checks for such jobs at least every
    ``claim_every_s`` seconds.
    """

    def __init__(self, url: str, *, claim_every_s: float, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.claim_every_s = claim_every_s
        self._abandoning = False

    def abandon(self) -> None:
        """Acknowledge nothing from now on: jobs cut short by a shutdown stay pending for other workers.

        taskiq acknowledges a message whatever its task's outcome, cancellation included.
        """
        self._abandoning = True

    async def listen(self) -> AsyncGenerator[AckableMessage, None]:
        from redis.asyncio import Redis

        last_claim = 0.0
        async with Redis(connection_pool=self.connection_pool) as conn:
            while True:
                fetched = await conn.xreadgroup(
                    self.consumer_group_name, self.consumer_name, {self.queue_name: ">"},
                    block=self.block, noack=False, count=self.count,
                )
                for stream, entries in fetched or []:
                    for msg_id, msg in entries:
                        yield AckableMessage(data=msg[b"data"], ack=self._ack_generator(id=msg_id, queue_name=stream))
                now = time.monotonic()
                if now - last_claim < self.claim_every_s:
                    continue
                last_claim = now
                _next, claimed, *_ = await conn.xautoclaim(
                    self.queue_name, self.consumer_group_name, self.consumer_name,
                    min_idle_time=self.idle_timeout, count=self.count or 1,
                )
                for msg_id, msg in claimed:
                    if msg:  # None when the entry was trimmed from the stream meanwhile
                        logger.warning("taking over job %s from a worker that stopped", msg_id)
                        yield AckableMessage(data=msg[b"data"], ack=self._ack_generator(id=msg_id, queue_name=self.queue_name))


    def _ack_generator(self, id: str, queue_name: str) -> Callable[[], Awaitable[None]]:
        # an ack lost to a dropped connection (e.g. during shutdown) is retried once on a new
        # connection; if that fails too, the job is redelivered later and found already answered
        ack = super()._ack_generator(id=id, queue_name=queue_name)

        async def _ack() -> None:
            from redis.exceptions import ConnectionError as RedisConnectionError

            if self._abandoning:
                logger.info("job %s left unacknowledged for another worker", id)
                return
            try:
                await ack()
            except RedisConnectionError:
                try:
                    await ack()
                except RedisConnectionError:
                    logger.warning("could not acknowledge job %s; it will be redelivered and dropped", id)

        return _ack


def make_broker(queue: QueueSettings, *, consumer_name: str | None = None) -> AsyncBroker:
    """The broker named by ``MIXWITH_BROKER``."""
    if not queue.is_redis:
        return InMemoryBroker(max_async_tasks=queue.concurrency, await_inplace=False)
    return ReclaimingStreamBroker(
        queue.broker_url,
        queue_name=f"{queue.queue_name}:jobs",
        consumer_group_name=f"{queue.queue_name}:workers",
        consumer_name=consumer_name or f"{socket.gethostname()}-{os.getpid()}",
        consumer_id="0",  # a group created after the first submission must still see it
        xread_count=1,  # take one job at a time, so idle workers share the queue fairly
        xread_block=1000,
        idle_timeout=int(queue.claim_idle_s * 1000),
        claim_every_s=max(0.5, min(5.0, queue.claim_idle_s / 4)),
    )


def make_store(queue: QueueSettings) -> JobStore:
    """Job records next to the broker: in this process, or in the same Redis."""
    if not queue.is_redis:
        return MemoryJobStore()
    return RedisJobStore(queue.broker_url, prefix=queue.queue_name, ttl_s=queue.result_ttl_s)


@asynccontextmanager
async def open_queue(settings: Settings, *, executor: Executor | None = None) -> AsyncIterator[JobClient]:
    """A client for submitting jobs; with the in-memory broker also the worker that runs them.

    Parameters
    ----------
    settings : Settings
    executor : Executor or None
        Engine process pool for the in-process worker; by default one is
        started (and warmed up) here and shut down on exit.
    """
    broker = make_broker(settings.queue)
    store = make_store(settings.queue)
    tasks = register_tasks(broker)
    worker: Worker | None = None
    try:
        if not settings.queue.is_redis:
            worker = await Worker.open(settings, store=store, executor=executor)
            broker.state.worker = worker
        await broker.startup()
        yield JobClient(tasks=tasks, store=store, settings=settings, local_worker=worker)
    finally:
        if isinstance(broker, InMemoryBroker):
            await broker.wait_all()
        await broker.shutdown()
        if worker is not None:
            await worker.close()
        await store.close()


async def run_worker(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Consume jobs from Redis until ``stop`` is set (or SIGINT/SIGTERM).

    Models and indexes are loaded once, in this process and in each engine
    process of its pool, and reused by every job. On the first signal the
    worker takes no new job and finishes the ones it holds, for up to
    ``shutdown_grace_s``; what is still running then stays unacknowledged and
    another worker takes it over. A second signal stops at once.
    """
    if not settings.queue.is_redis:
        raise RuntimeError("mixwith worker needs MIXWITH_BROKER=redis://...; the in-memory queue runs inside the bot")
    broker = make_broker(settings.queue)
    store = make_store(settings.queue)
    register_tasks(broker)
    broker.is_worker_process = True
    stop = stop or asyncio.Event()
    now = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        (now if stop.is_set() else stop).set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass
    worker = await Worker.open(settings, store=store)
    broker.state.worker = worker
    await broker.startup()
    logger.info("worker %s listening on %s", os.getpid(), settings.queue.queue_name)
    grace = settings.queue.shutdown_grace_s
    with ThreadPoolExecutor(max_workers=1) as sync_pool:  # taskiq wants one; every task here is async
        # The receiver stops fetching when `stop` is set, then waits up to `grace` for running jobs.
        receiver = Receiver(broker=broker, executor=sync_pool, run_startup=False, max_async_tasks=settings.queue.concurrency,
                            max_prefetch=0, wait_tasks_timeout=grace)
        listening = asyncio.create_task(receiver.listen(stop))
        try:
            await stop.wait()
            logger.info("worker %s stopping: finishing running jobs (up to %g s; signal again to stop now)",
                        os.getpid(), grace)
            forced = asyncio.create_task(now.wait())
            await asyncio.wait({listening, forced}, timeout=grace + 5.0, return_when=asyncio.FIRST_COMPLETED)
            forced.cancel()
        finally:
            if not listening.done():
                listening.cancel()
            try:
                await listening
            except (asyncio.CancelledError, Exception):  # cancelled, or the broker connection failed
                pass
            if isinstance(broker, ReclaimingStreamBroker):
                broker.abandon()
            if left := await worker.abandon_running():
                logger.warning("worker %s left %d running job(s) to other workers", os.getpid(), left)
            await broker.shutdown()
            await worker.close()
            await store.close()
            logger.info("worker %s stopped", os.getpid())
