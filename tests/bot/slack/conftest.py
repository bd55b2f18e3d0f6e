"""A running Slack app in HTTP mode, its fake Web API, and a client that signs requests like Slack."""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from bot.core import MixService
from bot.slack.app import create_app
from tests.fakes.slack_api import TEAM, FakeSlack
from workers.settings import SlackSettings

SECRET = "test-signing-secret"


@dataclass
class SlackHarness:
    fake: FakeSlack
    service: MixService
    url: str
    http: aiohttp.ClientSession

    async def post(
        self, body: str, *, content_type: str, timestamp: int | None = None, secret: str = SECRET,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, str, float]:
        """POST a body signed like Slack does; returns (status, text, seconds to answer)."""
        ts = str(int(time.time()) if timestamp is None else timestamp)
        sig = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
        h = {"Content-Type": content_type, "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sig, **(headers or {})}
        start = time.monotonic()
        async with self.http.post(self.url, data=body.encode(), headers=h) as r:
            return r.status, await r.text(), time.monotonic() - start

    async def command(self, text: str, *, user: str = "U0DJ00001", channel: str = "C0MIXES01", **kw: Any) -> tuple[int, str, float]:
        form = {"token": "legacy", "team_id": TEAM, "team_domain": "mixwith-test", "channel_id": channel,
                "channel_name": "mixes", "user_id": user, "user_name": "dj", "command": "/mixwith", "text": text,
                "api_app_id": "AMIXWITH1", "response_url": f"{self.fake.url}/commands/resp",
                "trigger_id": "1.2.3"}
        return await self.post(urllib.parse.urlencode(form), content_type="application/x-www-form-urlencoded", **kw)

    async def event(self, event: dict[str, Any], *, event_id: str, **kw: Any) -> tuple[int, str, float]:
        body = {"token": "legacy", "team_id": TEAM, "api_app_id": "AMIXWITH1", "event": event,
                "type": "event_callback", "event_id": event_id, "event_time": int(time.time()),
                "authorizations": [{"team_id": TEAM, "user_id": "UMIXBOT01", "is_bot": True}]}
        return await self.post(json.dumps(body), content_type="application/json", **kw)


@pytest.fixture
async def slack(make_service: Callable[..., MixService]) -> AsyncIterator[SlackHarness]:
    fake = FakeSlack()
    await fake.start()
    service = make_service()
    settings = SlackSettings(bot_token=fake.token, signing_secret=SECRET, api_url=fake.api_url)
    async with aiohttp.ClientSession() as http:
        app = create_app(settings, service, http=http, client=AsyncWebClient(token=fake.token, base_url=fake.api_url))
        runner = web.AppRunner(app.web_app(path="/slack/events"))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        yield SlackHarness(fake, service, f"http://127.0.0.1:{port}/slack/events", http)
        await service.drain(timeout_s=30)
        await runner.cleanup()
    await fake.close()
