"""/mixwith and the "Mix with this" message command."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.discord import MixwithBot


async def setup(bot: "MixwithBot") -> None:
    from bot.discord.mixwith._cog import MixwithCog

    await bot.add_cog(MixwithCog(bot))
