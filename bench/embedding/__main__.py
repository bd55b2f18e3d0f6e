"""Sounds-like benchmark: our CNN vs the MFCC/chroma/tonnetz/contrast baseline vs random, and Annoy at scale.

    python -m bench.embedding [--quick] [--manifest PATH] [--weights PATH] [--split-seed N] [--track-hop S]
                              [--clips-per-track N] [--threads N]
                              [--ann-items N] [--ann-trees N] [--ann-queries N] [--ann-jobs N]

(a) a 10 s window, clean and voice-memo degraded (AAC 32 kb/s, band-pass, room,
    noise at 5-15 dB SNR), finds its own track among all dev tracks: top-1 / top-10;
    queries are the held-out tracks the model never trained on (and, for reference, all tracks):
    the split recorded with the weights (``mixwith train embedder --split-seed``, default the training seed),
    N seeded windows per track (default 4; the first is the single window of earlier runs);
    the clip is matched by its mean vector against track means (``cnn``) and window by window
    against the tracks' stored windows (``cnn_win_max`` / ``cnn_win_top3``, engine.index.window_match_scores);
(b) same-soundtrack precision@5 (one Debian package = one weak style label), queries held out;
(c) embedding speed × realtime on one CPU thread;
(d) Annoy on synthetic clustered 128-d vectors: build, mmap load, recall@10 vs exact, p50/p99 latency.

Prints a table; writes JSON to bench/out/embedding.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

OUT_DIR = Path(__file__).resolve().parents[1] / "out"
TRACK_CAP_S = 1200.0  # whole tracks (the decode limit is 20 min): a memo may come from anywhere
CLIP_SEED_STRIDE = 100_003  # clip c of track i is drawn with seed 10_007 + i + c * stride
# (a) methods: track mean vs clip mean; clip windows vs stored track windows (best / mean of best 3); librosa
A_METHODS = ("cnn", "cnn_win_max", "cnn_win_top3", "baseline")


def _baseline_vector(y: np.ndarray, sr: int) -> np.ndarray:
    """The seeds' baseline: mean MFCC(20) + chroma(12) + tonnetz(6) + spectral contrast(7)."""
    import librosa

    S = np.abs(librosa.stft(y, n_fft=2048, hop_length=512))
    mel = librosa.feature.melspectrogram(S=S**2, sr=sr)
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel), sr=sr, n_mfcc=20)
    chroma = librosa.feature.chroma_stft(S=S**2, sr=sr)
    tonnetz = librosa.feature.tonnetz(chroma=chroma, sr=sr)
    contrast = librosa.feature.spectral_contrast(S=S, sr=sr)
    return np.concatenate([f.mean(axis=1) for f in (mfcc, chroma, tonnetz, contrast)]).astype(np.float32)


class _BaselineCache:
    """Librosa baseline vectors on disk, keyed by file identity and excerpt: they do not depend on the weights.

    The baseline is most of this bench's CPU time; comparing several weights files recomputed it each time.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, np.ndarray] = dict(np.load(path)) if path.is_file() else {}
        self.dirty = False

    def get(self, file: Path, what: str, compute) -> np.ndarray:
        st = file.stat()
        key = hashlib.sha1(f"{file.resolve()}|{st.st_size}|{int(st.st_mtime)}|{what}".encode()).hexdigest()[:24]
        if key not in self.data:
            self.data[key] = compute()
            self.dirty = True
        return self.data[key]

    def save(self) -> None:
        if self.dirty:
            tmp = self.path.with_name(self.path.name + ".tmp.npz")
            np.savez(tmp, **self.data)
            os.replace(tmp, self.path)


def _standardise(v: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """z-score with the catalog's statistics (cosine on raw MFCCs is dominated by MFCC 0), then unit rows."""
    z = (v - ref.mean(axis=0)) / (ref.std(axis=0) + 1e-8)
    return z / np.maximum(np.linalg.norm(z, axis=-1, keepdims=True), 1e-12)


def _ranks(db: np.ndarray, queries: np.ndarray, own: np.ndarray) -> np.ndarray:
    sims = queries @ db.T
    return (sims > sims[np.arange(len(own)), own][:, None]).sum(axis=1)


