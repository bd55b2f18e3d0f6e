"""A local web server that behaves like the media hosts links point at.

Routes: ``/audio.wav`` (a real WAV of a synthesized track; ``?delay_s=S`` answers
after S seconds, a slow but working host), ``/slow.wav``
(dribbles bytes), ``/big.wav`` (over any small limit, with or without
Content-Length), ``/redirect?to=URL`` (302 to anywhere), ``/page.html``,
``/error/<status>``, ``/flaky.wav?fails=N&id=X`` (503 N times, then audio). Every request is recorded in ``hits`` so a test can
assert that a canary instance was never reached.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import numpy as np
import soundfile as sf
from aiohttp import web

from tests.fakes._server import start_local


def wav_bytes(*, seconds: float = 4.0, sr: int = 22050, freq_hz: float = 440.0, seed: int = 0) -> bytes:
    """A short WAV: a tone with a little seeded noise, so decoders have something real to read."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    y = 0.4 * np.sin(2 * np.pi * freq_hz * t) + 0.01 * rng.standard_normal(t.size)
    buf = io.BytesIO()
    sf.write(buf, y.astype(np.float32), sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


@dataclass
class MediaServer:
    """A running fake media host."""

    host: str
    port: int
    audio: bytes
    hits: list[str] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"


def _app(server: MediaServer) -> web.Application:
    async def record(request: web.Request, handler):  # type: ignore[no-untyped-def]
        server.hits.append(request.path_qs)
        return await handler(request)

    async def audio(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("delay_s", "0")))
        return web.Response(body=server.audio, content_type="audio/wav")

    async def slow(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "audio/wav"})
        await resp.prepare(request)
        for _ in range(600):
            await resp.write(b"\0" * 16)
            await asyncio.sleep(0.1)
        return resp

    async def big(request: web.Request) -> web.StreamResponse:
        size = int(request.query.get("bytes", "2000000"))
        honest = request.query.get("honest", "1") == "1"
        resp = web.StreamResponse(headers={"Content-Type": "audio/wav"})
        if honest:
            resp.content_length = size
        await resp.prepare(request)
        sent = 0
        while sent < size:
            n = min(65536, size - sent)
            await resp.write(b"\1" * n)
            sent += n
        return resp

    async def flaky(request: web.Request) -> web.Response:
        # fails `fails` times per `id` with 503, then serves the audio: a transient outage
        key = request.query.get("id", "")
        server.failures[key] = server.failures.get(key, 0) + 1
        if server.failures[key] <= int(request.query.get("fails", "1")):
            return web.Response(status=503, text="busy")
        return web.Response(body=server.audio, content_type="audio/wav")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<html><body>not audio</body></html>", content_type="text/html")

    async def error(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["status"]), text="error")

    async def anything(request: web.Request) -> web.Response:
        return web.Response(text="canary", content_type="text/plain")

    app = web.Application(middlewares=[web.middleware(record)])
    app.router.add_get("/audio.wav", audio)
    app.router.add_get("/slow.wav", slow)
    app.router.add_get("/big.wav", big)
    app.router.add_get("/flaky.wav", flaky)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/page.html", page)
    app.router.add_get("/error/{status}", error)
    app.router.add_route("*", "/{tail:.*}", anything)
    return app


@asynccontextmanager
async def media_server(*, host: str = "127.0.0.1", audio: bytes | None = None) -> AsyncIterator[MediaServer]:
    """Run a fake media host on ``host`` (any free port) for the duration of the block."""
    server = MediaServer(host=host, port=0, audio=audio if audio is not None else wav_bytes())
    runner, server.port = await start_local(_app(server), host=host)
    try:
        yield server
    finally:
        await runner.cleanup()
