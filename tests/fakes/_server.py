"""Starting a fake service's aiohttp app on a free loopback port."""

from __future__ import annotations

from aiohttp import web


async def start_local(app: web.Application, *, host: str = "127.0.0.1") -> tuple[web.AppRunner, int]:
    """Serve ``app`` on ``host`` at a free port; return the runner (to clean up) and the port."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
