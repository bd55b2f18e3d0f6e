"""A local Spotify Web API: the client-credentials token endpoint and ``GET /v1/tracks/{id}``.

Responses follow the real API's shapes (track objects with ``artists``,
``external_ids.isrc``, ``duration_ms``; errors as ``{"error": {"status",
"message"}}``). Point ``MIXWITH_SPOTIFY_API_URL`` at ``api_url`` and
``MIXWITH_SPOTIFY_TOKEN_URL`` at ``token_url``.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes._server import start_local

CLIENT_ID = "fake-client-id"
CLIENT_SECRET = "fake-client-secret"
TOKEN = "fake-app-token"


def track_object(track_id: str, *, name: str, artists: list[str], isrc: str | None, duration_ms: int = 215000) -> dict[str, Any]:
    """A track object as ``GET /v1/tracks/{id}`` returns it (fields we and spotipy read)."""
    return {
        "id": track_id,
        "name": name,
        "type": "track",
        "uri": f"spotify:track:{track_id}",
        "duration_ms": duration_ms,
        "explicit": False,
        "popularity": 50,
        "external_ids": {"isrc": isrc} if isrc else {},
        "external_urls": {"spotify": f"https://open.spotify.com/track/{track_id}"},
        "artists": [{"id": f"artist{i}", "name": a, "type": "artist", "uri": f"spotify:artist:artist{i}"}
                    for i, a in enumerate(artists)],
        "album": {"id": "album0", "name": "Fake Album", "album_type": "single", "release_date": "2024-01-01"},
        "preview_url": None,
    }


@dataclass
class FakeSpotify:
    """A running fake; ``tracks`` maps id → track object, ``fail`` maps id → HTTP status to answer."""

    port: int = 0
    tracks: dict[str, dict[str, Any]] = field(default_factory=dict)
    fail: dict[str, int] = field(default_factory=dict)
    token_requests: int = 0
    track_requests: list[str] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/"

    @property
    def token_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/token"


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"status": status, "message": message}}, status=status)


def _app(fake: FakeSpotify) -> web.Application:
    async def token(request: web.Request) -> web.Response:
        fake.token_requests += 1
        form = await request.post()
        auth = request.headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        if auth != expected:
            return web.json_response({"error": "invalid_client", "error_description": "Invalid client"}, status=400)
        return web.json_response({"access_token": TOKEN, "token_type": "Bearer", "expires_in": 3600})

    async def track(request: web.Request) -> web.Response:
        tid = request.match_info["id"]
        fake.track_requests.append(tid)
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return _error(401, "No token provided")
        if tid in fake.fail:
            status = fake.fail[tid]
            resp = _error(status, "API rate limit exceeded" if status == 429 else "Service unavailable")
            if status == 429:
                resp.headers["Retry-After"] = "1"
            return resp
        if len(tid) != 22:
            return _error(400, "invalid id")
        if tid not in fake.tracks:
            return _error(404, "Resource not found")
        return web.json_response(fake.tracks[tid])

    app = web.Application()
    app.router.add_post("/api/token", token)
    app.router.add_get("/v1/tracks/{id}", track)
    return app


@asynccontextmanager
async def spotify_api() -> AsyncIterator[FakeSpotify]:
    """Run the fake on 127.0.0.1 (any free port) for the duration of the block."""
    fake = FakeSpotify()
    runner, fake.port = await start_local(_app(fake))
    try:
        yield fake
    finally:
        await runner.cleanup()
