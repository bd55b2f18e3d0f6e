"""A local stand-in for Slack's Web API and file hosting.

Point ``AsyncWebClient(base_url=fake.api_url)`` at it. It answers the methods
the bot calls with Slack's response shapes (``auth.test``, ``chat.postMessage``,
``chat.update``, the external-upload trio ``files.getUploadURLExternal`` →
upload URL → ``files.completeUploadExternal``), rejects wrong tokens with
``invalid_auth`` like Slack, and serves private files only to
``Authorization: Bearer <bot token>``. Every call is recorded.

Socket Mode as Slack runs it: ``apps.connections.open`` (app token only) hands
out a ``ws://`` URL; the socket says ``hello``, then the test pushes envelopes
(``slash_commands``, ``events_api``) with :meth:`FakeSlack.push` and reads the
app's acknowledgements (``{"envelope_id", "payload"?}``) from ``acks``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
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

    def __init__(self, *, token: str = "xoxb-test", app_token: str = "xapp-1-AMIXWITH1-test") -> None:
        self.token = token
        self.app_token = app_token
        self.sockets: list[web.WebSocketResponse] = []
        self.acks: dict[str, dict[str, Any]] = {}
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
        app.router.add_get("/link/", self._link)
        self._runner, port = await start_local(app)
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        for ws in list(self.sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_for(self, predicate: Any, timeout_s: float = 30.0) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(lambda: predicate(self)), timeout_s)

    async def push(self, kind: str, payload: dict[str, Any], *, accepts_response_payload: bool = True) -> str:
        """Send an envelope down the newest Socket Mode connection; returns its envelope id."""
        await self.wait_for(lambda f: bool(f.sockets))
        envelope_id = str(uuid.uuid4())
        await self.sockets[-1].send_json({"envelope_id": envelope_id, "type": kind, "payload": payload,
                                          "accepts_response_payload": accepts_response_payload,
                                          "retry_attempt": 0, "retry_reason": ""})
        return envelope_id

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
        # apps.connections.open takes the app-level token and nothing else, as on Slack.
        token = self.app_token if method == "apps.connections.open" else self.token
        if auth != f"Bearer {token}" and args.get("token") != token:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        self.calls.append(Call(method, args))
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        body = handler(args) if handler else {"ok": False, "error": "unknown_method"}
        await self._notify()
        return web.json_response(body)

    def _m_auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "url": "https://mixwith-test.slack.com/", "team": "mixwith test", "user": "mixwith",
                "team_id": TEAM, "user_id": BOT_USER, "bot_id": "BMIXBOT01", "is_enterprise_install": False}

    def _m_apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        ticket = uuid.uuid4().hex
        return {"ok": True, "url": f"{self.url.replace('http://', 'ws://')}/link/?ticket={ticket}&app_id=AMIXWITH1"}

    async def _link(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_json({"type": "hello", "num_connections": len(self.sockets) + 1,
                            "debug_info": {"host": "applink-fake", "approximate_connection_time": 18060},
                            "connection_info": {"app_id": "AMIXWITH1"}})
        self.sockets.append(ws)
        await self._notify()
        try:
            async for msg in ws:
                if msg.type == web.WSMsgType.TEXT:
                    ack = json.loads(msg.data)
                    self.acks[ack["envelope_id"]] = ack
                    await self._notify()
        finally:
            self.sockets.remove(ws)
        return ws

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
