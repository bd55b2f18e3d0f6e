"""``mixwith serve discord|slack``: open resources, build the service, run one front end.

Resources are opened here and passed down (pool, HTTP session, Spotify
client); the front ends never reach for them themselves.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import asyncpg
from aiohttp import web

from bot.core import JobRunner, MixService, PipelineRunner
from db.pool import create_pool
from workers.errors import MixwithError
from workers.settings import Settings

logger = logging.getLogger(__name__)


def make_runner(settings: Settings, pool: asyncpg.Pool) -> JobRunner:
    """The job runner a bot uses: the pipeline in-process, one job per analysis process."""
    return PipelineRunner(pool, settings, concurrency=settings.audio.processes)


def build_service(settings: Settings, pool: asyncpg.Pool) -> MixService:
    playlists = None
    if settings.spotify.configured:
        from bot.spotify import SpotifyPlaylists

        playlists = SpotifyPlaylists(settings.spotify, pool=pool)
    else:
        logger.warning("Spotify is not configured: replies will have no playlist link")
    return MixService(
        runner=make_runner(settings, pool), settings=settings.bots, spool_dir=settings.spool_dir,
        pool=pool, playlists=playlists,
    )


def _close_runner(service: MixService) -> None:
    close = getattr(service.runner, "close", None)
    if close is not None:
        close()


async def run_discord(settings: Settings) -> None:
    """Run the Discord bot until interrupted."""
    if not settings.discord.token:
        raise MixwithError("DISCORD_TOKEN is not set: see 'Running the bots' in the README.")
    from bot.discord import MixwithBot

    pool = await create_pool(dsn=settings.database_url, pg_dir=settings.pg_dir)
    try:
        bot = MixwithBot(service=build_service(settings, pool), settings=settings.discord)
        async with bot:
            await bot.start(settings.discord.token)
        _close_runner(bot.service)
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
    service = build_service(settings, pool)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
            app = create_app(s, service, http=http)
            if s.app_token:
                from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

                handler = AsyncSocketModeHandler(app, s.app_token)
                logger.info("Slack: Socket Mode")
                try:
                    await handler.start_async()
                finally:
                    await handler.close_async()
            else:
                runner = web.AppRunner(app.web_app(path="/slack/events", port=s.port))
                await runner.setup()
                await web.TCPSite(runner, "0.0.0.0", s.port).start()
                logger.info("Slack: HTTP on port %d, path /slack/events", s.port)
                try:
                    await asyncio.Event().wait()
                finally:
                    await runner.cleanup()
    finally:
        await service.drain(timeout_s=10.0)
        _close_runner(service)
        await pool.close()
