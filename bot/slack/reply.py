"""Posting a reply on Slack: a progress message, edited into the final Block Kit message.

The message is posted with the bot token (not the slash command's
``response_url``) so reactions on it reach ``reaction_added`` and it can be
edited as often as needed; the Camelot wheel goes in its thread.
"""

from __future__ import annotations

import asyncio
import logging

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.core import ChatRequest, MixService, Reply, progress_text
from bot.slack import blocks
from bot.wheel import render_wheel
from workers.messages import Progress

logger = logging.getLogger(__name__)


def reply_ref(channel: str, ts: str) -> str:
    """How a Slack message is named in ``requests.reply_ref`` (reactions carry both)."""
    return f"{channel}:{ts}"


async def answer(
    client: AsyncWebClient, service: MixService, chat: ChatRequest, *, thread_ts: str | None = None
) -> Reply:
    """Run ``chat`` and show it in ``chat.channel``; returns the reply (for logging and tests)."""
    first = await client.chat_postMessage(
        channel=chat.channel, thread_ts=thread_ts, text="⏳ Queued…", unfurl_links=False
    )
    channel, ts = first["channel"], first["ts"]

    async def on_progress(p: Progress) -> None:
        await client.chat_update(channel=channel, ts=ts, text=progress_text(p))

    reply = await service.run(chat, on_progress)
    if reply.error is not None:
        await client.chat_update(channel=channel, ts=ts, text=blocks.fallback_text(reply),
                                 blocks=blocks.error_blocks(reply))
        return reply
    await client.chat_update(channel=channel, ts=ts, text=blocks.fallback_text(reply),
                             blocks=blocks.reply_blocks(reply))
    await service.attach_reply(request_id=reply.request_id, reply_ref=reply_ref(channel, ts))
    if reply.tracks:
        # Drawing and PNG encoding take tens of ms: off the loop that acknowledges commands.
        png = await asyncio.to_thread(
            render_wheel, reply.query.camelot if reply.query else None, [t.camelot for t in reply.tracks]
        )
        try:
            await client.files_upload_v2(
                channel=channel, thread_ts=ts, file=png, filename="wheel.png",
                title="The set on the Camelot wheel", alt_txt="Camelot wheel with the set's keys in order",
            )
        except SlackApiError as exc:  # e.g. missing files:write: the reply itself stands
            logger.warning("wheel upload for %s failed: %s", reply.request_id, exc.response.get("error"))
    return reply
