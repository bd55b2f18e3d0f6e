"""The Slack app: an AsyncApp whose listeners reach the MixService through Bolt's context.

HTTP mode verifies every request with the signing secret (Bolt answers 401
to bad or stale signatures); Socket Mode (an ``xapp-`` token) needs no public
address. Either way the listeners are the same.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncApp
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot.core import MixService
from bot.slack import listeners
from workers.settings import SlackSettings

logger = logging.getLogger(__name__)

SERVICE_KEY = "mixwith"
DOWNLOADS_KEY = "mixwith_http"
SETTINGS_KEY = "mixwith_slack"


def create_app(
    settings: SlackSettings,
    service: MixService,
    *,
    http: aiohttp.ClientSession,
    client: AsyncWebClient | None = None,
) -> AsyncApp:
    """Build the app with its listeners.

    Parameters
    ----------
    settings : SlackSettings
    service : MixService
    http : aiohttp.ClientSession
        For downloading shared files (``url_private_download`` with the bot token).
    client : AsyncWebClient, optional
        Defaults to one on ``settings.api_url`` with the bot token.
    """
    if not settings.bot_token:
        raise ValueError("SLACK_BOT_TOKEN is not set")
    if not settings.app_token and not settings.signing_secret:
        raise ValueError("set SLACK_SIGNING_SECRET (HTTP mode) or SLACK_APP_TOKEN (Socket Mode)")
    if client is None:
        client = AsyncWebClient(token=settings.bot_token, base_url=settings.api_url)
        # Many replies editing at once meet Slack's per-method rate limits: wait as told
        # (Retry-After) rather than lose a final message.
        client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=3))
    app = AsyncApp(
        client=client,
        signing_secret=settings.signing_secret or None,
        # Socket Mode connections are authenticated by the app token, not signed.
        request_verification_enabled=bool(settings.signing_secret),
    )

    @app.use
    async def provide(context: dict[str, Any], next: Callable[[], Awaitable[None]]) -> None:
        context[SERVICE_KEY] = service
        context[DOWNLOADS_KEY] = http
        context[SETTINGS_KEY] = settings
        await next()

    listeners.register(app)
    return app