def _hits_at_k(db: np.ndarray, labels: np.ndarray, rows: np.ndarray, pool: np.ndarray, k: int) -> np.ndarray:
    """Per query row: how many of its k nearest (within ``pool``, query excluded) share its label."""
    out = []
    for r in rows:
        cand = pool[pool != r]
        sims = db[cand] @ db[r]
        top = cand[np.argsort(-sims, kind="stable")[:k]]
        out.append(int((labels[top] == labels[r]).sum()))
    return np.array(out)


def _precision_at_k(db: np.ndarray, labels: np.ndarray, rows: np.ndarray, pool: np.ndarray, k: int) -> float:
    """Mean share of the k nearest (within ``pool``, query excluded) sharing the query's label."""
    return float(np.mean(_hits_at_k(db, labels, rows, pool, k) / k))


def _random_precision(labels: np.ndarray, rows: np.ndarray, pool: np.ndarray, k: int, *, seed: int) -> float:
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(200):
        db = rng.standard_normal((len(labels), 16))
        vals.append(_precision_at_k(db, labels, rows, pool, k))
    return float(np.mean(vals))


def bench_retrieval(args: argparse.Namespace) -> dict:
    import torch

    from engine.device import configure_cpu_threads
    from engine.embed.features import SAMPLE_RATE
    from engine.embed.model import Embedder, mean_vector, read_sidecar
    from engine.embed.train import degraded_clip
    from engine.index import window_match_scores
    from workers.embedding import load_devset, weights_held_out

    configure_cpu_threads(args.threads)
    meta = read_sidecar(args.weights)
    emb, _ = Embedder.from_path(args.weights)
    sr = SAMPLE_RATE
    ds = load_devset(args.manifest, cache_dir=args.cache_dir, sr=sr, limit=args.limit)
    ids = [e.track_id for e in ds.entries]
    labels = np.array([e.package for e in ds.entries])
    # the weights' own held-out tracks (or another split they never trained on); refused otherwise
    split_seed, held_ids = weights_held_out(meta, ids, list(labels), split_seed=args.split_seed)
    held = np.array([i for i, t in enumerate(ids) if t in held_ids])
    everyone = np.arange(len(ids))
    cap = int(TRACK_CAP_S * sr)
    logger.info("%d tracks, %d held out (split seed %d)", len(ids), len(held), split_seed)

    hop = args.track_hop
    t0 = time.process_time()
    cnn_windows = [emb.embed_windows(ds.clean[i][:cap].astype(np.float32), sr=sr, hop_s=hop) for i in everyone]
    cnn_db = np.stack([mean_vector(w) for w in cnn_windows])
    t_cnn = time.process_time() - t0
    ref_windows = np.concatenate(cnn_windows)
    ref_owner = np.concatenate([np.full(len(w), i) for i, w in zip(everyone, cnn_windows)])
    base_cache = _BaselineCache(Path(args.cache_dir) / "bench-embedding-baseline.npz")
    t_base, base_seconds = 0.0, 0.0

    def timed_baseline(i: int) -> np.ndarray:
        nonlocal t_base, base_seconds
        t0 = time.process_time()
        v = _baseline_vector(ds.clean[i][:cap].astype(np.float32), sr)
        t_base += time.process_time() - t0
        base_seconds += min(len(ds.clean[i]), cap) / sr
        return v

    base_raw = np.stack([base_cache.get(ds.entries[i].path, f"track|{cap}|{sr}", lambda i=i: timed_baseline(i))
                         for i in everyone])
    base_db = _standardise(base_raw, base_raw)

    # Several seeded 10 s windows per track (clip 0 is the single window of earlier runs), the same for
    # every method; one held-out query is 6.7 points, so the single-window figure is mostly noise.
    n_clips = args.clips_per_track
    res: dict = {"n_tracks": len(ids), "n_held_out": int(len(held)), "split_seed": split_seed,
                 "held_out_ids": sorted(held_ids), "weights_version": meta.get("version"),
                 "track_hop_s": hop, "clips_per_track": n_clips, "methods": list(A_METHODS)}
    for deg in (False, True):
        name = "degraded" if deg else "clean"
        ranks = {m: np.empty((n_clips, len(ids)), np.int64) for m in A_METHODS}
        for c in range(n_clips):
            for i in everyone:
                clip = degraded_clip(ds.clean[i], ds.codec[i], sr=sr, clip_s=10.0,
                                     seed=10_007 + int(i) + CLIP_SEED_STRIDE * c, degrade_it=deg)
                q_win = emb.embed_windows(clip, sr=sr, hop_s=1.0)
                q_mean = mean_vector(q_win)
                q_base = _standardise(base_cache.get(
                    ds.entries[i].path, f"clip|{10_007 + int(i) + CLIP_SEED_STRIDE * c}|{deg}|{sr}",
                    lambda clip=clip: _baseline_vector(clip, sr))[None], base_raw)[0]
                scores = {
                    "cnn": cnn_db @ q_mean,
                    "cnn_win_max": window_match_scores(q_win, ref_windows, ref_owner, n_tracks=len(ids), top_k=1),
                    "cnn_win_top3": window_match_scores(q_win, ref_windows, ref_owner, n_tracks=len(ids), top_k=3),
                    "baseline": base_db @ q_base,
                }
                for m, sc in scores.items():
                    ranks[m][c, i] = int((sc > sc[i]).sum())
        base_cache.save()
        for m in A_METHODS:
            for part, rows in (("held_out", held), ("all", everyone)):
                single, multi = ranks[m][0, rows], ranks[m][:, rows]
                res[f"a_{m}_{name}_{part}_top1"] = float((single < 1).mean())
                res[f"a_{m}_{name}_{part}_top10"] = float((single < 10).mean())
                res[f"a_{m}_{name}_{part}_multi_top1"] = float((multi < 1).mean())
                res[f"a_{m}_{name}_{part}_multi_top10"] = float((multi < 10).mean())
    for part, pool in (("vs_catalog", everyone), ("within_held_out", held)):
        for method, db in (("cnn", cnn_db), ("baseline", base_db)):
            hits = _hits_at_k(db, labels, held, pool, 5)
            res[f"b_{method}_p5_{part}"] = float(np.mean(hits / 5))  # as _precision_at_k, hits kept
            if part == "vs_catalog":  # per held-out query (one is 1/15 of the mean): what the margin rests on
                res[f"b_{method}_hits5_vs_catalog"] = {ids[r]: int(h) for r, h in zip(held, hits)}
        res[f"b_random_p5_{part}"] = _random_precision(labels, held, pool, 5, seed=1)

    # (c) speed on one thread, whole pipeline from waveform (front end included).
    torch.set_num_threads(1)
    longest = max(everyone, key=lambda i: len(ds.clean[i]))
    y = ds.clean[longest][: int(300 * sr)].astype(np.float32)
    emb.embed_track(y[: 30 * sr], sr=sr, hop_s=hop)  # warm-up
    # On one thread, process CPU time is the core's time even when other jobs share the machine;
    # wall time is reported beside it (best of three).
    cpu, wall = [], []
    for _ in range(3):
        c0, t0 = time.process_time(), time.perf_counter()
        emb.embed_track(y, sr=sr, hop_s=hop)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - t0)
    res["c_cnn_x_realtime_per_core"] = len(y) / sr / min(cpu)
    res["c_cnn_x_realtime_wall_best"] = len(y) / sr / min(wall)
    # only the tracks not already in the baseline cache were timed (nan when all were cached)
    res["c_baseline_x_realtime_per_core"] = float(base_seconds / t_base) if t_base > 0 else float("nan")
    res["c_cnn_catalog_x_realtime_per_cpu_second"] = float(sum(min(len(c), cap) for c in ds.clean) / sr / t_cnn)
    torch.set_num_threads(args.threads)
    return res


