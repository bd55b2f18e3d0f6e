"""The /mixwith slash command and the "Mix with this" message command.

Both defer at once (Discord drops an interaction not answered within 3 s),
then edit the deferred reply with progress and finally with the ranked set.
The interaction token lives 15 minutes: past ``TOKEN_LIFETIME`` the reply is
posted to the channel as a normal message instead.
"""

from __future__ import annotations

import datetime
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.core import FEEDBACK_EMOJI, ChatRequest, Reply, find_link, make_options, progress_text
from bot.discord.mixwith import _render
from workers.errors import InputError, MixwithError
from workers.messages import MixOptions, Progress

if TYPE_CHECKING:
    from bot.discord import MixwithBot

logger = logging.getLogger(__name__)

# Leave a margin before the 15-minute token expiry for the final upload itself.
TOKEN_LIFETIME = datetime.timedelta(minutes=15) - datetime.timedelta(seconds=45)
AUDIO_SUFFIXES = (".mp3", ".m4a", ".aac", ".wav", ".flac", ".ogg", ".opus", ".webm", ".mp4", ".mov", ".aiff", ".aif")


def is_audio(att: discord.Attachment) -> bool:
    ctype = (att.content_type or "").split(";")[0].strip().lower()
    return ctype.startswith(("audio/", "video/")) or Path(att.filename).suffix.lower() in AUDIO_SUFFIXES


def _token_alive(interaction: discord.Interaction) -> bool:
    return discord.utils.utcnow() - interaction.created_at < TOKEN_LIFETIME


class MixwithCog(commands.Cog):
    """/mixwith <link|clip> and the message command "Mix with this"."""

    def __init__(self, bot: "MixwithBot") -> None:
        self.bot = bot
        self.service = bot.service
        self.menu = app_commands.ContextMenu(name="Mix with this", callback=self.mix_with_this)

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    @app_commands.command(name="mixwith", description="What mixes with this? A ranked, ordered set from a link or a clip.")
    @app_commands.describe(
        link="A song link (Spotify, YouTube, SoundCloud, a direct audio file…)",
        clip="An audio clip: a phone memo or a file",
        count="How many tracks (1–20)",
        bpm_min="Lowest tempo to suggest",
        bpm_max="Highest tempo to suggest",
        key_lock="Only harmonically compatible keys",
        energy="Where the set should go",
    )
    @app_commands.choices(
        energy=[
            app_commands.Choice(name="build up", value="up"),
            app_commands.Choice(name="keep it steady", value="steady"),
            app_commands.Choice(name="bring it down", value="down"),
        ]
    )
    async def mixwith(
        self,
        interaction: discord.Interaction,
        link: str | None = None,
        clip: discord.Attachment | None = None,
        count: app_commands.Range[int, 1, 20] = 10,
        bpm_min: app_commands.Range[float, 40, 250] | None = None,
        bpm_max: app_commands.Range[float, 40, 250] | None = None,
        key_lock: bool = False,
        energy: app_commands.Choice[str] | None = None,
    ) -> None:
        await interaction.response.defer(thinking=True)
        try:
            options = make_options(
                count=count, bpm_min=bpm_min, bpm_max=bpm_max, key_lock=key_lock,
                energy=energy.value if energy else None,
            )
            if clip is not None and not is_audio(clip):
                raise InputError(f"{clip.filename} is not audio; attach a recording or a music file.")
            if clip is None and not link:
                raise InputError("Give me a song link or attach an audio clip.")
            chat = await self._chat(interaction, link=link, clip=clip, options=options)
        except MixwithError as exc:
            await self._finish(interaction, Reply(request_id="-", error=str(exc)))
            return
        # Tracked by the service so shutdown waits for replies in flight.
        self.service.spawn(self._answer(interaction, chat), name=f"discord mixwith {interaction.id}")

    async def mix_with_this(self, interaction: discord.Interaction, message: discord.Message) -> None:
        await interaction.response.defer(thinking=True)
        clip = next((a for a in message.attachments if is_audio(a)), None)
        link = None if clip else find_link(message.content)
        if clip is None and link is None:
            await self._finish(
                interaction, Reply(request_id="-", error="That message has no audio attachment or song link.")
            )
            return
        try:
            chat = await self._chat(interaction, link=link, clip=clip, options=MixOptions())
        except MixwithError as exc:
            await self._finish(interaction, Reply(request_id="-", error=str(exc)))
            return
        # Tracked by the service so shutdown waits for replies in flight.
        self.service.spawn(self._answer(interaction, chat), name=f"discord mixwith {interaction.id}")

    async def _chat(
        self,
        interaction: discord.Interaction,
        *,
        link: str | None,
        clip: discord.Attachment | None,
        options: MixOptions,
    ) -> ChatRequest:
        data: bytes | None = None
        if clip is not None:
            self.service.check_clip(size=clip.size, name=clip.filename)
            try:
                data = await clip.read()
            except discord.HTTPException as exc:
                raise InputError(f"I could not download {clip.filename} from Discord; try again.") from exc
        return ChatRequest(
            platform="discord",
            place=str(interaction.guild_id or f"dm-{interaction.user.id}"),
            channel=str(interaction.channel_id or ""),
            user_id=str(interaction.user.id),
            link=link if clip is None else None,
            clip=data,
            clip_name=clip.filename if clip else "",
            options=options,
        )

    async def _answer(self, interaction: discord.Interaction, chat: ChatRequest) -> None:
        async def on_progress(p: Progress) -> None:
            if _token_alive(interaction):
                await interaction.edit_original_response(content=progress_text(p))

        reply = await self.service.run(chat, on_progress)
        message = await self._finish(interaction, reply)
        if message is None or reply.error is not None:
            return
        await self.service.attach_reply(request_id=reply.request_id, reply_ref=str(message.id))
        # Prompt the feedback reactions (after attaching, so a click can always be matched).
        for emoji in FEEDBACK_EMOJI:
            try:
                await message.add_reaction(emoji)
            except discord.HTTPException:  # missing permission: feedback still works, just unprompted
                logger.info("could not seed reactions on %s", message.id)
                break

    async def _finish(self, interaction: discord.Interaction, reply: Reply) -> discord.Message | None:
        """Show the reply; returns the message reactions will land on."""
        if reply.error is not None:
            if _token_alive(interaction):
                return await interaction.edit_original_response(content=_render.error_text(reply))
            return None
        embed = _render.reply_embed(reply)
        wheel = _render.wheel_file(reply)
        view = _render.playlist_view(reply)
        files = [wheel] if wheel else []
        try:
            if _token_alive(interaction):
                message: discord.Message = await interaction.edit_original_response(
                    content=None, embed=embed, attachments=files, view=view
                )
            else:
                # The token has expired: post in the channel, naming who asked.
                channel = self.bot.get_partial_messageable(interaction.channel_id or 0)
                message = await channel.send(
                    content=f"<@{interaction.user.id}> here is your mix:", embed=embed, files=files, view=view
                )
        except discord.HTTPException:
            logger.exception("could not post the reply to %s", reply.request_id)
            return None
        return message
