"""Reactions on replies → feedback.

Raw reaction events, because the cached ``on_reaction_add`` misses messages
the bot no longer (or never) cached — most replies, after a restart.
Removing a reaction undoes its feedback.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord.ext import commands

if TYPE_CHECKING:
    from bot.discord import MixwithBot

logger = logging.getLogger(__name__)


class FeedbackCog(commands.Cog):
    """👍 👎 🔥 on a reply, 1️⃣–🔟 on one of its tracks."""

    def __init__(self, bot: "MixwithBot") -> None:
        self.bot = bot

    async def _handle(self, payload: discord.RawReactionActionEvent, *, added: bool) -> None:
        if self.bot.user is not None and payload.user_id == self.bot.user.id:
            return  # the bot's own prompt reactions
        if payload.emoji.id is not None:
            return  # custom emoji carry no meaning here
        try:
            await self.bot.service.react(
                platform="discord", reply_ref=str(payload.message_id), user_id=str(payload.user_id),
                reaction=str(payload.emoji), added=added,
            )
        except Exception:
            logger.exception("feedback from %s on %s failed", payload.user_id, payload.message_id)

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        await self._handle(payload, added=True)

    @commands.Cog.listener()
    async def on_raw_reaction_remove(self, payload: discord.RawReactionActionEvent) -> None:
        await self._handle(payload, added=False)


async def setup(bot: "MixwithBot") -> None:
    await bot.add_cog(FeedbackCog(bot))
