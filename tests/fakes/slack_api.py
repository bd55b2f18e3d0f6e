"""A local stand-in for Slack's Web API and file hosting.

Point ``AsyncWebClient(base_url=fake.api_url)`` at it. It answers the methods
the bot calls with Slack's response shapes (``auth.test``, ``chat.postMessage``,
``chat.update``, the external-upload trio ``files.getUploadURLExternal`` →
upload URL → ``files.completeUploadExternal``), rejects wrong tokens with
``invalid_auth`` like Slack, and serves private files only to
``Authorization: Bearer <bot token>``. Every call is recorded.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes._server import start_local

BOT_USER = "UMIXBOT01"
TEAM = "TMIXTEAM1"


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    at: float = field(default_factory=time.monotonic)


class FakeSlack:
    """Run with ``await fake.start()``."""

    def __init__(self, *, token: str = "xoxb-test") -> None:
        self.token = token
        self.calls: list[Call] = []
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}
        self.uploads: dict[str, bytes] = {}
        self.files: dict[str, tuple[bytes, str]] = {}
        self.downloads: list[str] = []
        self.changed = asyncio.Condition()
        self._ts = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.url = ""

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    def add_file(self, file_id: str, name: str, data: bytes, mimetype: str) -> dict[str, Any]:
        """Host a file privately and return its file object, as in a message event's ``files``."""
        self.files[name] = (data, mimetype)
        return {"id": file_id, "name": name, "title": name, "mimetype": mimetype, "filetype": name.rsplit(".", 1)[-1],
                "size": len(data), "mode": "hosted", "is_external": False,
                "url_private": f"{self.url}/files-pri/{TEAM}-{file_id}/{name}",
                "url_private_download": f"{self.url}/files-pri/{TEAM}-{file_id}/download/{name}"}

    def add_media(self, name: str, data: bytes, mimetype: str) -> str:
        """Host a public file (a song link's target); returns its URL."""
        self.files["public/" + name] = (data, mimetype)
        return f"{self.url}/media/{name}"

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/api/{method}", self._api)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_get("/files-pri/{owner}/download/{name}", self._private)
        app.router.add_get("/files-pri/{owner}/{name}", self._private)
        app.router.add_get("/media/{name}", self._media)
        self._runner, port = await start_local(app)
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_for(self, predicate: Any, timeout_s: float = 30.0) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(lambda: predicate(self)), timeout_s)

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.content_type == "application/json":
            args = await request.json()
        else:
            args = dict(await request.post())
        args.update(request.query)
        for k in ("blocks", "files", "attachments"):
            if isinstance(args.get(k), str):
                args[k] = json.loads(args[k])
        auth = request.headers.get("Authorization", "")
        if auth != f"Bearer {self.token}" and args.get("token") != self.token:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        self.calls.append(Call(method, args))
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        body = handler(args) if handler else {"ok": False, "error": "unknown_method"}
        await self._notify()
        return web.json_response(body)

    def _m_auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "url": "https://mixwith-test.slack.com/", "team": "mixwith test", "user": "mixwith",
                "team_id": TEAM, "user_id": BOT_USER, "bot_id": "BMIXBOT01", "is_enterprise_install": False}

    def _m_chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        ts = f"{1767225600 + next(self._ts)}.000100"
        msg = {"type": "message", "user": BOT_USER, "bot_id": "BMIXBOT01", "text": args.get("text", ""),
               "blocks": args.get("blocks") or [], "ts": ts, "thread_ts": args.get("thread_ts")}
        self.messages[(args["channel"], ts)] = msg
        return {"ok": True, "channel": args["channel"], "ts": ts, "message": msg}

    def _m_chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        msg = self.messages.get((args["channel"], args["ts"]))
        if msg is None:
            return {"ok": False, "error": "message_not_found"}
        msg["text"] = args.get("text", msg["text"])
        msg["blocks"] = args.get("blocks") or []
        return {"ok": True, "channel": args["channel"], "ts": args["ts"], "text": msg["text"], "message": msg}

    def _m_files_getUploadURLExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("filename") or not str(args.get("length", "")).isdigit():
            return {"ok": False, "error": "invalid_arguments"}
        fid = f"F{next(self._ts):08d}"
        return {"ok": True, "upload_url": f"{self.url}/upload/{fid}", "file_id": fid}

    def _m_files_completeUploadExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        files = args.get("files") or []
        if any(f["id"] not in self.uploads for f in files):
            return {"ok": False, "error": "file_not_found"}
        return {"ok": True, "files": [{"id": f["id"], "title": f.get("title") or "", "name": f.get("title") or ""}
                                      for f in files]}

    async def _upload(self, request: web.Request) -> web.Response:
        data = await request.read()
        self.uploads[request.match_info["file_id"]] = data
        return web.Response(text=f"OK - {len(data)}")

    async def _private(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            # Slack redirects unauthenticated file requests to a sign-in page.
            raise web.HTTPFound("https://slack.com/signin")
        name = request.match_info["name"]
        if name not in self.files:
            return web.Response(status=404)
        self.downloads.append(name)
        data, mime = self.files[name]
        return web.Response(body=data, headers={"Content-Type": mime})

    async def _media(self, request: web.Request) -> web.Response:
        item = self.files.get("public/" + request.match_info["name"])
        if item is None:
            return web.Response(status=404)
        return web.Response(body=item[0], headers={"Content-Type": item[1]})
