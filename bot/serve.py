"""``mixwith serve discord|slack``: open resources, build the service, run one front end.

Jobs go through the workers' queue: with ``MIXWITH_BROKER=memory`` (the
default) a worker runs inside the bot process; with Redis, ``mixwith worker``
processes elsewhere run them.

Resources are opened here and passed down (pool, HTTP session, Spotify
client); the front ends never reach for them themselves.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from bot.core import JobRunner, MixService, QueueRunner
from db.pool import create_pool
from workers.broker import open_queue
from workers.errors import MixwithError
from workers.settings import Settings

logger = logging.getLogger(__name__)


def build_service(settings: Settings, pool: asyncpg.Pool, runner: JobRunner) -> MixService:
    playlists = None
    if settings.spotify.configured:
        from bot.spotify import SpotifyPlaylists

        playlists = SpotifyPlaylists(settings.spotify, pool=pool)
    else:
        logger.warning("Spotify is not configured: replies will have no playlist link")
    return MixService(
        runner=runner, settings=settings.bots, spool_dir=settings.spool_dir,
        pool=pool, playlists=playlists,
    )


async def run_discord(settings: Settings) -> None:
    """Run the Discord bot until interrupted."""
    if not settings.discord.token:
        raise MixwithError("DISCORD_TOKEN is not set: see 'Running the bots' in the README.")
    from bot.discord import MixwithBot

    pool = await create_pool(dsn=settings.database_url, pg_dir=settings.pg_dir)
    try:
        async with open_queue(settings) as jobs:
            bot = MixwithBot(service=build_service(settings, pool, QueueRunner(jobs)), settings=settings.discord)
            async with bot:
                await bot.start(settings.discord.token)
    finally:
        await pool.close()


async def run_slack(settings: Settings) -> None:
    """Run the Slack app (Socket Mode with an app token, else HTTP on the configured port)."""
    s = settings.slack
    if not s.bot_token:
        raise MixwithError("SLACK_BOT_TOKEN is not set: see 'Running the bots' in the README.")
    if not s.app_token and not s.signing_secret:
        raise MixwithError("Set SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET (HTTP mode).")
    from bot.slack.app import create_app

    pool = await create_pool(dsn=settings.database_url, pg_dir=settings.pg_dir)
    try:
        async with open_queue(settings) as jobs, aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
            service = build_service(settings, pool, QueueRunner(jobs))
            app = create_app(s, service, http=http)
            try:
                await _serve_slack(app, s)
            finally:
                await service.drain(timeout_s=10.0)  # replies in flight get to finish
    finally:
        await pool.close()


async def _serve_slack(app: Any, s: Any) -> None:
    if s.app_token:
        from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

        handler = AsyncSocketModeHandler(app, s.app_token)
        logger.info("Slack: Socket Mode")
        try:
            await handler.start_async()
        finally:
            await handler.close_async()
        return
    runner = web.AppRunner(app.web_app(path="/slack/events", port=s.port))
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", s.port).start()
    logger.info("Slack: HTTP on port %d, path /slack/events", s.port)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
