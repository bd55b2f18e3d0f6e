"""mixwith on Slack end to end: signed HTTP requests into Bolt, the fake Web API answering."""

from __future__ import annotations

import time

from db.queries import feedback as fbq
from tests.bot.conftest import memo_of
from tests.bot.slack.conftest import SlackHarness
from tests.fakes.slack_api import BOT_USER


def _final(h: SlackHarness) -> dict:
    """The bot's last message that carries blocks (the finished reply)."""
    done = [m for m in h.fake.messages.values() if m["blocks"]]
    return done[-1] if done else {}


def _block_text(msg: dict) -> str:
    out = []
    for b in msg.get("blocks", []):
        t = b.get("text")
        if isinstance(t, dict):
            out.append(t["text"])
        for e in b.get("elements", []):
            if isinstance(e.get("text"), str):
                out.append(e["text"])
    return "\n".join(out)


async def test_slash_command_with_link_gets_a_ranked_set(slack: SlackHarness, catalog, tmp_path) -> None:
    """/mixwith <link to a catalog track> is acknowledged, then answered with the track named and a ranked set."""
    track = catalog[2]
    url = slack.fake.add_media("song.m4a", memo_of(track, tmp_path / "song.m4a").read_bytes(), "audio/mp4")
    status, text, _ = await slack.command(f"<{url}> count=3")
    assert status == 200 and "On it" in text
    await slack.fake.wait_for(lambda f: bool(f.calls_to("files.completeUploadExternal")))
    final = _final(slack)
    assert track.title in final["blocks"][0]["text"]["text"]
    assert len([b for b in final["blocks"] if b["type"] == "section"]) == 3
    updates = [c.args for c in slack.fake.calls_to("chat.update") if c.args["ts"] == final["ts"]]
    assert updates[0]["text"].startswith("⏳") and updates[-1].get("blocks")  # progress first, then the set
    complete = slack.fake.calls_to("files.completeUploadExternal")[0].args
    assert complete["thread_ts"] == final["ts"]
    assert slack.fake.uploads[complete["files"][0]["id"]].startswith(b"\x89PNG")


async def test_slash_command_acknowledges_before_the_job_runs(slack: SlackHarness, catalog, tmp_path) -> None:
    """The HTTP answer to /mixwith comes before the reply message is finished."""
    url = slack.fake.add_media("a.m4a", memo_of(catalog[0], tmp_path / "a.m4a").read_bytes(), "audio/mp4")
    status, _, _ = await slack.command(f"<{url}>")
    acked_at = time.monotonic()
    assert status == 200
    await slack.fake.wait_for(lambda f: bool(_final(slack)))
    finished = [c.at for c in slack.fake.calls_to("chat.update") if c.args.get("blocks")][-1]
    assert acked_at < finished


async def test_bad_options_are_explained_in_the_ack(slack: SlackHarness) -> None:
    """An unknown word in the command text is answered at once with the usage line."""
    status, text, _ = await slack.command("https://example.com/x.mp3 loud")
    assert status == 200
    assert "I don't understand 'loud'" in text and "Usage" in text
    assert not slack.fake.calls_to("chat.postMessage")


async def test_bad_signature_is_rejected(slack: SlackHarness) -> None:
    """A request signed with another secret gets 401 and starts nothing."""
    status, _, _ = await slack.command("https://example.com/x.mp3", secret="not-the-secret")
    assert status == 401
    assert not slack.fake.calls_to("chat.postMessage")


async def test_stale_signature_is_rejected(slack: SlackHarness) -> None:
    """A correctly signed request from ten minutes ago (a replay) gets 401."""
    status, _, _ = await slack.command("https://example.com/x.mp3", timestamp=int(time.time()) - 600)
    assert status == 401


async def test_shared_audio_file_is_downloaded_with_the_bot_token(slack: SlackHarness, catalog, tmp_path) -> None:
    """A memo shared in a DM is fetched with the bot token and answered in its thread, naming the track."""
    track = catalog[4]
    f = slack.fake.add_file("F0MEMO0001", "memo.m4a", memo_of(track, tmp_path / "memo.m4a").read_bytes(), "audio/mp4")
    event = {"type": "message", "subtype": "file_share", "channel": "D0DJDM001", "channel_type": "im",
             "user": "U0DJ00001", "text": "", "ts": "1767225000.000200", "files": [f]}
    status, _, _ = await slack.event(event, event_id="Ev0FILE0001")
    assert status == 200
    await slack.fake.wait_for(lambda fk: bool(_final(slack)) and bool(fk.calls_to("files.completeUploadExternal")))
    assert slack.fake.downloads == ["memo.m4a"]
    final = _final(slack)
    assert final["thread_ts"] == "1767225000.000200"
    assert track.title in _block_text(final)


async def test_reaction_replayed_by_slack_is_stored_once(slack: SlackHarness, pool, catalog, tmp_path) -> None:
    """reaction_added makes one feedback row; Slack's retry of the same event leaves one; removal deletes it."""
    url = slack.fake.add_media("b.m4a", memo_of(catalog[1], tmp_path / "b.m4a").read_bytes(), "audio/mp4")
    await slack.command(f"<{url}>")
    await slack.fake.wait_for(lambda f: bool(f.calls_to("files.completeUploadExternal")))
    final = _final(slack)
    async with pool.acquire() as conn:
        rid = await fbq.request_for_reply(conn, platform="slack", reply_ref=f"C0MIXES01:{final['ts']}")
    assert rid is not None
    event = {"type": "reaction_added", "user": "U0DJ00002", "reaction": "fire",
             "item": {"type": "message", "channel": "C0MIXES01", "ts": final["ts"]}, "item_user": BOT_USER,
             "event_ts": "1767226000.000100"}
    for retry in (None, "1"):
        headers = {"X-Slack-Retry-Num": retry, "X-Slack-Retry-Reason": "http_timeout"} if retry else None
        status, _, _ = await slack.event(event, event_id="Ev0REACT001", headers=headers)
        assert status == 200
        await slack.service.drain(timeout_s=10)
        await _settle_bolt()
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT reaction, value FROM feedback WHERE request_id = $1", rid)
    assert [(r["reaction"], r["value"]) for r in rows] == [("fire", 2)]
    removed = {**event, "type": "reaction_removed"}
    await slack.event(removed, event_id="Ev0REACT002")
    await _settle_bolt()
    async with pool.acquire() as conn:
        assert await fbq.count_feedback(conn, request_id=rid) == 0


async def _settle_bolt() -> None:
    """Wait for Bolt's listener tasks (it runs them after answering the HTTP request)."""
    import asyncio

    me = asyncio.current_task()
    pending = [t for t in asyncio.all_tasks() if t is not me and "run_ack_function_asynchronously" in t.get_coro().__qualname__]
    if pending:
        await asyncio.wait(pending, timeout=10)
