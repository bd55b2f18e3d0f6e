"""``python -m bench.queue``: what the task queue costs and how it scales.

Baseline: calling the mix job's handler directly (no queue), measured in the
same run. Then the same job through the in-process queue and through Redis
with real ``mixwith worker`` processes; queue overhead per job = latency seen
by the client − the job's own work (measured inside the worker). Throughput:
40 distinct uploads (real decoding and analysis each) with one worker, then
with two. Prints a table; writes bench/out/queue.json.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import soundfile as sf

from db.queries import tracks as tracks_q
from engine.camelot import Key
from engine.synth import TrackSpec, render
from workers.broker import open_queue
from workers.catalog import process_file
from workers.messages import MixOptions, MixRequest
from workers.settings import AudioSettings, FetchSettings, QueueSettings, Settings
from workers.tasks import JobContext

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "bench" / "out"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
N_LATENCY = 100
N_THROUGHPUT = 40
TARGET_MEMORY_P95_MS = 20.0
CLIP_S = 3.5  # the engine needs at least 3 s for tempo
TARGET_REDIS_P95_MS = 50.0


def _clip(seed: int, *, seconds: float = CLIP_S, sr: int = 22050) -> bytes:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    pulse = (np.sin(2 * np.pi * 2.0 * t) > 0.6).astype(float)
    y = 0.3 * np.sin(2 * np.pi * (220 + seed % 500) * t) * (0.4 + pulse) + 0.02 * rng.standard_normal(t.size)
    buf = io.BytesIO()
    sf.write(buf, y.astype(np.float32), sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _request(i: int) -> MixRequest:
    return MixRequest.new(platform="bench", input_kind="upload", input_ref=f"clip{i}.wav", options=MixOptions(count=5))


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) * 1000.0


async def _seed_catalog(settings: Settings, folder: Path) -> None:
    from db.pool import create_pool

    pool = await create_pool(dsn=settings.database_url, pg_dir=settings.pg_dir)
    try:
        async with pool.acquire() as conn:
            for i, (style, bpm, key) in enumerate([("house", 124, Key(9, "minor")), ("house", 126, Key(4, "minor")),
                                                   ("techno", 132, Key(2, "minor")), ("house", 122, Key(0, "major"))]):
                path = folder / f"t{i}.wav"
                sf.write(path, render(TrackSpec(style=style, bpm=bpm, key=key, duration_s=8, seed=i), sr=22050), 22050)
                res = process_file(str(path), AudioSettings())
                await tracks_q.add_analyzed_track(conn, content_hash=f"bench{i}", title=path.stem, artist="synth",
                                                  album="", genre="", path=str(path), source="bench", analysis=res.analysis)
    finally:
        await pool.close()


async def _noop(_event) -> None:
    return None


async def bench_memory(settings: Settings) -> dict:
    clip = _clip(1)
    async with open_queue(settings) as client:
        worker = client.local_worker
        assert worker is not None
        for i in range(3):  # warm: caches the clip's analysis, starts the engine process
            await client.mix(_request(i), upload=clip)
        # direct and queued calls alternate, so both see the same machine load
        direct: list[float] = []
        latency: list[float] = []
        overhead: list[float] = []
        for i in range(N_LATENCY):
            req = _request(i)
            await worker.store.put_upload(req.request_id, clip)
            ctx = JobContext(request_id=req.request_id, publish=_noop, timings={})
            t0 = time.perf_counter()
            await worker.handlers["mixwith"](req.to_dict(), ctx)
            direct.append(time.perf_counter() - t0)
            lat, ovh = await _sequential(client, clip, n=1)
            latency += lat
            overhead += ovh
    return {"direct": direct, "latency": latency, "overhead": overhead}


async def _sequential(client, clip: bytes, n: int = N_LATENCY) -> tuple[list[float], list[float]]:
    latency, overhead = [], []
    for i in range(n):
        t0 = time.perf_counter()
        handle = await client.submit(_request(i), upload=clip)
        answer = await handle.answer()
        dt = time.perf_counter() - t0
        assert answer.ok, answer.error
        latency.append(dt)
        overhead.append(dt - answer.timings["work"])
    return latency, overhead


def _start_workers(n: int, settings: Settings, home: Path) -> list[subprocess.Popen]:
    q = settings.queue
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIXWITH_")}
    env.update({"MIXWITH_BROKER": q.broker_url, "MIXWITH_QUEUE_NAME": q.queue_name, "DATABASE_URL": settings.database_url,
                "MIXWITH_PROCESSES": "1", "MIXWITH_WORKER_CONCURRENCY": "2", "MIXWITH_LOG_LEVEL": "WARNING",
                "PYTHONPATH": str(REPO), "OPENBLAS_NUM_THREADS": "1"})
    return [subprocess.Popen([sys.executable, "-m", "bot.cli", "worker"], cwd=REPO,
                             env={**env, "MIXWITH_HOME": str(home / f"w{n}-{i}")}) for i in range(n)]


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()


async def _throughput(client, seed0: int, stats: dict | None = None) -> float:
    clips = [_clip(seed0 + i) for i in range(N_THROUGHPUT)]
    t0 = time.perf_counter()
    handles = [await client.submit(_request(i), upload=c) for i, c in enumerate(clips)]
    answers = await asyncio.gather(*(h.answer() for h in handles))
    dt = time.perf_counter() - t0
    assert all(a.ok for a in answers), [a.error for a in answers if not a.ok][:3]
    if stats is not None:
        # where the time went: jobs per worker, and mean seconds of analysis per job (grows with CPU contention)
        per_worker: dict[str, int] = {}
        for a in answers:
            per_worker[a.worker] = per_worker.get(a.worker, 0) + 1
        stats["jobs_per_worker"] = sorted(per_worker.values(), reverse=True)
        stats["mean_analysing_s"] = float(np.mean([a.timings.get("analysing", 0.0) for a in answers]))
    return N_THROUGHPUT / dt


async def _warm(client, n_workers: int) -> None:
    # enough concurrent jobs that every worker has started its engine process
    await asyncio.gather(*(client.mix(_request(i), upload=_clip(10_000 + i + 100 * n_workers)) for i in range(4 * n_workers)))


async def _ready(client, n: int, timeout_s: float = 300.0) -> None:
    """Submit rounds of warm-up jobs until n different workers have answered (all started and warm)."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout_s
    seed = 20_000 + 1000 * n
    while len(seen) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(seen)} of {n} workers answered within {timeout_s:g} s")
        handles = [await client.submit(_request(i), upload=_clip(seed + i)) for i in range(2 * n)]
        seed += 2 * n
        seen |= {(await h.answer()).worker for h in handles}


