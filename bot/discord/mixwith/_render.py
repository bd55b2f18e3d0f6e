"""Discord rendering of a Reply: embed, Camelot-wheel attachment, Spotify button."""

from __future__ import annotations

import io

import discord

from bot.core import FEEDBACK_EMOJI, Reply
from bot.wheel import render_wheel

COLOUR = discord.Colour(0x1DB954)
LIGHTS = {"good": "🟢", "ok": "🟡", "risky": "🔴"}
WHEEL_NAME = "wheel.png"
DESCRIPTION_LIMIT = 4096


def _query_line(reply: Reply) -> tuple[str, str]:
    q = reply.query
    if q is None:
        return "Mixes with your track", ""
    name = f"{q.title} — {q.artist}" if q.title and q.artist else (q.title or "your clip")
    facts = []
    if q.bpm:
        facts.append(f"{q.bpm:.1f} BPM")
    elif q.bpm == 0.0:  # analysed, but no beat (None: not analysed)
        facts.append("no clear tempo")
    if q.camelot:
        facts.append(f"{q.camelot} ({q.key})" if q.key else q.camelot)
    if q.energy:
        facts.append(f"energy {q.energy}")
    found = "identified in the catalog" if q.identified else "not in the catalog: matched by its analysis"
    return f"Mixes with {name}"[:256], f"{' · '.join(facts)}\n*{found}*"


def track_lines(reply: Reply) -> list[str]:
    lines = []
    for t in reply.tracks:
        head = f"`{t.rank:>2}` {LIGHTS[t.compat]} **{discord.utils.escape_markdown(t.title)}**"
        if t.artist:
            head += f" — {discord.utils.escape_markdown(t.artist)}"
        head += f" · {f'{t.bpm:.0f} BPM' if t.bpm else 'no clear tempo'} · {t.camelot} · E{t.energy}"
        lines.append(head + (f"\n      ↳ {', '.join(t.reasons)}" if t.reasons else ""))
    return lines


def reply_embed(reply: Reply) -> discord.Embed:
    """The final message's embed."""
    title, intro = _query_line(reply)
    body = intro + "\n\n" if intro else ""
    for line in track_lines(reply):
        if len(body) + len(line) + 40 > DESCRIPTION_LIMIT:
            body += "\n…"
            break
        body += line + "\n"
    if not reply.tracks:
        body += "Nothing in the catalog mixes with it under these options."
    embed = discord.Embed(title=title, description=body, colour=COLOUR, url=reply.playlist_url or None)
    if reply.notes:
        embed.add_field(name="Notes", value="\n".join(f"• {n}" for n in reply.notes)[:1024], inline=False)
    if reply.tracks:
        embed.set_image(url=f"attachment://{WHEEL_NAME}")
    feedback = " ".join(FEEDBACK_EMOJI)
    embed.set_footer(text=f"request {reply.short_id} · react {feedback}, or 1️⃣–🔟 for one track")
    return embed


def wheel_file(reply: Reply) -> discord.File | None:
    if not reply.tracks:
        return None
    png = render_wheel(reply.query.camelot if reply.query else None, [t.camelot for t in reply.tracks])
    return discord.File(io.BytesIO(png), filename=WHEEL_NAME, description="The set on the Camelot wheel")


def playlist_view(reply: Reply) -> discord.ui.View | None:
    if not reply.playlist_url:
        return None
    view = discord.ui.View(timeout=None)
    view.add_item(discord.ui.Button(style=discord.ButtonStyle.link, url=reply.playlist_url, label="Open in Spotify", emoji="🎧"))
    return view


def error_text(reply: Reply) -> str:
    return f"❌ {reply.error}"
