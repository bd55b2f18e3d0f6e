"""The Redis queue with real worker processes: nothing lost, nothing answered twice, under a kill."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from db.queries import jobs as jobs_q
from tests.fakes.media_server import media_server
from workers.broker import open_queue
from workers.messages import MixOptions, MixRequest
from workers.settings import QueueSettings, Settings

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REPO = Path(__file__).resolve().parents[2]


def _redis_up() -> bool:
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


pytestmark = [
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.skipif(not _redis_up(), reason=f"needs a Redis server at {REDIS_HOST}:{REDIS_PORT} (none answered PING)"),
]


def _clip(seed: int, *, seconds: float = 3.5, sr: int = 22050) -> bytes:
    """A distinct short clip per job (a pulsed tone), so no two jobs share a cache entry."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    pulse = (np.sin(2 * np.pi * 2.0 * t) > 0.6).astype(float)
    y = 0.3 * np.sin(2 * np.pi * (220 + seed) * t) * (0.4 + pulse) + 0.02 * rng.standard_normal(t.size)
    buf = io.BytesIO()
    sf.write(buf, y.astype(np.float32), sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _worker_env(settings: Settings, home: Path) -> dict[str, str]:
    q = settings.queue
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIXWITH_")}
    env.update({
        "MIXWITH_BROKER": q.broker_url, "MIXWITH_QUEUE_NAME": q.queue_name, "DATABASE_URL": settings.database_url or "",
        "MIXWITH_HOME": str(home), "MIXWITH_JOB_TIMEOUT_S": str(q.job_timeout_s), "MIXWITH_CLAIM_IDLE_S": str(q.claim_idle_s),
        "MIXWITH_WORKER_CONCURRENCY": "2", "MIXWITH_PROCESSES": "1", "MIXWITH_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(REPO), "OPENBLAS_NUM_THREADS": "1",
    })
    return env


async def _pending_owner(redis, stream: str, group: str) -> dict[str, int]:
    """Unacknowledged jobs per consumer (a worker holding one is mid-job)."""
    try:
        info = await redis.xpending(stream, group)
    except Exception:  # the group does not exist before the first worker starts
        return {}
    return {c["name"].decode(): int(c["pending"]) for c in info.get("consumers") or []}


async def test_two_workers_one_killed_mid_job_answer_every_job_exactly_once(settings, pool, tmp_path):
    """50 jobs on two worker processes, one SIGKILLed while holding a job: all 50 answered once, none lost."""
    queue_name = f"mixwith-test-{uuid.uuid4().hex[:8]}"
    settings = replace(settings, queue=QueueSettings(
        broker_url=f"redis://{REDIS_HOST}:{REDIS_PORT}/0", queue_name=queue_name,
        job_timeout_s=10.0, claim_idle_s=12.0, retries=0))
    procs = [
        subprocess.Popen([sys.executable, "-m", "bot.cli", "worker"], env=_worker_env(settings, tmp_path / f"w{i}"),
                         cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for i in range(2)
    ]
    try:
        async with open_queue(settings) as client:
            store = client._store
            redis = store.redis
            requests = [MixRequest.new(platform="discord", input_kind="upload", input_ref=f"clip{i}.wav",
                                       options=MixOptions(count=3)) for i in range(50)]
            handles = [await client.submit(r, upload=_clip(i)) for i, r in enumerate(requests)]
            stream, group = f"{queue_name}:jobs", f"{queue_name}:workers"
            victim = procs[0]
            # kill the first worker at a moment it holds an unacknowledged job
            deadline = time.monotonic() + 60
            killed_holding = 0
            while time.monotonic() < deadline:
                owners = await _pending_owner(redis, stream, group)
                held = {name: n for name, n in owners.items() if name.endswith(f"-{victim.pid}") and n > 0}
                answered = sum([await store.answer(r.request_id) is not None for r in requests[:20]])
                if held and answered >= 15:
                    victim.send_signal(signal.SIGKILL)
                    killed_holding = sum(held.values())
                    break
                await asyncio.sleep(0.05)
            assert killed_holding >= 1, "the worker never held a job"
            victim.wait(timeout=10)
            answers = await asyncio.wait_for(asyncio.gather(*(h.answer() for h in handles)), timeout=120)
            terminal_counts = []
            for r in requests:
                events = await redis.xrange(f"{queue_name}:ev:{r.request_id}")
                stages = [json.loads(f[b"data"])["stage"] for _, f in events]
                terminal_counts.append(sum(s in ("done", "failed") for s in stages))
        assert all(a.ok for a in answers), [a.error for a in answers if not a.ok]
        assert terminal_counts == [1] * 50
        assert max(a.timings["deliveries"] for a in answers) >= 2  # the victim's job was taken over
        # the record is written just after the answer is sent: give the last one a moment
        for _ in range(100):
            async with pool.acquire() as conn:
                statuses = await jobs_q.count_by_status(conn, [r.request_id for r in requests])
            if statuses == {"done": 50}:
                break
            await asyncio.sleep(0.1)
        assert statuses == {"done": 50}
    finally:
        _stop_all(procs)
        await _cleanup(queue_name)


def _slow_link_setup(settings: Settings, tmp_path: Path, *, grace_s: float, job_timeout_s: float, claim_idle_s: float):
    """Redis settings on a fresh queue and a starter for workers allowed to fetch from the local media host."""
    queue_name = f"mixwith-test-{uuid.uuid4().hex[:8]}"
    settings = replace(settings, queue=QueueSettings(
        broker_url=f"redis://{REDIS_HOST}:{REDIS_PORT}/0", queue_name=queue_name,
        job_timeout_s=job_timeout_s, claim_idle_s=claim_idle_s, retries=0))

    def start(name: str) -> subprocess.Popen[bytes]:
        env = _worker_env(settings, tmp_path / name)
        env.update({"MIXWITH_ALLOW_LOOPBACK_FOR_TESTS": "1", "MIXWITH_SHUTDOWN_GRACE_S": str(grace_s)})
        return subprocess.Popen([sys.executable, "-m", "bot.cli", "worker"], env=env, cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    return settings, start


async def _submit_slow_link(client, media, worker: subprocess.Popen[bytes], *, delay_s: float):
    """Submit a job whose link answers after ``delay_s``; return once ``worker`` is fetching it (holds the job)."""
    request = MixRequest.new(platform="slack", input_kind="link", input_ref=media.url(f"/audio.wav?delay_s={delay_s:g}"),
                             options=MixOptions(count=3))
    handle = await client.submit(request)
    deadline = time.monotonic() + 60
    while not any(p.startswith("/audio.wav") for p in media.hits):
        assert time.monotonic() < deadline and worker.poll() is None, "the worker never started the job"
        await asyncio.sleep(0.05)
    return request, handle


def _stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()


async def test_sigterm_lets_the_worker_finish_its_running_job(settings, pool, tmp_path):
    """A worker told to stop while it holds a job finishes that job itself (answered once, not handed on), then exits."""
    settings, start = _slow_link_setup(settings, tmp_path, grace_s=20, job_timeout_s=30, claim_idle_s=60)
    procs = [start("w")]
    try:
        async with media_server(audio=_clip(7, seconds=6.0)) as media, open_queue(settings) as client:
            _, handle = await _submit_slow_link(client, media, procs[0], delay_s=4)
            procs[0].send_signal(signal.SIGTERM)
            answer = await asyncio.wait_for(handle.answer(), timeout=40)
            code = await asyncio.to_thread(procs[0].wait, 30)
        assert answer.ok, answer.error
        assert answer.timings["deliveries"] == 1
        assert code == 0
    finally:
        _stop_all(procs)
        await _cleanup(settings.queue.queue_name)


async def test_a_job_outlasting_the_grace_period_is_taken_over_not_failed(settings, pool, tmp_path):
    """A job still running when a stopping worker's grace runs out is left to the next worker, which answers it."""
    settings, start = _slow_link_setup(settings, tmp_path, grace_s=1, job_timeout_s=10, claim_idle_s=12)
    procs = [start("first")]
    try:
        async with media_server(audio=_clip(8, seconds=6.0)) as media, open_queue(settings) as client:
            request, handle = await _submit_slow_link(client, media, procs[0], delay_s=4)
            procs[0].send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(procs[0].wait, 30)
            assert await client._store.answer(request.request_id) is None  # left, not failed
            procs.append(start("second"))
            answer = await asyncio.wait_for(handle.answer(), timeout=90)
        assert code == 0
        assert answer.ok, answer.error
        assert answer.timings["deliveries"] == 2
    finally:
        _stop_all(procs)
        await _cleanup(settings.queue.queue_name)


async def _cleanup(prefix: str) -> None:
    from redis.asyncio import Redis

    r = Redis.from_url(f"redis://{REDIS_HOST}:{REDIS_PORT}/0")
    try:
        keys = [k async for k in r.scan_iter(match=f"{prefix}:*", count=500)]
        if keys:
            await r.delete(*keys)
    finally:
        await r.aclose()