async def bench_redis(settings: Settings, home: Path) -> dict:
    out: dict = {}
    base_name = settings.queue.queue_name
    for n in (1, 2):
        # a fresh stream and group per phase, so only this phase's workers are in it
        settings = replace(settings, queue=replace(settings.queue, queue_name=f"{base_name}-{n}"))
        procs = _start_workers(n, settings, home)
        try:
            async with open_queue(settings) as client:
                await _ready(client, n)
                if n == 1:
                    clip = _clip(2)
                    await client.mix(_request(0), upload=clip)
                    out["latency"], out["overhead"] = await _sequential(client, clip)
                stats: dict = {}
                out[f"throughput_{n}"] = await _throughput(client, seed0=1000 * n, stats=stats)
                out[f"stats_{n}"] = stats
                # local baseline: the same distinct-clip work, in-process queue
        finally:
            _stop(procs)
    return out


async def bench_memory_throughput(settings: Settings) -> float:
    async with open_queue(settings) as client:
        await _warm(client, 1)
        return await _throughput(client, seed0=5000)


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


async def _cleanup_redis(prefix: str) -> None:
    from redis.asyncio import Redis

    r = Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in r.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await r.delete(*keys)
    finally:
        await r.aclose()


async def main() -> None:
    import pgserver

    with tempfile.TemporaryDirectory(prefix="mixwith-bench-queue-") as tmp:
        home = Path(tmp)
        server = pgserver.get_server(home / "pg", cleanup_mode="delete")
        dsn = server.get_uri()
        base = Settings(home=home / "home", database_url=dsn, audio=AudioSettings(processes=1),
                        fetch=FetchSettings(), queue=QueueSettings(broker_url="memory", concurrency=2))
        (home / "lib").mkdir()
        await _seed_catalog(base, home / "lib")
        mem = await bench_memory(base)
        mem_tp = await bench_memory_throughput(base)
        red: dict = {}
        prefix = f"mixwith-bench-{uuid.uuid4().hex[:8]}"
        if _redis_up():
            rs = replace(base, queue=QueueSettings(broker_url=REDIS_URL, queue_name=prefix, concurrency=2,
                                                   job_timeout_s=60, claim_idle_s=120))
            try:
                red = await bench_redis(rs, home)
            finally:
                for n in (1, 2):
                    await _cleanup_redis(f"{prefix}-{n}")
        server.cleanup()

    d50, d95 = _pct(mem["direct"], 50), _pct(mem["direct"], 95)
    rows = [("direct call (baseline)", mem["direct"], None, "")]
    rows.append(("in-process queue", mem["latency"], mem["overhead"], f"≤ {TARGET_MEMORY_P95_MS:g}"))
    if red:
        rows.append(("redis queue, 1 worker", red["latency"], red["overhead"], f"≤ {TARGET_REDIS_P95_MS:g}"))
    print(f"\nQueue latency per job, {N_LATENCY} sequential cached mix jobs (ms)")
    print("  added = queue percentile − direct-call percentile; per-job = latency − the job's own work")
    print(f"{'path':<24}{'p50':>8}{'p95':>8}{'added p50':>11}{'added p95':>11}{'per-job p95':>13}{'target p95':>12}")
    for name, lat, ovh, target in rows:
        p50, p95 = _pct(lat, 50), _pct(lat, 95)
        if ovh is None:
            print(f"{name:<24}{p50:8.2f}{p95:8.2f}{'-':>11}{'-':>11}{'-':>13}{'':>12}")
        else:
            print(f"{name:<24}{p50:8.2f}{p95:8.2f}{p50 - d50:11.2f}{p95 - d95:11.2f}{_pct(ovh, 95):13.2f}{target:>12}")
    print(f"\nThroughput, {N_THROUGHPUT} distinct {CLIP_S:g} s uploads (decode + analyse + rank each), jobs/s")
    print(f"{'in-process queue (1 engine process)':<40}{mem_tp:8.2f}")
    if red:
        print(f"{'redis, 1 worker (1 engine process)':<40}{red['throughput_1']:8.2f}")
        print(f"{'redis, 2 workers (1 engine process each)':<40}{red['throughput_2']:8.2f}"
              f"   ×{red['throughput_2'] / red['throughput_1']:.2f}")
        for n in (1, 2):
            st = red[f"stats_{n}"]
            print(f"  {n} worker(s): jobs per worker {st['jobs_per_worker']}, "
                  f"mean analysing stage {st['mean_analysing_s']:.2f} s/job")
    else:
        print("redis: skipped (no Redis at 127.0.0.1:6379)")
    OUT.mkdir(parents=True, exist_ok=True)
    summary = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_average": os.getloadavg()},
        "added_ms": {"memory_p50": _pct(mem["latency"], 50) - d50, "memory_p95": _pct(mem["latency"], 95) - d95,
                     **({"redis_p50": _pct(red["latency"], 50) - d50, "redis_p95": _pct(red["latency"], 95) - d95}
                        if red else {})},
        "n_latency": N_LATENCY, "n_throughput": N_THROUGHPUT, "clip_s": CLIP_S,
        "memory": {k: {"p50_ms": _pct(v, 50), "p95_ms": _pct(v, 95)} for k, v in mem.items()},
        "memory_throughput_jobs_s": mem_tp,
        "redis": ({k: {"p50_ms": _pct(v, 50), "p95_ms": _pct(v, 95)} for k, v in red.items() if isinstance(v, list)}
                  | {k: v for k, v in red.items() if k.startswith(("throughput", "stats"))}) if red else None,
    }
    (OUT / "queue.json").write_text(json.dumps(summary, indent=2))
    print(f"\nload average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"wrote {OUT / 'queue.json'}")


if __name__ == "__main__":
    asyncio.run(main())
