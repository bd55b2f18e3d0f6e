"""A local stand-in for Discord's REST API, enough for a bot that answers interactions.

Speaks the real routes and payload shapes that discord.py uses (point
``discord.http.Route.BASE`` at ``base``): login (``/users/@me``,
``/oauth2/applications/@me``), interaction callbacks, the original-response
webhook (JSON or multipart with files), channel messages, reactions, command
sync, and attachment downloads from ``/attachments/<name>``. Every call is
recorded with the time it arrived, so tests check what a user would see.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

import discord.utils
from aiohttp import web

from tests.fakes._server import start_local

APP_ID = 900000000000000001
BOT_ID = 900000000000000002
_seq = itertools.count()


def snowflake() -> str:
    """A fresh id encoding the current time, as Discord's do (interaction age is read from it)."""
    return str(discord.utils.time_snowflake(discord.utils.utcnow()) + next(_seq) % 4096)


def _json(data: Any, status: int = 200) -> web.Response:
    # discord.py only parses bodies whose Content-Type is exactly application/json.
    return web.Response(body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json"})


@dataclass
class Call:
    method: str
    path: str
    at: float
    json: Any = None
    files: dict[str, bytes] = field(default_factory=dict)


class FakeDiscord:
    """Run with ``await fake.start()``; ``base`` is the value for ``Route.BASE``."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.attachments: dict[str, tuple[bytes, str]] = {}
        self.originals: dict[str, dict[str, Any]] = {}  # interaction token -> current message
        self.channel_messages: list[dict[str, Any]] = []
        self.reactions: list[tuple[str, str, str]] = []
        self.changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.url = ""

    @property
    def base(self) -> str:
        return f"{self.url}/api/v10"

    def user(self) -> dict[str, Any]:
        return {"id": str(BOT_ID), "username": "mixwith", "discriminator": "0", "global_name": "mixwith",
                "avatar": None, "bot": True, "flags": 0}

    def add_attachment(self, name: str, data: bytes, content_type: str) -> dict[str, Any]:
        """Register a file and return its attachment object (as in ``resolved.attachments``)."""
        self.attachments[name] = (data, content_type)
        aid = snowflake()
        return {"id": aid, "filename": name, "size": len(data), "content_type": content_type,
                "url": f"{self.url}/attachments/{name}", "proxy_url": f"{self.url}/attachments/{name}"}

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        r = app.router
        r.add_get("/api/v10/users/@me", self._me)
        r.add_get("/api/v10/oauth2/applications/@me", self._application)
        r.add_post("/api/v10/interactions/{iid}/{token}/callback", self._callback)
        r.add_get("/api/v10/webhooks/{app}/{token}/messages/@original", self._get_original)
        r.add_patch("/api/v10/webhooks/{app}/{token}/messages/@original", self._edit_original)
        r.add_post("/api/v10/channels/{cid}/messages", self._channel_message)
        r.add_put("/api/v10/channels/{cid}/messages/{mid}/reactions/{emoji}/@me", self._react)
        r.add_put("/api/v10/applications/{app}/commands", self._sync)
        r.add_put("/api/v10/applications/{app}/guilds/{gid}/commands", self._sync)
        r.add_get("/attachments/{name}", self._download)
        self._runner, port = await start_local(app)
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _record(self, request: web.Request) -> Call:
        call = Call(request.method, request.path, time.monotonic())
        if request.content_type == "application/json":
            call.json = await request.json()
        elif request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            async for part in reader:
                if part.name == "payload_json":
                    call.json = json.loads(await part.text())
                elif part.name:
                    call.files[part.filename or part.name] = await part.read()
        self.calls.append(call)
        return call

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def wait_for(self, predicate: Any, timeout_s: float = 30.0) -> None:
        """Wait until ``predicate(self)`` holds."""
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(lambda: predicate(self)), timeout_s)

    def calls_to(self, fragment: str, method: str | None = None) -> list[Call]:
        return [c for c in self.calls if fragment in c.path and (method is None or c.method == method)]

    # --- handlers -------------------------------------------------------------------------------

    async def _me(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bot test-token":
            return _json({"message": "401: Unauthorized", "code": 0}, 401)
        return _json(self.user())

    async def _application(self, request: web.Request) -> web.Response:
        return _json({
            "id": str(APP_ID), "name": "mixwith", "icon": None, "description": "", "rpc_origins": [],
            "bot_public": True, "bot_require_code_grant": False, "owner": self.user(), "team": None,
            "verify_key": "0" * 64, "flags": 0, "summary": "",
        })

    async def _callback(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        iid = request.match_info["iid"]
        token = request.match_info["token"]
        kind = (call.json or {}).get("type")
        self.originals[token] = {
            "id": snowflake(), "type": 20, "content": "", "channel_id": "0", "embeds": [], "attachments": [],
            "components": [], "author": self.user(), "timestamp": "2026-01-01T00:00:00+00:00", "flags": 128,
            "edited_timestamp": None, "tts": False, "mention_everyone": False, "mentions": [], "mention_roles": [],
            "pinned": False,
        }
        await self._notify()
        return _json({"interaction": {"id": iid, "type": 2, "response_message_loading": kind == 5,
                                      "response_message_ephemeral": False}})

    async def _get_original(self, request: web.Request) -> web.Response:
        msg = self.originals.get(request.match_info["token"])
        return _json(msg) if msg else _json({"message": "Unknown Message", "code": 10008}, 404)

    async def _edit_original(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        token = request.match_info["token"]
        msg = self.originals.get(token)
        if msg is None:
            return _json({"message": "Unknown Webhook", "code": 10015}, 404)
        body = call.json or {}
        for key in ("content", "embeds", "components"):
            if key in body:
                msg[key] = body[key] if body[key] is not None else ([] if key != "content" else "")
        if "attachments" in body:
            msg["attachments"] = [
                {"id": snowflake(), "filename": name, "size": len(data), "url": f"{self.url}/attachments/{name}",
                 "proxy_url": f"{self.url}/attachments/{name}"}
                for name, data in call.files.items()
            ]
        msg["edited_timestamp"] = "2026-01-01T00:00:01+00:00"
        await self._notify()
        return _json(msg)

    async def _channel_message(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        msg = {"id": snowflake(), "type": 0, "channel_id": request.match_info["cid"], "author": self.user(),
               "content": (call.json or {}).get("content") or "", "embeds": (call.json or {}).get("embeds") or [],
               "attachments": [], "components": [], "timestamp": "2026-01-01T00:00:00+00:00",
               "edited_timestamp": None, "tts": False, "mention_everyone": False, "mentions": [],
               "mention_roles": [], "pinned": False}
        self.channel_messages.append(msg)
        await self._notify()
        return _json(msg)

    async def _react(self, request: web.Request) -> web.Response:
        await self._record(request)
        self.reactions.append((request.match_info["cid"], request.match_info["mid"], request.match_info["emoji"]))
        await self._notify()
        return web.Response(status=204)

    async def _sync(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        out = []
        for cmd in call.json or []:
            out.append({**cmd, "id": snowflake(), "application_id": str(APP_ID), "version": snowflake(),
                        "default_member_permissions": None, "dm_permission": True, "nsfw": False})
        return _json(out)

    async def _download(self, request: web.Request) -> web.Response:
        item = self.attachments.get(request.match_info["name"])
        if item is None:
            return web.Response(status=404)
        data, ctype = item
        return web.Response(body=data, headers={"Content-Type": ctype})


def interaction_payload(
    *,
    name: str,
    options: list[dict[str, Any]],
    user_id: str = "700000000000000001",
    guild_id: str | None = "800000000000000001",
    channel_id: str = "810000000000000001",
    attachments: dict[str, dict[str, Any]] | None = None,
    command_type: int = 1,
    target_id: str | None = None,
    messages: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """An INTERACTION_CREATE gateway payload for an application command."""
    user = {"id": user_id, "username": "dj", "discriminator": "0", "global_name": "DJ", "avatar": None}
    data: dict[str, Any] = {"id": snowflake(), "name": name, "type": command_type, "options": options}
    resolved: dict[str, Any] = {}
    if attachments:
        resolved["attachments"] = attachments
    if messages:
        resolved["messages"] = messages
    if resolved:
        data["resolved"] = resolved
    if target_id:
        data["target_id"] = target_id
    payload: dict[str, Any] = {
        "id": snowflake(), "application_id": str(APP_ID), "type": 2, "token": "tok-" + snowflake(),
        "version": 1, "data": data, "channel_id": channel_id,
        "channel": (
            {"id": channel_id, "type": 0, "name": "mixes", "guild_id": guild_id, "position": 0,
             "permission_overwrites": [], "nsfw": False, "parent_id": None, "topic": None,
             "rate_limit_per_user": 0, "last_message_id": None, "flags": 0}
            if guild_id else {"id": channel_id, "type": 1, "recipients": [user], "last_message_id": None, "flags": 0}
        ),
        "app_permissions": "2147483647", "locale": "en-US", "entitlements": [], "authorizing_integration_owners": {},
        "context": 0 if guild_id else 1, "attachment_size_limit": 26214400,
    }
    if guild_id:
        payload["guild_id"] = guild_id
        payload["guild_locale"] = "en-US"
        payload["member"] = {"user": user, "roles": [], "joined_at": "2025-01-01T00:00:00+00:00", "deaf": False,
                             "mute": False, "permissions": "2147483647", "flags": 0}
    else:
        payload["user"] = user
    return payload


def reaction_payload(
    *, message_id: str, emoji: str, user_id: str = "700000000000000001", channel_id: str = "810000000000000001",
    guild_id: str | None = "800000000000000001",
) -> dict[str, Any]:
    """A MESSAGE_REACTION_ADD / _REMOVE gateway payload."""
    p: dict[str, Any] = {"user_id": user_id, "channel_id": channel_id, "message_id": message_id,
                         "emoji": {"id": None, "name": emoji}, "type": 0, "burst": False}
    if guild_id:
        p["guild_id"] = guild_id
    return p
