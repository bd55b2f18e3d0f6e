"""/mixwith <link> [count=8] [bpm=120-128] [key_lock] [energy=up|down|steady]."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.core import ChatRequest, MixService, parse_text_options
from bot.slack.reply import answer
from workers.errors import MixwithError

logger = logging.getLogger(__name__)

USAGE = (
    "Usage: `/mixwith <song link> [count=8] [bpm=120-128] [key_lock] [energy=up|down|steady]`. "
    "To mix a clip, share the audio file in a channel I'm in, or send it to me in a DM."
)


async def mixwith(
    ack: Callable[..., Awaitable[Any]], command: dict[str, Any], client: AsyncWebClient, context: dict[str, Any]
) -> None:
    # Acknowledge first: Slack shows an error if this takes over 3 s; the work runs after.
    try:
        link, options = parse_text_options(command.get("text", ""))
    except MixwithError as exc:
        await ack(text=f":x: {exc}\n{USAGE}")
        return
    if link is None:
        await ack(text=USAGE)
        return
    await ack(text=f":headphones: On it — mixing with {link}")
    service: MixService = context["mixwith"]
    chat = ChatRequest(
        platform="slack", place=command.get("team_id", ""), channel=command["channel_id"],
        user_id=command["user_id"], link=link, options=options,
    )
    service.spawn(answer(client, service, chat), name=f"slack /mixwith {command['user_id']}")


def register(app: AsyncApp) -> None:
    app.command("/mixwith")(mixwith)
