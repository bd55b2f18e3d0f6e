"""bench/chat: 100 concurrent /mixwith commands on Slack and on Discord — acknowledged in time, all answered?

Run from the repository root::

    python -m bench.chat.run [--commands 100] [--tracks 12]

Each platform gets the commands all at once, from distinct users, against
local fakes of its API (the same fakes the tests use). Two runs per platform:

* ``idle`` (the baseline): jobs that return an empty result at once, so the
  numbers are the bot's own acknowledgement overhead;
* ``engine``: every command is a real job through the workers' queue
  (in-memory broker, a worker in the bot's process with one engine process
  per core): download (Slack link) or upload (Discord clip) of a distinct
  10 s memo, decode, analysis, ranking of a synthesized catalog. ``burst``
  sends all commands at once, ``30s`` spreads them over 30 s so they arrive
  while jobs are running.

Slack's ack time is the HTTP answer to the signed slash-command request;
Discord's is from feeding the interaction to discord.py to the deferral
reaching the fake API. Target: all acks within 3 s, p99 at most 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import soundfile as sf

SR = 22050


@dataclass
class Row:
    platform: str
    run: str
    commands: int
    acked: int
    p50_s: float
    p99_s: float
    max_s: float
    answered: int
    failed: int
    all_answered_s: float


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    return float(np.percentile(np.asarray(xs), q))


class InstantRunner:
    """Baseline job runner: an empty result at once."""

    async def submit(self, request: Any):  # noqa: ANN201 - async generator
        from workers.messages import MixResult, Progress

        yield Progress(request.request_id, "queued", position=1)
        yield MixResult(request.request_id, {"bpm": 120.0, "camelot": "8A", "key": "A minor", "energy": 5}, ())


async def build_catalog(pool: Any, root: Path, n: int) -> list[Path]:
    from db.queries import tracks as tracks_q
    from engine.analysis import analyze
    from engine.synth import demo_specs, render

    paths = []
    async with pool.acquire() as conn:
        for i, spec in enumerate(demo_specs(count=n, duration_s=20.0, seed=5)):
            y = render(spec, sr=SR)
            p = root / f"t{i}.wav"
            sf.write(p, y, SR)
            await tracks_q.add_analyzed_track(
                conn, content_hash=f"bench-{i}", title=f"Bench {i} ({spec.style})", artist=f"Synth {i}",
                album="", genre=spec.style, path=str(p), source="library", analysis=analyze(y, sr=SR).to_dict(),
            )
            paths.append(p)
    return paths


def memos(catalog: list[Path], out: Path, n: int) -> list[bytes]:
    """``n`` distinct 10 s memo-like clips (excerpt + room noise, WAV) of catalog tracks.

    Distinct bytes, because the workers cache answers by the input's hash and
    a repeated clip would measure the cache, not the engine.
    """
    clips = []
    for i in range(n):
        y, _ = sf.read(catalog[i % len(catalog)], dtype="float32")
        clip = y[4 * SR : 14 * SR] * 0.6 + np.random.default_rng(i).normal(0, 0.01, 10 * SR).astype(np.float32)
        buf = out / f"memo{i}.wav"
        sf.write(buf, clip, SR, subtype="PCM_16")
        clips.append(buf.read_bytes())
    return clips


async def bench_slack(
    make_service: Callable[[Any], Any], runner: Any, n: int, clips: list[bytes], label: str, spread_s: float = 0.0
) -> Row:
    from slack_sdk.web.async_client import AsyncWebClient

    from bot.slack.app import create_app
    from tests.bot.slack.conftest import SECRET, SlackHarness
    from tests.fakes.slack_api import FakeSlack
    from workers.settings import SlackSettings
    from aiohttp import web

    fake = FakeSlack()
    await fake.start()
    urls = [fake.add_media(f"memo{i}.wav", clips[i], "audio/wav") for i in range(n)]
    service = make_service(runner)
    settings = SlackSettings(bot_token=fake.token, signing_secret=SECRET, api_url=fake.api_url)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as http:
        app = create_app(settings, service, http=http, client=AsyncWebClient(token=fake.token, base_url=fake.api_url))
        web_runner = web.AppRunner(app.web_app(path="/slack/events"), access_log=None)
        await web_runner.setup()
        site = web.TCPSite(web_runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        h = SlackHarness(fake, service, f"http://127.0.0.1:{port}/slack/events", http)
        await h.command("warm-up: not a link")  # the first request pays for auth.test
        start = time.monotonic()
        async def one(i: int) -> tuple[int, str, float]:
            await asyncio.sleep(spread_s * i / n)
            return await h.command(f"<{urls[i]}>", user=f"U{i:08d}")

        results = await asyncio.gather(*(one(i) for i in range(n)))
        acks = [t for status, _, t in results if status == 200]

        def answered(f: FakeSlack) -> int:
            return sum(1 for m in f.messages.values() if m["blocks"])

        try:
            await fake.wait_for(lambda f: answered(f) >= n, timeout_s=600)
        except asyncio.TimeoutError:
            pass
        done_at = time.monotonic() - start
        await service.drain(timeout_s=30)
        await web_runner.cleanup()
    await fake.close()
    failed = sum(1 for m in fake.messages.values() if m["blocks"] and m["text"].startswith(":x:"))
    return Row("slack", label, n, len(acks), _pct(acks, 50), _pct(acks, 99), max(acks, default=float("nan")),
               answered(fake), failed, done_at)


async def bench_discord(
    make_service: Callable[[Any], Any], runner: Any, n: int, clips: list[bytes], label: str, spread_s: float = 0.0
) -> Row:
    import discord

    from bot.discord import MixwithBot
    from tests.fakes.discord_api import FakeDiscord, interaction_payload
    from workers.settings import DiscordSettings

    fake = FakeDiscord()
    await fake.start()
    old_base = discord.http.Route.BASE
    discord.http.Route.BASE = fake.base
    try:
        bot = MixwithBot(service=make_service(runner), settings=DiscordSettings(token="test-token", sync_commands=False))
        await bot.login("test-token")
        payloads = []
        for i in range(n):
            att = fake.add_attachment(f"memo{i}.wav", clips[i], "audio/wav")
            payloads.append(interaction_payload(
                name="mixwith", options=[{"name": "clip", "type": 11, "value": att["id"]}],
                attachments={att["id"]: att}, user_id=str(700000000000100000 + i)))
        sent: dict[str, float] = {}
        start = time.monotonic()
        for i, p in enumerate(payloads):
            if spread_s:
                await asyncio.sleep(spread_s / n)
            sent[p["id"]] = time.monotonic()
            bot._connection.parse_interaction_create(p)
        tokens = {p["token"] for p in payloads}

        def answered(f: FakeDiscord) -> int:
            return sum(1 for t in tokens if f.originals.get(t, {}).get("embeds") or
                       f.originals.get(t, {}).get("content", "").startswith("❌"))

        try:
            await fake.wait_for(lambda f: answered(f) >= n, timeout_s=600)
        except asyncio.TimeoutError:
            pass
        done_at = time.monotonic() - start
        await bot.service.drain(timeout_s=60)
        acks = [c.at - sent[c.path.split("/")[4]] for c in fake.calls if c.path.endswith("/callback")]
        await bot.close()
    finally:
        discord.http.Route.BASE = old_base
        await fake.close()
    failed = sum(1 for t in tokens if fake.originals.get(t, {}).get("content", "").startswith("❌"))
    return Row("discord", label, n, len(acks), _pct(acks, 50), _pct(acks, 99), max(acks, default=float("nan")),
               answered(fake), failed, done_at)


async def main_async(n: int, tracks: int) -> list[Row]:
    import pgserver

    from bot.core import MixService, QueueRunner
    from db.pool import create_pool
    from workers.broker import open_queue
    from workers.settings import AudioSettings, BotSettings, FetchSettings, QueueSettings, Settings

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="mixwith-bench-chat-") as tmp:
        root = Path(tmp)
        os.chmod(root, 0o755)
        server = pgserver.get_server(root / "pg", cleanup_mode="delete")
        dsn = server.get_uri()
        pool = await create_pool(dsn=dsn, pg_dir=root / "pg", max_size=10)
        try:
            catalog = await build_catalog(pool, root, tracks)
            cores = os.cpu_count() or 1
            bots = BotSettings(user_per_minute=1000, place_per_minute=100000, user_active=10, progress_interval_s=1.5)

            def make_service(runner: Any) -> MixService:
                return MixService(runner=runner, settings=bots, spool_dir=root / "spool", pool=pool)

            run_no = 0
            for platform, fn in (("slack", bench_slack), ("discord", bench_discord)):
                rows.append(await fn(make_service, InstantRunner(), n, memos(catalog, root, n), "idle (baseline)"))
                for label, spread in (("engine, burst", 0.0), ("engine, 30s", 30.0)):
                    run_no += 1
                    # A fresh home per run: the workers cache answers, and each run must do the work.
                    settings = Settings(
                        home=root / f"home{run_no}", database_url=dsn, audio=AudioSettings(processes=cores),
                        fetch=FetchSettings(allow_loopback_for_tests=True), queue=QueueSettings(concurrency=cores),
                    )
                    async with open_queue(settings) as jobs:
                        rows.append(await fn(make_service, QueueRunner(jobs), n, memos(catalog, root, n), label,
                                             spread_s=spread))
        finally:
            await pool.close()
            server.cleanup()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--commands", type=int, default=100)
    ap.add_argument("--tracks", type=int, default=12)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pgserver").setLevel(logging.ERROR)
    rows = asyncio.run(main_async(args.commands, args.tracks))
    head = f"{'platform':<8} {'run':<18} {'cmds':>5} {'acked':>5} {'ack p50':>8} {'ack p99':>8} {'ack max':>8} {'answered':>8} {'failed':>6} {'all done':>9}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r.platform:<8} {r.run:<18} {r.commands:>5} {r.acked:>5} {r.p50_s * 1000:>6.0f}ms {r.p99_s * 1000:>6.0f}ms"
              f" {r.max_s * 1000:>6.0f}ms {r.answered:>8} {r.failed:>6} {r.all_answered_s:>8.1f}s")
    ok = all(r.acked == r.commands and r.max_s <= 3.0 and r.answered == r.commands and not r.failed for r in rows)
    print(f"\nall acknowledged within 3 s and all answered without error: {'yes' if ok else 'NO'}"
          f"; p99 ≤ 1 s: {'yes' if all(r.p99_s <= 1.0 for r in rows) else 'NO'}")


if __name__ == "__main__":
    main()
