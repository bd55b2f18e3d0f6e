"""Request records written by the workers."""

from __future__ import annotations

import uuid

from db.queries import feedback as feedback_q
from db.queries import jobs as jobs_q


def _record(request_id: str, *, status: str = "done", error: str | None = None) -> dict:
    return dict(request_id=request_id, platform="discord", place="g/c", user_id="u", input_kind="link",
                input_ref="https://example.com/a.mp3", options={"count": 3}, status=status, error=error,
                query={"bpm": 124.0}, timings={"total": 0.5, "work": 0.4}, attempts=1, source_key="direct:x",
                identified_track_id=None)


async def test_a_request_is_recorded_once(pool):
    """The first record wins; a duplicate delivery's record changes nothing."""
    rid = str(uuid.uuid4())
    async with pool.acquire() as conn:
        assert await jobs_q.record_request(conn, **_record(rid))
        assert not await jobs_q.record_request(conn, **_record(rid, status="failed", error="late duplicate"))
        row = await jobs_q.get_request(conn, rid)
    assert (row.status, row.error, row.attempts, row.timings["work"]) == ("done", None, 1, 0.4)


async def test_a_row_the_bot_inserted_is_completed_in_place(pool):
    """A request the front end recorded at submission (with its reply message) is finished, keeping reply_ref."""
    rid = str(uuid.uuid4())
    async with pool.acquire() as conn:
        await feedback_q.insert_request(conn, request_id=rid, platform="discord", place="g/c", user_id="u",
                                        input_kind="link", input_ref="https://example.com/a.mp3", options={})
        await feedback_q.set_reply_ref(conn, request_id=rid, reply_ref="msg-1")
        assert await jobs_q.record_request(conn, **_record(rid, status="failed", error="The link is not audio."))
        row = await jobs_q.get_request(conn, rid)
    assert (row.status, row.error, row.reply_ref) == ("failed", "The link is not audio.", "msg-1")
