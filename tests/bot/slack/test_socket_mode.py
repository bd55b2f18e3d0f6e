"""mixwith on Slack over Socket Mode: the app dials the fake's websocket, envelopes in, acknowledgements out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from bot.core import MixService
from bot.serve import _serve_slack
from bot.slack.app import create_app
from db.queries import feedback as fbq
from tests.bot.conftest import memo_of
from tests.fakes.slack_api import BOT_USER, TEAM, FakeSlack
from workers.settings import SlackSettings


@pytest.fixture
async def socket_slack(make_service: Callable[..., MixService]) -> AsyncIterator[tuple[FakeSlack, MixService]]:
    fake = FakeSlack()
    await fake.start()
    service = make_service()
    settings = SlackSettings(bot_token=fake.token, app_token=fake.app_token, api_url=fake.api_url)
    async with aiohttp.ClientSession() as http:
        app = create_app(settings, service, http=http)
        serving = asyncio.create_task(_serve_slack(app, settings))
        try:
            await fake.wait_for(lambda f: bool(f.sockets), timeout_s=15)
            yield fake, service
            await service.drain(timeout_s=30)
        finally:
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)
    await fake.close()


def _command(fake: FakeSlack, text: str) -> dict[str, Any]:
    return {"token": "legacy", "team_id": TEAM, "team_domain": "mixwith-test", "channel_id": "C0MIXES01",
            "channel_name": "mixes", "user_id": "U0DJ00001", "user_name": "dj", "command": "/mixwith", "text": text,
            "api_app_id": "AMIXWITH1", "is_enterprise_install": "false",
            "response_url": f"{fake.url}/commands/resp", "trigger_id": "1.2.3"}


async def test_socket_mode_connects_with_the_app_token(socket_slack) -> None:
    """The app asked for a websocket URL with its xapp- token (the bot token would be refused)."""
    fake, _ = socket_slack
    assert len(fake.calls_to("apps.connections.open")) == 1


async def test_slash_command_over_socket_is_acked_then_answered(socket_slack, catalog, tmp_path) -> None:
    """A /mixwith envelope is acknowledged on the socket with the 'On it' text, then the set is posted."""
    fake, _ = socket_slack
    url = fake.add_media("s.m4a", memo_of(catalog[2], tmp_path / "s.m4a").read_bytes(), "audio/mp4")
    envelope = await fake.push("slash_commands", _command(fake, f"<{url}> count=3"))
    await fake.wait_for(lambda f: envelope in f.acks, timeout_s=10)
    assert "On it" in str(fake.acks[envelope].get("payload"))
    await fake.wait_for(lambda f: bool(f.calls_to("files.completeUploadExternal")))
    final = [m for m in fake.messages.values() if m["blocks"]][-1]
    assert catalog[2].title in final["blocks"][0]["text"]["text"]
    assert len([b for b in final["blocks"] if b["type"] == "section"]) == 3


async def test_bad_options_over_socket_are_explained_in_the_ack(socket_slack) -> None:
    """An unknown option gets the usage line in the acknowledgement, and no job."""
    fake, _ = socket_slack
    envelope = await fake.push("slash_commands", _command(fake, "https://example.com/a.mp3 tempo=fast"))
    await fake.wait_for(lambda f: envelope in f.acks, timeout_s=10)
    assert "tempo" in str(fake.acks[envelope].get("payload")).lower()
    assert not fake.calls_to("chat.postMessage")


async def test_reaction_event_over_socket_is_stored(socket_slack, pool, catalog, tmp_path) -> None:
    """reaction_added arriving as an events_api envelope becomes one feedback row."""
    fake, service = socket_slack
    url = fake.add_media("r.m4a", memo_of(catalog[1], tmp_path / "r.m4a").read_bytes(), "audio/mp4")
    await fake.push("slash_commands", _command(fake, f"<{url}>"))
    await fake.wait_for(lambda f: bool(f.calls_to("files.completeUploadExternal")))
    final = [m for m in fake.messages.values() if m["blocks"]][-1]
    event = {"type": "reaction_added", "user": "U0DJ00002", "reaction": "+1",
             "item": {"type": "message", "channel": "C0MIXES01", "ts": final["ts"]}, "item_user": BOT_USER,
             "event_ts": "1767226000.000200"}
    body = {"token": "legacy", "team_id": TEAM, "api_app_id": "AMIXWITH1", "event": event, "type": "event_callback",
            "event_id": "Ev0SOCKET01", "event_time": 1767226000,
            "authorizations": [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": True}]}
    envelope = await fake.push("events_api", body, accepts_response_payload=False)
    await fake.wait_for(lambda f: envelope in f.acks, timeout_s=10)
    async with pool.acquire() as conn:
        rid = await fbq.request_for_reply(conn, platform="slack", reply_ref=f"C0MIXES01:{final['ts']}")
        for _ in range(100):  # the listener runs after the ack
            if await fbq.count_feedback(conn, request_id=rid):
                break
            await asyncio.sleep(0.1)
        rows = await conn.fetch("SELECT reaction, value FROM feedback WHERE request_id = $1", rid)
    assert [(r["reaction"], r["value"]) for r in rows] == [("up", 1)]  # 👍 under its platform-neutral name
