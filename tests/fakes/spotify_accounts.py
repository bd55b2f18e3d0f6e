"""A local stand-in for Spotify's accounts service (token refresh) and the Web API parts playlists need.

``/api/token`` exchanges a refresh token (client id and secret in Basic auth)
for an access token; ``/v1/search`` finds tracks by ``isrc:`` or
``track:"…" artist:"…"``; ``POST /v1/me/playlists`` and
``POST /v1/playlists/{id}/items`` create and fill playlists (the 2026 routes).
Wrong credentials and tokens get Spotify's error shapes; ``fail_status``
makes every Web API call fail, as during an outage.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes._server import start_local


_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def spotify_id(seed: str) -> str:
    """A 22-character base-62 id like Spotify's (spotipy rejects other shapes)."""
    n = int(hashlib.sha256(seed.encode()).hexdigest(), 16)
    out = ""
    for _ in range(22):
        n, r = divmod(n, 62)
        out += _B62[r]
    return out


@dataclass
class FakeTrack:
    id: str
    name: str
    artist: str
    isrc: str | None = None


@dataclass
class FakeSpotify:
    client_id: str = "cid"
    client_secret: str = "csecret"
    refresh_token: str = "refresh-ok"
    tracks: list[FakeTrack] = field(default_factory=list)
    playlists: dict[str, dict[str, Any]] = field(default_factory=dict)
    searches: list[str] = field(default_factory=list)
    fail_status: int | None = None
    url: str = ""

    def __post_init__(self) -> None:
        self._tokens: set[str] = set()
        self._n = itertools.count(1)
        self._runner: web.AppRunner | None = None

    @property
    def accounts_url(self) -> str:
        return f"{self.url}/api/token"

    @property
    def api_url(self) -> str:
        return f"{self.url}/v1/"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/token", self._token)
        app.router.add_get("/v1/search", self._search)
        app.router.add_post("/v1/me/playlists", self._create)
        app.router.add_post("/v1/playlists/{pid}/items", self._add)
        self._runner, port = await start_local(app)
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _token(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if auth != f"Basic {expected}":
            return web.json_response({"error": "invalid_client"}, status=401)
        form = await request.post()
        if form.get("grant_type") != "refresh_token" or form.get("refresh_token") != self.refresh_token:
            return web.json_response({"error": "invalid_grant", "error_description": "Invalid refresh token"}, status=400)
        token = f"access-{next(self._n)}"
        self._tokens.add(token)
        return web.json_response({"access_token": token, "token_type": "Bearer", "expires_in": 3600,
                                  "scope": "playlist-modify-private playlist-modify-public"})

    def _check(self, request: web.Request) -> web.Response | None:
        if self.fail_status is not None:
            return web.json_response({"error": {"status": self.fail_status, "message": "Service unavailable"}},
                                     status=self.fail_status)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self._tokens:
            return web.json_response({"error": {"status": 401, "message": "Invalid access token"}}, status=401)
        return None

    @staticmethod
    def _track_json(t: FakeTrack) -> dict[str, Any]:
        return {"id": t.id, "name": t.name, "uri": f"spotify:track:{t.id}", "type": "track",
                "artists": [{"name": t.artist, "id": "a" + t.id}], "external_ids": {"isrc": t.isrc} if t.isrc else {}}

    async def _search(self, request: web.Request) -> web.Response:
        if (bad := self._check(request)) is not None:
            return bad
        q = request.query.get("q", "")
        self.searches.append(q)
        if m := re.fullmatch(r"isrc:(\S+)", q):
            found = [t for t in self.tracks if t.isrc == m.group(1)]
        else:
            title = re.search(r'track:"([^"]*)"', q)
            artist = re.search(r'artist:"([^"]*)"', q)
            found = [t for t in self.tracks
                     if (not title or t.name.lower() == title.group(1).lower())
                     and (not artist or t.artist.lower() == artist.group(1).lower())]
        limit = int(request.query.get("limit", "20"))
        items = [self._track_json(t) for t in found[:limit]]
        return web.json_response({"tracks": {"items": items, "total": len(found), "limit": limit, "offset": 0}})

    async def _create(self, request: web.Request) -> web.Response:
        if (bad := self._check(request)) is not None:
            return bad
        body = await request.json()
        if not body.get("name"):
            return web.json_response({"error": {"status": 400, "message": "Missing name"}}, status=400)
        pid = spotify_id(f"playlist-{next(self._n)}")
        self.playlists[pid] = {"id": pid, "name": body["name"], "public": body.get("public"),
                               "description": body.get("description", ""), "items": [],
                               "external_urls": {"spotify": f"https://open.spotify.com/playlist/{pid}"}}
        return web.json_response({k: v for k, v in self.playlists[pid].items() if k != "items"}, status=201)

    async def _add(self, request: web.Request) -> web.Response:
        if (bad := self._check(request)) is not None:
            return bad
        pl = self.playlists.get(request.match_info["pid"])
        if pl is None:
            return web.json_response({"error": {"status": 404, "message": "Not found"}}, status=404)
        body = await request.json()
        # Spotify takes {"uris": [...]} or, as spotipy sends it, a bare JSON array.
        uris = body if isinstance(body, list) else (body.get("uris") or [])
        if len(uris) > 100:
            return web.json_response({"error": {"status": 400, "message": "Too many ids"}}, status=400)
        pl["items"].extend(uris)
        return web.json_response({"snapshot_id": f"snap{next(self._n)}"}, status=201)
