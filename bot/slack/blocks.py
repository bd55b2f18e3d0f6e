"""Block Kit rendering of a Reply."""

from __future__ import annotations

from typing import Any

from bot.core import Reply

OPEN_PLAYLIST = "mixwith_open_playlist"
LIGHTS = {"good": ":large_green_circle:", "ok": ":large_yellow_circle:", "risky": ":red_circle:"}
SECTION_LIMIT = 3000


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def title(reply: Reply) -> str:
    q = reply.query
    if q is None or not q.title:
        return "Mixes with your track"
    return f"Mixes with {q.title} — {q.artist}" if q.artist else f"Mixes with {q.title}"


def reply_blocks(reply: Reply) -> list[dict[str, Any]]:
    """The final message: header, the input, one section per track, notes, Spotify button."""
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": title(reply)[:150]}}]
    q = reply.query
    if q is not None:
        facts = [f"{q.bpm:.1f} BPM" if q.bpm else ("no clear tempo" if q.bpm == 0.0 else ""), f"{q.camelot} ({q.key})" if q.camelot else "",
                 f"energy {q.energy}" if q.energy else ""]
        found = "identified in the catalog" if q.identified else "not in the catalog: matched by its analysis"
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": f"{' · '.join(f for f in facts if f)} — _{found}_"}]})
    for t in reply.tracks:
        line = f"`{t.rank:>2}` {LIGHTS[t.compat]} *{_escape(t.title)}*"
        if t.artist:
            line += f" — {_escape(t.artist)}"
        line += f"  ·  {f'{t.bpm:.0f} BPM' if t.bpm else 'no clear tempo'}  ·  {t.camelot}  ·  E{t.energy}"
        if t.reasons:
            line += f"\n_{_escape(', '.join(t.reasons))}_"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": line[:SECTION_LIMIT]}})
    if not reply.tracks:
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                   "text": "Nothing in the catalog mixes with it under these options."}})
    if reply.notes:
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": _escape(n)[:SECTION_LIMIT]} for n in reply.notes[:10]]})
    if reply.playlist_url:
        blocks.append({"type": "actions", "elements": [{
            "type": "button", "action_id": OPEN_PLAYLIST, "url": reply.playlist_url, "style": "primary",
            "text": {"type": "plain_text", "text": ":headphones: Open in Spotify", "emoji": True}}]})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text":
        f"request `{reply.short_id}` · react :+1: :-1: :fire: on this message, or :one:–:keycap_ten: for one track"}]})
    return blocks


def fallback_text(reply: Reply) -> str:
    """Notification and screen-reader text."""
    if reply.error:
        return f":x: {reply.error}"
    names = ", ".join(t.title for t in reply.tracks[:3])
    return f"{title(reply)}: {names}{'…' if len(reply.tracks) > 3 else ''}"


def error_blocks(reply: Reply) -> list[dict[str, Any]]:
    return [{"type": "section", "text": {"type": "mrkdwn", "text": f":x: {_escape(reply.error or '')}"}}]
