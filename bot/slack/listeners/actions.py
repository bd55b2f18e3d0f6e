"""Block actions: the Spotify link button still sends an action, which must be acknowledged."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.slack.blocks import OPEN_PLAYLIST


async def open_playlist(ack: Callable[[], Awaitable[Any]]) -> None:
    await ack()


def register(app: AsyncApp) -> None:
    app.action(OPEN_PLAYLIST)(open_playlist)
