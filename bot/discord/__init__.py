"""The Discord bot: a ``commands.Bot`` whose features are extension packages.

Resources (the MixService with its runner, pool and Spotify client) are made
by the entry point and passed in; ``setup_hook`` loads the extensions and
syncs the slash commands.
"""

from __future__ import annotations

import logging

import discord
from discord.ext import commands

from bot.core import MixService
from workers.settings import DiscordSettings

logger = logging.getLogger(__name__)

EXTENSIONS: tuple[str, ...] = ("bot.discord.mixwith", "bot.discord.feedback")


def intents() -> discord.Intents:
    """Guilds and reactions only: uploads arrive through the slash command's attachment
    option and context menus carry their message, so the privileged MESSAGE_CONTENT
    and members intents are not needed."""
    i = discord.Intents.none()
    i.guilds = True
    i.guild_reactions = True
    i.dm_reactions = True
    return i


class MixwithBot(commands.Bot):
    """mixwith on Discord.

    Parameters
    ----------
    service : MixService
    settings : DiscordSettings
    """

    def __init__(self, *, service: MixService, settings: DiscordSettings, **options: object) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents(),
            allowed_mentions=discord.AllowedMentions(everyone=False, roles=False, users=True),
            **options,  # type: ignore[arg-type]
        )
        self.service = service
        self.settings = settings

    async def setup_hook(self) -> None:
        for ext in EXTENSIONS:
            await self.load_extension(ext)
        if self.settings.sync_commands:
            if self.settings.guild_id:
                guild = discord.Object(self.settings.guild_id)
                self.tree.copy_global_to(guild=guild)
                synced = await self.tree.sync(guild=guild)
            else:
                synced = await self.tree.sync()
            logger.info("synced %d application commands", len(synced))

    async def close(self) -> None:
        # Replies in flight get a moment to finish before the connection closes.
        await self.service.drain(timeout_s=10.0)
        await super().close()
