"""The bots on the workers' queue (in-memory broker, a worker in this process): the production path."""

from __future__ import annotations

from bot.core import ChatRequest, QueueRunner
from tests.bot.conftest import memo_of
from workers.broker import open_queue
from workers.identify import index_tracks


async def test_memo_through_the_queue_names_the_track_and_ranks_a_set(pool, catalog, make_service, settings, tmp_path) -> None:
    """A memo of a fingerprinted catalog track, through the queue, is identified and gets the rest ranked."""
    await index_tracks(pool, settings, [(t.track_id, str(t.path)) for t in catalog])
    clip = memo_of(catalog[2], tmp_path / "memo.m4a").read_bytes()
    seen: list[str] = []

    async def on_progress(p) -> None:
        seen.append(p.stage)

    async with open_queue(settings) as jobs:
        service = make_service(runner=QueueRunner(jobs))
        reply = await service.run(ChatRequest("slack", "T1", "C1", "U1", clip=clip, clip_name="memo.m4a"), on_progress)
    assert reply.error is None, reply.error
    assert reply.query is not None and reply.query.identified and reply.query.title == catalog[2].title
    titles = [t.title for t in reply.tracks]
    assert catalog[2].title not in titles and set(titles) <= {t.title for t in catalog} and len(titles) == 5
    assert seen and seen[0] == "queued"


async def test_unreadable_clip_through_the_queue_is_one_sentence(pool, catalog, make_service, settings) -> None:
    """Bytes that are not audio come back from the worker as the worker's sentence, not a traceback."""
    async with open_queue(settings) as jobs:
        service = make_service(runner=QueueRunner(jobs))
        reply = await service.run(ChatRequest("slack", "T1", "C1", "U1", clip=b"not audio at all" * 100,
                                              clip_name="memo.m4a"))
    assert reply.error is not None and "went wrong on our side" not in reply.error
