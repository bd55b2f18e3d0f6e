"""Micro-batching: many concurrent jobs' model calls become one batched call.

A GPU embeds 16 clips nearly as fast as one. Jobs running concurrently in a
worker ``await batcher.submit(x)``; the batcher waits at most ``max_wait_ms``
for up to ``max_batch`` items, runs ``fn`` once on the list (in an executor,
off the event loop) and hands each job its own result.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[T, R]):
    """Collect items from concurrent callers into batches for ``fn``.

    Parameters
    ----------
    fn : callable(list of T) -> sequence of R
        Batched function (a model's forward pass); one result per item, in order.
    max_batch : int > 0
        Largest batch.
    max_wait_ms : float >= 0
        Longest time the first item of a batch waits for company.
    executor : Executor or None
        Where ``fn`` runs (default: the loop's thread pool; torch releases the GIL).
    """

    def __init__(self, fn: Callable[[list[T]], Sequence[R]], *, max_batch: int, max_wait_ms: float,
                 executor: Executor | None = None) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self._fn = fn
        self._max_batch = max_batch
        self._max_wait_s = max_wait_ms / 1000.0
        self._executor = executor
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] = asyncio.Queue()
        self._runner: asyncio.Task[None] | None = None
        self.batch_sizes: list[int] = []  # observed, for metrics and tests

    async def submit(self, item: T) -> R:
        """Add one item and wait for its result (``fn``'s exception is raised to every caller of the batch)."""
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run())
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        await self._queue.put((item, fut))
        return await fut

    async def close(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            try:
                await self._runner
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self._max_wait_s
            while len(batch) < self._max_batch:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except TimeoutError:
                    break
            live = [(x, f) for x, f in batch if not f.cancelled()]
            if not live:
                continue
            self.batch_sizes.append(len(live))
            try:
                results = await loop.run_in_executor(self._executor, self._fn, [x for x, _ in live])
                if len(results) != len(live):
                    raise RuntimeError(f"batched function returned {len(results)} results for {len(live)} items")
            except Exception as exc:  # every waiting job learns of the failure
                for _, f in live:
                    if not f.done():
                        f.set_exception(exc)
                continue
            for (_, f), r in zip(live, results):
                if not f.done():
                    f.set_result(r)