def _exact_top10(data: np.ndarray, queries: np.ndarray, chunk: int = 50) -> np.ndarray:
    """Exact top-10 ids by cosine, a few queries at a time (a full argsort of 1000 x 1M would need 8 GB)."""
    out = np.empty((len(queries), 10), np.int64)
    for s in range(0, len(queries), chunk):
        sims = queries[s : s + chunk] @ data.T
        part = np.argpartition(-sims, 10, axis=1)[:, :10]
        order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1)
        out[s : s + chunk] = np.take_along_axis(part, order, axis=1)
    return out


def bench_annoy(args: argparse.Namespace) -> dict:
    from annoy import AnnoyIndex

    n, d = args.ann_items, 128
    rng = np.random.default_rng(0)
    # Track vectors cluster by style; uniform Gaussian data would be the unrealistic worst case.
    n_centres = max(10, n // 500)
    centres = rng.standard_normal((n_centres, d)).astype(np.float32)
    data = np.empty((n, d), np.float32)
    for s in range(0, n, 100_000):
        e = min(n, s + 100_000)
        data[s:e] = centres[rng.integers(0, n_centres, e - s)] + 0.7 * rng.standard_normal((e - s, d)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    nq = args.ann_queries
    queries = centres[rng.integers(0, n_centres, nq)] + 0.7 * rng.standard_normal((nq, d)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    exact = _exact_top10(data, queries)

    res = {"d_items": n, "d_trees": args.ann_trees, "d_queries": nq, "d_build_jobs": args.ann_jobs}
    with tempfile.TemporaryDirectory(dir=args.tmp_dir) as tmp:
        path = os.path.join(tmp, "bench.ann")
        t0, c_build = time.perf_counter(), time.process_time()
        ann = AnnoyIndex(d, "angular")
        ann.set_seed(0)
        for i in range(n):
            ann.add_item(i, data[i])
        ann.build(args.ann_trees, n_jobs=args.ann_jobs)
        ann.save(path)
        res["d_build_s"] = time.perf_counter() - t0
        res["d_build_cpu_s"] = time.process_time() - c_build
        res["d_file_mb"] = os.path.getsize(path) / 1e6
        ann.unload()
        del ann
        loads = []
        for _ in range(5):
            t0 = time.perf_counter()
            idx = AnnoyIndex(d, "angular")
            idx.load(path, prefault=False)
            loads.append(time.perf_counter() - t0)
            if len(loads) < 5:
                idx.unload()
        res["d_load_ms"] = 1000 * float(np.median(loads))
        for q in queries:  # warm the page cache, as a serving worker's would be
            idx.get_nns_by_vector(q, 10, search_k=max(args.search_k))
        sweeps = []
        for search_k in args.search_k:
            lat, cpu, recall = [], [], []
            for qi in range(nq):
                c0, t0 = time.thread_time(), time.perf_counter()
                got = idx.get_nns_by_vector(queries[qi], 10, search_k=search_k)
                lat.append(time.perf_counter() - t0)
                cpu.append(time.thread_time() - c0)
                recall.append(len(set(got) & set(exact[qi].tolist())) / 10)
            sweeps.append({"search_k": search_k, "recall10": float(np.mean(recall)),
                           "p50_ms": 1000 * float(np.percentile(lat, 50)), "p99_ms": 1000 * float(np.percentile(lat, 99)),
                           "cpu_p50_ms": 1000 * float(np.percentile(cpu, 50)),
                           "cpu_p99_ms": 1000 * float(np.percentile(cpu, 99))})
        idx.unload()
    res["d_sweep"] = sweeps
    return res


def _table(res: dict) -> str:
    lines = []
    a = res.get("retrieval")
    if a:
        lines.append(f"dev set: {a['n_tracks']} tracks >= 5 s, {a['n_held_out']} held out (never trained on; "
                     f"split seed {a.get('split_seed', 0)}); "
                     f"weights {a['weights_version']}; track vectors from 3 s windows every "
                     f"{a.get('track_hop_s') or 3.0:g} s")
        lines.append("")
        n_clips = a.get("clips_per_track", 1)
        lines.append(f"(a) 10 s window -> own track top1 / top10: one window per track (as before), "
                     f"and {n_clips} seeded windows per track")
        lines.append("    method        queries             one window       " + f"{n_clips} windows")
        for name in ("clean", "degraded"):
            for part in ("held_out", "all"):
                for m in a.get("methods", ("cnn", "baseline")):
                    k = f"a_{m}_{name}_{part}"
                    multi = (f"{a[k + '_multi_top1']:6.3f} / {a[k + '_multi_top10']:5.3f}"
                             if k + "_multi_top1" in a else "")
                    lines.append(f"    {m:12s}  {name:8s} {part:8s}  {a[k + '_top1']:6.3f} / {a[k + '_top10']:5.3f}  "
                                 f"{multi}")
        lines.append("")
        lines.append("(b) same-soundtrack precision@5   CNN      baseline  random   CNN-baseline")
        for part in ("vs_catalog", "within_held_out"):
            c, b, r = a[f"b_cnn_p5_{part}"], a[f"b_baseline_p5_{part}"], a[f"b_random_p5_{part}"]
            lines.append(f"    held-out queries {part:16s} {c:6.3f}  {b:8.3f}  {r:7.3f}  {c - b:+9.3f}")
        if "b_cnn_hits5_vs_catalog" in a:
            cnn_hits, base_hits = a["b_cnn_hits5_vs_catalog"], a["b_baseline_hits5_vs_catalog"]
            lines.append("    hits in top 5 vs catalog, CNN/baseline: "
                         + " ".join(f"{q} {h}/{base_hits[q]}" for q, h in cnn_hits.items()))
        lines.append("")
        lines.append(f"(c) CNN embedding, 1 thread: {a['c_cnn_x_realtime_per_core']:.0f}x realtime per core-second of CPU "
                     f"(wall clock on this shared machine: {a['c_cnn_x_realtime_wall_best']:.0f}x); catalog pass "
                     f"{a['c_cnn_catalog_x_realtime_per_cpu_second']:.0f}x per CPU-second; "
                     + (f"librosa baseline features {a['c_baseline_x_realtime_per_core']:.0f}x per CPU-second"
                      if a['c_baseline_x_realtime_per_core'] == a['c_baseline_x_realtime_per_core']
                      else "librosa baseline features read from the bench cache (not timed)"))
    d = res.get("annoy")
    if d:
        lines.append("")
        lines.append(f"(d) Annoy angular, {d['d_items']:,} synthetic clustered 128-d vectors, {d['d_trees']} trees, "
                     f"{d.get('d_queries', 200)} queries, build n_jobs={d.get('d_build_jobs', -1)}: "
                     f"build {d['d_build_s']:.1f} s wall ({d.get('d_build_cpu_s', float('nan')):.0f} CPU-s), file {d['d_file_mb']:.0f} MB, mmap load {d['d_load_ms']:.2f} ms")
        lines.append("    search_k   recall@10   wall p50 ms   wall p99 ms   CPU p50 ms   CPU p99 ms")
        for s in d["d_sweep"]:
            lines.append(f"    {s['search_k']:8d}   {s['recall10']:9.3f}   {s['p50_ms']:11.3f}   {s['p99_ms']:11.3f}"
                         f"   {s['cpu_p50_ms']:10.3f}   {s['cpu_p99_ms']:10.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from engine.embed.model import DEFAULT_WEIGHTS, HOP_S

    p = argparse.ArgumentParser(prog="python -m bench.embedding", description=__doc__.split("\n")[0])
    p.add_argument("--manifest", default="/work/devmusic/manifest.tsv")
    p.add_argument("--cache-dir", default="/work/cache/embed16k")
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    p.add_argument("--limit", type=int, default=None, help="only the first N manifest rows")
    p.add_argument("--split-seed", type=int, default=None,
                   help="held-out split to query (engine.embed.train.holdout_split seed); default: the one the "
                        "weights' sidecar records; a split holding out tracks the weights trained on is refused")
    p.add_argument("--track-hop", type=float, default=HOP_S,
                   help="seconds between the 3 s windows averaged into a track vector")
    p.add_argument("--threads", type=int, default=1, help="torch threads for (a)/(b) (the machine is shared)")
    p.add_argument("--clips-per-track", type=int, default=4,
                   help="seeded 10 s query windows per track for (a); the first is the one earlier runs used")
    p.add_argument("--quick", action="store_true", help="Annoy at 100k items instead of 1M")
    p.add_argument("--ann-items", type=int, default=None)
    p.add_argument("--ann-trees", type=int, default=50)
    p.add_argument("--ann-queries", type=int, default=200, help="queries timed per search_k")
    p.add_argument("--ann-jobs", type=int, default=1, help="Annoy build threads (-1 = all cores)")
    p.add_argument("--search-k", type=int, nargs="+", default=[1000, 3000, 10000])
    p.add_argument("--skip-retrieval", action="store_true")
    p.add_argument("--skip-annoy", action="store_true")
    p.add_argument("--tmp-dir", default=None)
    p.add_argument("--tag", default="", help="suffix of the output files in bench/out/")
    args = p.parse_args(argv)
    if args.ann_items is None:
        args.ann_items = 100_000 if args.quick else 1_000_000
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    res: dict = {"args": {k: v for k, v in vars(args).items()}}
    if not args.skip_retrieval:
        from engine.errors import ParameterError

        try:
            res["retrieval"] = bench_retrieval(args)
        except ParameterError as exc:  # e.g. a --split-seed the weights trained on
            p.error(str(exc))
    if not args.skip_annoy:
        res["annoy"] = bench_annoy(args)
    table = _table(res)
    print(table)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    stem = "embedding" + (f"-{args.tag}" if args.tag else "")
    (OUT_DIR / f"{stem}.json").write_text(json.dumps(res, indent=2, default=str) + "\n", encoding="utf-8")
    (OUT_DIR / f"{stem}.txt").write_text(table + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
