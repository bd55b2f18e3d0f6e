"""The bots on the workers' queue (in-memory broker, a worker in this process): the production path."""

from __future__ import annotations

from bot.core import ChatRequest, QueueRunner
from tests.bot.conftest import memo_of
from workers.broker import open_queue


async def test_clip_through_the_queue_gets_a_ranked_set(pool, catalog, make_service, settings, tmp_path) -> None:
    """A clip submitted through the queue comes back ranked against the catalog by the worker's pipeline."""
    clip = memo_of(catalog[0], tmp_path / "memo.m4a").read_bytes()
    seen: list[str] = []

    async def on_progress(p) -> None:
        seen.append(p.stage)

    async with open_queue(settings) as jobs:
        service = make_service(runner=QueueRunner(jobs))
        reply = await service.run(ChatRequest("slack", "T1", "C1", "U1", clip=clip, clip_name="memo.m4a"), on_progress)
    assert reply.error is None, reply.error
    assert {t.title for t in reply.tracks} <= {t.title for t in catalog} and len(reply.tracks) >= 5
    assert seen and seen[0] == "queued"


async def test_unreadable_clip_through_the_queue_is_one_sentence(pool, catalog, make_service, settings) -> None:
    """Bytes that are not audio come back from the worker as the worker's sentence, not a traceback."""
    async with open_queue(settings) as jobs:
        service = make_service(runner=QueueRunner(jobs))
        reply = await service.run(ChatRequest("slack", "T1", "C1", "U1", clip=b"not audio at all" * 100,
                                              clip_name="memo.m4a"))
    assert reply.error is not None and "went wrong on our side" not in reply.error
