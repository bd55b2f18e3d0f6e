"""The platform-neutral core: options, reactions, rate limits, errors."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.core import (
    ChatRequest,
    MixService,
    RateLimited,
    RateLimiter,
    compatibility,
    parse_reaction,
    parse_text_options,
)
from workers.errors import InputError
from workers.messages import Candidate, MixRequest, MixResult, Progress
from workers.settings import BotSettings


def test_text_options_are_parsed() -> None:
    """A Slack-style command text gives the link and every option."""
    link, o = parse_text_options("<https://open.spotify.com/track/abc|song> count=8 bpm=120-128 key_lock energy=up")
    assert link == "https://open.spotify.com/track/abc"
    assert (o.count, o.bpm_min, o.bpm_max, o.key_lock, o.energy) == (8, 120.0, 128.0, True, "up")


def test_unknown_word_is_named() -> None:
    """A word the parser does not know is quoted back in the error."""
    with pytest.raises(InputError, match="'louder'"):
        parse_text_options("https://x.example/a.mp3 louder")


def test_empty_bpm_range_is_refused() -> None:
    """A BPM range with min above max is refused with both numbers."""
    with pytest.raises(InputError, match="130–120"):
        parse_text_options("https://x.example/a.mp3 bpm=130-120")


@pytest.mark.parametrize(
    ("text", "name", "value", "rank"),
    [("👍", "up", 1, None), ("👍🏽", "up", 1, None), ("+1::skin-tone-3", "up", 1, None), ("-1", "down", -1, None),
     ("🔥", "fire", 2, None), ("3️⃣", "pick", 1, 3), ("keycap_ten", "pick", 1, 10), ("🔟", "pick", 1, 10)],
)
def test_reactions_mean_the_same_on_both_platforms(text: str, name: str, value: int, rank: int | None) -> None:
    """Discord emoji and Slack reaction names (skin tones too) map to one meaning."""
    r = parse_reaction(text)
    assert r is not None and (r.name, r.value, r.rank) == (name, value, rank)


def test_other_reactions_are_ignored() -> None:
    """A reaction without meaning gives None."""
    assert parse_reaction("tada") is None and parse_reaction("🎉") is None


def test_traffic_light_follows_key_and_tempo() -> None:
    """Green for a smooth key move in tempo range, red for a key clash, amber between."""
    def cand(key: float, tempo: float) -> Candidate:
        return Candidate(1, 1, "t", "a", None, 120, "A minor", "8A", 5, 0.5, components={"key": key, "tempo": tempo})
    assert [compatibility(cand(1.0, 0.9)), compatibility(cand(0.7, 0.9)), compatibility(cand(0.0, 1.0))] == ["good", "ok", "risky"]


def test_user_rate_limit_names_the_wait() -> None:
    """The sixth request in a minute is refused with the seconds to wait; a minute later it passes."""
    now = [1000.0]
    limiter = RateLimiter(BotSettings(user_per_minute=5, user_active=10), clock=lambda: now[0])
    for _ in range(5):
        with limiter.slot(user="u", place="p"):
            pass
    now[0] += 20
    with pytest.raises(RateLimited, match="40 s"):
        with limiter.slot(user="u", place="p"):
            pass
    now[0] += 41
    with limiter.slot(user="u", place="p"):
        pass


def test_place_rate_limit_applies_across_users() -> None:
    """A server's shared limit stops a new user once the server is over it."""
    limiter = RateLimiter(BotSettings(place_per_minute=3, user_per_minute=10), clock=lambda: 0.0)
    for u in "abc":
        with limiter.slot(user=u, place="guild"):
            pass
    with pytest.raises(RateLimited, match="server is busy"):
        with limiter.slot(user="d", place="guild"):
            pass


def test_concurrent_jobs_per_user_are_bounded() -> None:
    """A user with a running job cannot start another beyond the limit."""
    limiter = RateLimiter(BotSettings(user_active=1, user_per_minute=10), clock=lambda: 0.0)
    with limiter.slot(user="u", place="p"):
        with pytest.raises(RateLimited, match="already have 1"):
            with limiter.slot(user="u", place="p"):
                pass


class _BuggyRunner:
    """A JobRunner whose jobs hit a bug; counts the jobs it was given."""

    def __init__(self) -> None:
        self.jobs = 0

    async def submit(self, request: MixRequest) -> AsyncIterator[Progress | MixResult]:
        self.jobs += 1
        raise ZeroDivisionError("boom")
        yield  # an async generator, like the real runners


async def test_a_bug_in_the_job_becomes_a_sentence_with_the_request_id(tmp_path) -> None:
    """An unexpected exception gives the user one sentence naming the request, not a traceback."""
    runner = _BuggyRunner()
    service = MixService(runner=runner, settings=BotSettings(), spool_dir=tmp_path)
    reply = await service.run(ChatRequest("slack", "T", "C", "U", link="https://x.example/a.mp3"))
    assert runner.jobs == 1 and reply.error is not None and reply.short_id in reply.error and "boom" not in reply.error


async def test_not_a_link_is_explained(tmp_path) -> None:
    """Text that is not a link gets a sentence quoting it."""
    runner = _BuggyRunner()
    service = MixService(runner=runner, settings=BotSettings(), spool_dir=tmp_path)
    reply = await service.run(ChatRequest("slack", "T", "C", "U", link="my favourite song"))
    assert runner.jobs == 0 and reply.error is not None and "'my favourite song' is not a link" in reply.error


async def test_oversize_clip_is_refused_before_the_job(tmp_path) -> None:
    """A clip over the upload limit is refused naming its size, and nothing is spooled."""
    runner = _BuggyRunner()
    service = MixService(runner=runner, settings=BotSettings(max_upload_bytes=1000), spool_dir=tmp_path / "spool")
    reply = await service.run(ChatRequest("discord", "G", "C", "U", clip=b"x" * 5000, clip_name="big.wav"))
    assert runner.jobs == 0 and reply.error is not None and "big.wav" in reply.error
    assert not (tmp_path / "spool").exists() or not any((tmp_path / "spool").iterdir())
