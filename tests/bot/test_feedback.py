"""Reactions become training data: feedback rows and the pairs retraining folds in."""

from __future__ import annotations

from bot.core import ChatRequest, make_options
from db.queries import feedback as fbq
from tests.bot.conftest import memo_of


async def test_feedback_pairs_weigh_reply_and_track_reactions(pool, make_service, catalog, tmp_path) -> None:
    """🔥 on a reply counts +2 for each of its tracks; 2️⃣ adds +1 to the second track only."""
    service = make_service()
    clip = memo_of(catalog[0], tmp_path / "m.m4a").read_bytes()
    reply = await service.run(ChatRequest("slack", "T1", "C1", "U1", clip=clip, clip_name="m.m4a",
                                          options=make_options(count=3)))
    await service.attach_reply(request_id=reply.request_id, reply_ref="C1:1.0")
    for reaction in ("fire", "two"):
        assert await service.react(platform="slack", reply_ref="C1:1.0", user_id="U2", reaction=reaction,
                                   added=True, event_id=f"Ev-{reaction}")
    async with pool.acquire() as conn:
        pairs = {(r["query_track_id"], r["track_id"]): r["weight"] for r in await fbq.feedback_pairs(conn)}
        second = await fbq.track_at_rank(conn, request_id=reply.request_id, rank=2)
    assert len(pairs) == 3
    assert all(q == catalog[0].track_id for q, _ in pairs)
    assert {t: w for (_, t), w in pairs.items()} == {
        tid: (3.0 if tid == second else 2.0) for (_, tid) in pairs
    }


async def test_reaction_on_an_unknown_message_is_ignored(pool, make_service) -> None:
    """A reaction on a message that is not a reply stores nothing."""
    service = make_service()
    changed = await service.react(platform="discord", reply_ref="123", user_id="u", reaction="👍", added=True)
    assert changed is False
