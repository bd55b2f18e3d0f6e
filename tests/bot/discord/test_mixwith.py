"""/mixwith on Discord end to end: real discord.py dispatch against a local fake REST API."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import discord
import pytest
import soundfile as sf

from bot.core import MixService
from bot.discord import MixwithBot
from db.queries import feedback as fbq
from engine.camelot import Key
from engine.synth import render_drone
from tests.bot.conftest import CatalogTrack, memo_of
from tests.fakes.discord_api import FakeDiscord, interaction_payload, reaction_payload
from workers.settings import DiscordSettings


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDiscord]:
    f = FakeDiscord()
    await f.start()
    monkeypatch.setattr(discord.http.Route, "BASE", f.base)
    yield f
    await f.close()


@pytest.fixture
async def bot(fake: FakeDiscord, make_service: Callable[..., MixService]) -> AsyncIterator[MixwithBot]:
    b = MixwithBot(service=make_service(), settings=DiscordSettings(token="test-token", sync_commands=False))
    await b.login("test-token")
    yield b
    await b.close()


async def _settle(name: str) -> None:
    """Wait for discord.py's event tasks of one kind (it names them ``discord.py: <event>``)."""
    tasks = [t for t in asyncio.all_tasks() if t.get_name() == f"discord.py: {name}"]
    await asyncio.gather(*tasks)


def _final(fake: FakeDiscord, token: str) -> dict:
    return fake.originals.get(token, {})


async def _mixwith_clip(fake: FakeDiscord, bot: MixwithBot, track: CatalogTrack, tmp_path: Path, **extra: object) -> str:
    data = memo_of(track, tmp_path / "memo.m4a").read_bytes()
    att = fake.add_attachment("memo.m4a", data, "audio/mp4")
    options = [{"name": "clip", "type": 11, "value": att["id"]}, {"name": "count", "type": 4, "value": 4}]
    payload = interaction_payload(name="mixwith", options=options, attachments={att["id"]: att}, **extra)  # type: ignore[arg-type]
    bot._connection.parse_interaction_create(payload)
    token = payload["token"]
    await fake.wait_for(lambda f: len(f.reactions) >= 3 and bool(_final(f, token).get("embeds")))
    return token


async def test_memo_reply_names_the_track_and_ranks_a_set(fake, bot, catalog, tmp_path) -> None:
    """A clip of a catalog track gets a deferred reply naming that track with a ranked set and a wheel PNG."""
    track = catalog[2]
    token = await _mixwith_clip(fake, bot, track, tmp_path)
    first = fake.calls[0]
    assert first.path.endswith("/callback") and first.json["type"] == 5  # deferred before any work
    embed = _final(fake, token)["embeds"][0]
    assert track.title in embed["title"]
    lines = [ln for ln in embed["description"].splitlines() if ln.startswith("`")]
    assert len(lines) == 4
    assert track.title not in "\n".join(lines)  # the query itself is not suggested
    assert any(t.title in lines[0] for t in catalog)
    assert "🟢" in embed["description"] or "🟡" in embed["description"] or "🔴" in embed["description"]
    final_edit = fake.calls_to("/messages/@original", "PATCH")[-1]
    assert final_edit.files["wheel.png"].startswith(b"\x89PNG")
    assert embed["image"]["url"] == "attachment://wheel.png"


async def test_progress_is_shown_before_the_result(fake, bot, catalog, tmp_path) -> None:
    """The deferred reply is edited with progress text before the final embed."""
    await _mixwith_clip(fake, bot, catalog[0], tmp_path)
    edits = fake.calls_to("/messages/@original", "PATCH")
    assert any((e.json or {}).get("content", "").startswith("⏳") for e in edits[:-1])


async def test_reaction_is_one_feedback_row_even_when_replayed(fake, bot, pool, catalog, tmp_path) -> None:
    """👍 on the reply stores one feedback row; the same gateway event replayed still leaves one."""
    token = await _mixwith_clip(fake, bot, catalog[1], tmp_path)
    message_id = _final(fake, token)["id"]
    async with pool.acquire() as conn:
        rid = await fbq.request_for_reply(conn, platform="discord", reply_ref=message_id)
    assert rid is not None
    for _ in range(2):
        bot._connection.parse_message_reaction_add(reaction_payload(message_id=message_id, emoji="👍"))
        await _settle("on_raw_reaction_add")
    async with pool.acquire() as conn:
        assert await fbq.count_feedback(conn, request_id=rid) == 1


