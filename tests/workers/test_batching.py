"""Micro-batching of model calls from concurrent jobs."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from workers.batching import MicroBatcher


def _project(rows: list[np.ndarray]) -> list[np.ndarray]:
    """A stand-in embedding model: one matrix product for the whole batch."""
    w = np.arange(12, dtype=np.float32).reshape(4, 3)
    return list(np.stack(rows) @ w)


async def test_concurrent_submissions_share_batches_and_get_their_own_results(rng):
    """20 concurrent calls run in a few batches of at most 8, each caller getting its own row."""
    batcher = MicroBatcher(_project, max_batch=8, max_wait_ms=50)
    xs = [rng.standard_normal(4).astype(np.float32) for _ in range(20)]
    try:
        got = await asyncio.gather(*(batcher.submit(x) for x in xs))
    finally:
        await batcher.close()
    for x, y in zip(xs, got):
        np.testing.assert_allclose(y, x @ np.arange(12, dtype=np.float32).reshape(4, 3), rtol=1e-5)
    assert sum(batcher.batch_sizes) == 20
    assert max(batcher.batch_sizes) <= 8 and len(batcher.batch_sizes) <= 4


async def test_a_failing_batch_fails_every_caller_in_it():
    """An exception in the batched function reaches each waiting caller."""

    def broken(rows: list[int]) -> list[int]:
        raise ValueError("model exploded")

    batcher = MicroBatcher(broken, max_batch=4, max_wait_ms=20)
    try:
        results = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
    finally:
        await batcher.close()
    assert all(isinstance(r, ValueError) for r in results)


def test_bad_parameters_are_refused():
    """A batch size below one is a parameter error."""
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(_project, max_batch=0, max_wait_ms=1)
