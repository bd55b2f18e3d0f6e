"""Query latency at catalog scale, with a profile: where a 10 s clip's CPU time goes at ~100 h.

    python -m bench.identify.latency [--hours 100] [--queries 40] [--save results.pkl] [--index-dir DIR]

Builds the same padded index as ``python -m bench.identify`` (dev tracks plus their
peaks at speeds outside the search range), times ``identify`` on the 10 s queries
(CPU time, decoding excluded; ``--repeat`` passes, each query's fastest kept) without
the profiler, then prints the top of a cProfile of one more pass. ``--save`` writes each
query's candidates, so two versions of the matcher can be checked for identical answers.
``--index-dir`` keeps the padded index there and reuses it on the next run (building
it takes ~10 min of CPU; the index format must not have changed in between).
"""

from __future__ import annotations

import argparse
import cProfile
import pickle
import pstats
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.identify import __main__ as bench
from engine.fingerprint import FP_SR, Calibration, fingerprint
from engine.fpindex import FingerprintIndex


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.identify.latency", description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=100.0)
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--save", type=Path)
    ap.add_argument("--index-dir", type=Path, help="keep (or reuse) the padded index here")
    ap.add_argument("--repeat", type=int, default=1, help="timed passes; each query's fastest counts")
    args = ap.parse_args(argv)
    tracks = bench.load_tracks(bench.MANIFEST, min_track_s=30.0, limit=None)
    indexed, held = bench.split_tracks(tracks, holdout=0.25)  # the main bench's default split
    path = args.index_dir or Path(tempfile.mkdtemp(prefix="fplatency-")) / "padded"
    if FingerprintIndex.stored_version(path) is None:
        building = path.with_name(path.name + ".building")  # renamed when complete: never reuse half an index
        shutil.rmtree(building, ignore_errors=True)
        fps = {tr.track_id: fingerprint(tr.y, sr=bench.GEN_SR) for tr in indexed}
        index = FingerprintIndex.open(building, create=True)
        index.add_many(fps.items())
        bench.pad_index(index, fps, target_hours=args.hours)
        building.rename(path)
    index = FingerprintIndex.open(path)
    hours = index.stats().audio_s / 3600
    queries = bench.make_queries(indexed, held, bench.conditions(False), n_in=30, n_out=15, seed=1)
    clips = [bench.load_query(q.path) for q in queries if q.condition.startswith("10s")][: args.queries]
    cal = Calibration()
    for y in clips[:3]:  # warm the page cache
        index.identify(y, sr=FP_SR, calibration=cal)
    answers, ms = [], np.full(len(clips), np.inf)
    for _ in range(max(args.repeat, 1)):
        answers = []
        for i, y in enumerate(clips):
            t0 = time.process_time()
            res = index.identify(y, sr=FP_SR, calibration=cal)
            ms[i] = min(ms[i], (time.process_time() - t0) * 1000)
            answers.append([(c.track_id, c.offset_s, c.score, c.speed, c.confidence, c.verified) for c in res.candidates])
    print(f"{hours:.0f} h index, {len(clips)} clips of 10 s: CPU ms p50 {np.median(ms):.0f}, "
          f"p95 {np.percentile(ms, 95):.0f}, max {ms.max():.0f} (target p95 <= 100; no profiler)")
    prof = cProfile.Profile()
    for y in clips:
        prof.enable()
        index.identify(y, sr=FP_SR, calibration=cal)
        prof.disable()
    if args.save:
        args.save.write_bytes(pickle.dumps(answers))
    pstats.Stats(prof).sort_stats("cumulative").print_stats(12)


if __name__ == "__main__":
    main()
