"""Audio files shared with the bot, and reactions on its replies."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.core import ChatRequest, MixService
from bot.slack.reply import answer, reply_ref
from workers.errors import InputError, MixwithError
from workers.messages import MixOptions
from workers.settings import SlackSettings

logger = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".mp3", ".m4a", ".aac", ".wav", ".flac", ".ogg", ".opus", ".webm", ".mp4", ".mov", ".aiff", ".aif")


def is_audio(f: dict[str, Any]) -> bool:
    mime = str(f.get("mimetype") or "").lower()
    return mime.startswith(("audio/", "video/")) or Path(str(f.get("name") or "")).suffix.lower() in AUDIO_SUFFIXES


async def download(http: aiohttp.ClientSession, f: dict[str, Any], *, token: str, max_bytes: int) -> bytes:
    """A shared file's bytes; private URLs need the bot token as Bearer."""
    url = f.get("url_private_download") or f.get("url_private")
    if not url:
        raise InputError(f"Slack gave me no download link for {f.get('name', 'the file')}.")
    try:
        async with http.get(url, headers={"Authorization": f"Bearer {token}"}, allow_redirects=False) as r:
            if r.status != 200 or r.content_type.startswith("text/html"):
                # Slack answers a missing files:read scope with a redirect to a login page.
                raise InputError(f"I could not download {f.get('name', 'the file')} (is the files:read scope granted?).")
            chunks: list[bytes] = []
            size = 0
            async for chunk in r.content.iter_chunked(1 << 16):
                size += len(chunk)
                if size > max_bytes:  # the declared size can lie; stop reading at the limit
                    raise InputError(f"{f.get('name', 'The file')} is larger than {max_bytes / 1e6:.0f} MB.")
                chunks.append(chunk)
    except aiohttp.ClientError as exc:
        raise InputError(f"Downloading {f.get('name', 'the file')} from Slack failed; try again.") from exc
    return b"".join(chunks)


async def _mix_file(
    client: AsyncWebClient, service: MixService, http: aiohttp.ClientSession, settings: SlackSettings,
    event: dict[str, Any], f: dict[str, Any], team: str,
) -> None:
    channel, ts = event["channel"], event["ts"]
    try:
        service.check_clip(size=int(f.get("size") or 0), name=str(f.get("name") or "The file"))
        data = await download(http, f, token=settings.bot_token, max_bytes=service.settings.max_upload_bytes)
    except MixwithError as exc:
        await client.chat_postMessage(channel=channel, thread_ts=ts, text=f":x: {exc}")
        return
    chat = ChatRequest(
        platform="slack", place=team, channel=channel, user_id=event.get("user", ""),
        clip=data, clip_name=str(f.get("name") or "clip"), options=MixOptions(),
    )
    await answer(client, service, chat, thread_ts=ts)


async def message(event: dict[str, Any], body: dict[str, Any], client: AsyncWebClient, context: dict[str, Any]) -> None:
    """A message with files: mix each audio file, replying in its thread."""
    files = event.get("files") or []
    if not files or event.get("bot_id") or event.get("user") == context.get("bot_user_id"):
        return  # ordinary chat, or our own wheel upload
    service: MixService = context["mixwith"]
    for f in files:
        if is_audio(f):
            service.spawn(
                _mix_file(client, service, context["mixwith_http"], context["mixwith_slack"], event, f,
                          body.get("team_id", "")),
                name=f"slack file {f.get('id')}",
            )


async def _reaction(body: dict[str, Any], event: dict[str, Any], context: dict[str, Any], *, added: bool) -> None:
    item = event.get("item") or {}
    if item.get("type") != "message" or event.get("user") == context.get("bot_user_id"):
        return
    service: MixService = context["mixwith"]
    await service.react(
        platform="slack", reply_ref=reply_ref(item["channel"], item["ts"]), user_id=event.get("user", ""),
        reaction=event.get("reaction", ""), added=added, event_id=body.get("event_id"),
    )


async def reaction_added(body: dict[str, Any], event: dict[str, Any], context: dict[str, Any]) -> None:
    await _reaction(body, event, context, added=True)


async def reaction_removed(body: dict[str, Any], event: dict[str, Any], context: dict[str, Any]) -> None:
    await _reaction(body, event, context, added=False)


async def ignore(ack: Callable[[], Awaitable[Any]] | None = None) -> None:
    """file_shared duplicates the message event; acknowledged and dropped."""


def register(app: AsyncApp) -> None:
    app.event("message")(message)
    app.event("reaction_added")(reaction_added)
    app.event("reaction_removed")(reaction_removed)
    app.event("file_shared")(ignore)