async def test_removing_a_reaction_undoes_it(fake, bot, pool, catalog, tmp_path) -> None:
    """3️⃣ adds feedback for the third track; removing the reaction deletes it."""
    token = await _mixwith_clip(fake, bot, catalog[3], tmp_path)
    message_id = _final(fake, token)["id"]
    async with pool.acquire() as conn:
        rid = await fbq.request_for_reply(conn, platform="discord", reply_ref=message_id)
        third = await fbq.track_at_rank(conn, request_id=rid, rank=3)
    bot._connection.parse_message_reaction_add(reaction_payload(message_id=message_id, emoji="3️⃣"))
    await _settle("on_raw_reaction_add")
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT track_id, value FROM feedback WHERE request_id = $1", rid)
    assert (row["track_id"], row["value"]) == (third, 1)
    bot._connection.parse_message_reaction_remove(reaction_payload(message_id=message_id, emoji="3️⃣"))
    await _settle("on_raw_reaction_remove")
    async with pool.acquire() as conn:
        assert await fbq.count_feedback(conn, request_id=rid) == 0


async def test_non_audio_attachment_gets_a_sentence(fake, bot, catalog) -> None:
    """A PDF attached as the clip is refused with a sentence naming the file."""
    att = fake.add_attachment("setlist.pdf", b"%PDF-1.4", "application/pdf")
    payload = interaction_payload(
        name="mixwith", options=[{"name": "clip", "type": 11, "value": att["id"]}], attachments={att["id"]: att}
    )
    bot._connection.parse_interaction_create(payload)
    token = payload["token"]
    await fake.wait_for(lambda f: _final(f, token).get("content", "").startswith("❌"))
    assert "setlist.pdf is not audio" in _final(fake, token)["content"]


async def test_context_menu_mixes_a_message_with_audio(fake, bot, catalog, tmp_path) -> None:
    """"Mix with this" on a DM message holding a memo answers with that track."""
    track = catalog[4]
    data = memo_of(track, tmp_path / "voice.m4a").read_bytes()
    att = fake.add_attachment("voice.m4a", data, "audio/mp4")
    target = {
        "id": "820000000000000001", "channel_id": "810000000000000001", "type": 0, "content": "what mixes with this?",
        "author": {"id": "700000000000000009", "username": "friend", "discriminator": "0", "avatar": None},
        "attachments": [att], "embeds": [], "timestamp": "2026-01-01T00:00:00+00:00", "edited_timestamp": None,
        "tts": False, "mention_everyone": False, "mentions": [], "mention_roles": [], "pinned": False,
    }
    payload = interaction_payload(
        name="Mix with this", options=[], command_type=3, target_id=target["id"],
        messages={target["id"]: target}, guild_id=None,
    )
    bot._connection.parse_interaction_create(payload)
    token = payload["token"]
    await fake.wait_for(lambda f: bool(_final(f, token).get("embeds")))
    assert track.title in _final(fake, token)["embeds"][0]["title"]


async def test_beatless_clip_not_in_the_catalog_is_named_by_its_file(fake, bot, catalog, tmp_path) -> None:
    """An ambient clip the catalog lacks is not misnamed: the reply carries its file name, no tempo, and catalog tracks."""
    sf.write(tmp_path / "pad.wav", render_drone(Key(2, "minor"), duration_s=12.0, seed=1, sr=22050), 22050)
    att = fake.add_attachment("pad.wav", (tmp_path / "pad.wav").read_bytes(), "audio/wav")
    payload = interaction_payload(name="mixwith", options=[{"name": "clip", "type": 11, "value": att["id"]}],
                                  attachments={att["id"]: att})
    bot._connection.parse_interaction_create(payload)
    await fake.wait_for(lambda f: bool(_final(f, payload["token"]).get("embeds")))
    embed = _final(fake, payload["token"])["embeds"][0]
    assert "pad.wav" in embed["title"] and not any(t.title in embed["title"] for t in catalog)
    assert "no clear tempo" in str(embed) and "7A" in str(embed)  # D minor, the drone's key
    lines = [ln for ln in embed["description"].splitlines() if ln.startswith("`")]
    assert lines and all(any(t.title in ln for t in catalog) for ln in lines)


async def test_reply_after_the_token_expired_goes_to_the_channel(fake, bot, catalog, tmp_path) -> None:
    """An interaction older than the 15-minute token gets its reply as a channel message naming the user."""
    data = memo_of(catalog[5], tmp_path / "late.m4a").read_bytes()
    att = fake.add_attachment("late.m4a", data, "audio/mp4")
    payload = interaction_payload(name="mixwith", options=[{"name": "clip", "type": 11, "value": att["id"]}],
                                  attachments={att["id"]: att})
    old = discord.utils.utcnow() - datetime.timedelta(minutes=16)
    payload["id"] = str(discord.utils.time_snowflake(old))  # Discord ids carry their creation time
    bot._connection.parse_interaction_create(payload)
    await fake.wait_for(lambda f: bool(f.channel_messages) and len(f.reactions) >= 3)
    msg = fake.channel_messages[0]
    assert msg["content"].startswith("<@700000000000000001>")
    assert catalog[5].title in msg["embeds"][0]["title"]
    assert not any((c.json or {}).get("embeds") for c in fake.calls_to("/messages/@original", "PATCH"))
