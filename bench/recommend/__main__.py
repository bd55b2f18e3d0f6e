"""Next-track prediction on a planted mix history, ALS training time, ranking latency.

    python -m bench.recommend --quick     # ~1-2 min
    python -m bench.recommend             # full: bigger catalog, ALS at 1M and 10M interactions

Leave-one-out: for each test mix the last track is hidden, the one before it
is the query; every method ranks the whole catalog. HR@10 / NDCG@10 for
popularity, item-kNN co-occurrence, ALS, content-only and the hybrid
(weights picked on a separate validation set, reported on the test set);
Wilcoxon signed-rank (per-query NDCG@10) between hybrid and the best baseline.
Results: table on stdout, JSON in bench/out/recommend/.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import itertools
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import wilcoxon

from bench.recommend.generator import Catalog, make_catalog, make_mixes, random_interactions
from engine import als
from engine.rank import Knobs, TrackFeatures, Weights, component_scores, rank_candidates

K = 10


@dataclass(frozen=True)
class Size:
    tracks: int
    scenes: int
    djs: int
    mixes: int
    test: int
    timing: tuple[int, ...]


QUICK = Size(tracks=3000, scenes=40, djs=300, mixes=4000, test=600, timing=(1_000_000,))
FULL = Size(tracks=10000, scenes=120, djs=1000, mixes=15000, test=1500, timing=(1_000_000, 10_000_000))


def _metrics(ranked: np.ndarray, target: int) -> tuple[float, float]:
    hits = np.flatnonzero(ranked[:K] == target)
    if hits.size == 0:
        return 0.0, 0.0
    return 1.0, 1.0 / np.log2(hits[0] + 2.0)


def _topk(scores: np.ndarray, exclude: int) -> np.ndarray:
    s = scores.astype(np.float64).copy()
    s[exclude] = -np.inf
    top = np.argpartition(-s, K)[:K]
    return top[np.argsort(-s[top], kind="stable")]


def split(mixes: list[list[int]], *, n_test: int, n_val: int, seed: int):
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(mixes))
    test_idx, val_idx = set(idx[:n_test].tolist()), set(idx[n_test:n_test + n_val].tolist())
    train, test, val = [], [], []
    for i, m in enumerate(mixes):
        if i in test_idx or i in val_idx:
            (test if i in test_idx else val).append((m[-2], m[-1]))
            train.append(m[:-1])  # the rest of the mix stays known
        else:
            train.append(m)
    return train, test, val


class Models:
    """Everything the methods need, fitted on the training mixes only."""

    def __init__(self, cat: Catalog, train: list[list[int]], *, params: als.AlsParams):
        n = cat.n
        self.cat = cat
        self.features = [
            TrackFeatures(i, float(cat.bpm[i]), cat.key[i], int(cat.energy[i]), cat.artist[i]) for i in range(n)
        ]
        counts = np.bincount(np.concatenate([np.array(m) for m in train]), minlength=n).astype(np.float64)
        self.popularity = counts
        self.cooc = als.cooccurrence_matrix(train, n_tracks=n, bpm=cat.bpm)
        deg = np.sqrt(np.asarray(self.cooc.sum(axis=1)).ravel()) + 1e-9
        self.deg = deg
        t0 = time.perf_counter()
        self.model = als.train_als(self.cooc, track_ids=np.arange(n), view="item", params=params, threads=2)
        self.als_seconds = time.perf_counter() - t0

    def popular(self, q: int) -> np.ndarray:
        return _topk(self.popularity, q)

    def knn_scores(self, q: int) -> np.ndarray:
        row = self.cooc.getrow(q)
        s = np.zeros(self.cat.n)
        s[row.indices] = row.data / (self.deg[q] * self.deg[row.indices])
        return s + 1e-6 * self.popularity / self.popularity.max()  # ties → popular first

    def als_scores(self, q: int) -> np.ndarray:
        return als.affinity(self.model, q).astype(np.float64)

    def sound_scores(self, q: int) -> np.ndarray:
        return np.clip(self.cat.vectors @ self.cat.vectors[q], 0.0, 1.0).astype(np.float64)

    def content_scores(self, q: int, weights: Weights) -> np.ndarray:
        parts = component_scores(self.features[q], self.features, weights=weights)
        return (
            weights.key * parts["key"] + weights.tempo * parts["tempo"] + weights.energy * parts["energy"]
            + weights.sound * self.sound_scores(q) - weights.tempo_clash * parts["clash"]
        )


def hybrid_candidates(m: Models, q: int, *, n_each: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidates from ALS ∪ co-occurrence ∪ sounds-like ∪ harmonic/tempo neighbours.

    Returns candidate ids and their ALS and co-occurrence scores scaled to [0, 1] within the set.
    """
    a = m.als_scores(q)
    knn_all = m.knn_scores(q)
    parts = component_scores(m.features[q], m.features, weights=Weights())
    fit = parts["key"] + parts["tempo"]
    cands: set[int] = set()
    for scores in (a, knn_all, m.sound_scores(q), fit):
        cands.update(_topk_n(scores, q, n_each).tolist())
    cand = np.array(sorted(cands))
    return cand, als.unit_scores(a[cand]), als.unit_scores(knn_all[cand])


def hybrid_rank(m: Models, q: int, *, weights: Weights, knn_mix: float) -> np.ndarray:
    """The real ranker (engine.rank.rank_candidates) over the hybrid candidates."""
    cand, a, knn = hybrid_candidates(m, q)
    cf = (1 - knn_mix) * a + knn_mix * knn
    s = m.sound_scores(q)[cand]
    ranked = rank_candidates(
        m.features[q], [m.features[i] for i in cand], weights=weights, knobs=Knobs(),
        sound=dict(zip(cand.tolist(), s.tolist())), coplay=dict(zip(cand.tolist(), cf.tolist())),
        diversity=None, limit=K,
    )
    return np.array([r.track_id for r in ranked])


def tune(m: Models, pairs) -> tuple[Weights, float, list]:
    """Grid search of the score's weights on validation pairs (parts computed once per query)."""
    cached = []
    for q, target in pairs:
        cand, a, knn = hybrid_candidates(m, q)
        parts = component_scores(m.features[q], [m.features[i] for i in cand], weights=Weights())
        hit = np.flatnonzero(cand == target)
        cached.append((np.stack([parts["key"], parts["tempo"], parts["energy"], m.sound_scores(q)[cand], a, knn, -parts["clash"]]), hit))
    grid = []
    for wk in (0.35, 0.7, 1.2):
        for wt in (0.3, 0.6, 1.0):
            for we in (0.1, 0.3):
                for ws in (0.15, 0.4):
                    for wc in (1.0, 2.5, 4.0):
                        for mix, wx in itertools.product((0.3, 0.5, 0.8), (0.0, 0.3)):
                            w = np.array([wk, wt, we, ws, wc * (1 - mix), wc * mix, wx])
                            nd = 0.0
                            for comp, hit in cached:
                                if hit.size == 0:
                                    continue
                                total = w @ comp
                                rank = int(np.sum(total > total[hit[0]]))
                                if rank < K:
                                    nd += 1.0 / np.log2(rank + 2.0)
                            grid.append((nd / len(pairs), wk, wt, we, ws, wc, mix, wx))
    best = max(grid)
    _, wk, wt, we, ws, wc, mix, wx = best
    return Weights(key=wk, tempo=wt, energy=we, sound=ws, coplay=wc, tempo_clash=wx), mix, sorted(grid, reverse=True)[:5]


def _topk_n(scores: np.ndarray, exclude: int, n: int) -> np.ndarray:
    s = scores.astype(np.float64).copy()
    s[exclude] = -np.inf
    n = min(n, len(s) - 1)
    return np.argpartition(-s, n)[:n]


def evaluate(m: Models, pairs, method) -> tuple[np.ndarray, np.ndarray]:
    hr, nd = np.zeros(len(pairs)), np.zeros(len(pairs))
    for i, (q, target) in enumerate(pairs):
        hr[i], nd[i] = _metrics(method(q), target)
    return hr, nd


def time_als(n: int, *, n_tracks: int, params: als.AlsParams) -> dict:
    mat = random_interactions(n, n_tracks=n_tracks)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    model = als.train_als(mat, track_ids=np.arange(n_tracks), view="mix", params=params, threads=2)
    return {
        "interactions": int(mat.nnz), "mixes": int(mat.shape[0]), "tracks": n_tracks,
        "wall_s": round(time.perf_counter() - wall0, 2), "cpu_s": round(time.process_time() - cpu0, 2),
        "device": model.metrics["device"],
    }


def time_ranking(m: Models, *, n_candidates: int = 1000, repeats: int = 200, seed: int = 5) -> dict:
    rng = np.random.default_rng(seed)
    n_candidates = min(n_candidates, m.cat.n - 1)
    times, cpu = [], []
    for r in range(repeats):
        q = int(rng.integers(m.cat.n))
        cand = rng.choice(np.delete(np.arange(m.cat.n), q), size=n_candidates, replace=False)
        feats = [m.features[i] for i in cand]
        sound = dict(zip(cand.tolist(), rng.random(n_candidates).tolist()))
        cf = dict(zip(cand.tolist(), rng.random(n_candidates).tolist()))
        vecs = {int(i): m.cat.vectors[i] for i in cand}
        t0, c0 = time.perf_counter(), time.process_time()
        rank_candidates(m.features[q], feats, sound=sound, coplay=cf, vectors=vecs, limit=K)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    t = np.array(times[5:]) * 1000  # first calls warm caches
    c = np.array(cpu[5:]) * 1000
    return {"candidates": n_candidates, "median_ms": round(float(np.median(t)), 3),
            "p95_ms": round(float(np.percentile(t, 95)), 3), "cpu_median_ms": round(float(np.median(c)), 3)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.recommend", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small catalog, ALS timing at 1M only (~1-2 min)")
    ap.add_argument("--skip-timing", action="store_true", help="no ALS timing runs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("bench/out/recommend"))
    defaults = als.AlsParams()
    ap.add_argument("--iterations", type=int, default=defaults.iterations, help="ALS sweeps")
    ap.add_argument("--cg-steps", type=int, default=defaults.cg_steps, help="conjugate-gradient steps per half-sweep")
    args = ap.parse_args(argv)
    size = QUICK if args.quick else FULL
    params = als.AlsParams(iterations=args.iterations, cg_steps=args.cg_steps)
    t_start = time.perf_counter()

    cat = make_catalog(size.tracks, n_scenes=size.scenes, seed=args.seed)
    mixes, _ = make_mixes(cat, n_djs=size.djs, n_mixes=size.mixes, seed=args.seed + 1)
    train, test, val = split(mixes, n_test=size.test, n_val=size.test // 2, seed=args.seed + 2)
    m = Models(cat, train, params=params)
    interactions = sum(len(x) for x in train)

    # hybrid weights: a grid on the validation pairs only
    t0 = time.perf_counter()
    hybrid_w, best_knn_mix, grid = tune(m, val)
    tune_s = time.perf_counter() - t0
    content_w = Weights(coplay=0.0)

    methods = {
        "popularity": m.popular,
        "item-kNN co-occurrence": lambda q: _topk(m.knn_scores(q), q),
        "ALS (item×item)": lambda q: _topk(m.als_scores(q), q),
        "content-only": lambda q: _topk(m.content_scores(q, content_w), q),
        "hybrid": lambda q: hybrid_rank(m, q, weights=hybrid_w, knn_mix=best_knn_mix),
    }
    results = {}
    per_query = {}
    for name, fn in methods.items():
        t0 = time.perf_counter()
        hr, nd = evaluate(m, test, fn)
        per_query[name] = nd
        results[name] = {"hr@10": float(hr.mean()), "ndcg@10": float(nd.mean()),
                         "ms_per_query": round((time.perf_counter() - t0) / len(test) * 1000, 2)}
    baselines = [n for n in methods if n != "hybrid"]
    best = max(baselines, key=lambda n: results[n]["hr@10"])
    stat = wilcoxon(per_query["hybrid"], per_query[best], zero_method="wilcox", alternative="two-sided")
    lift = results["hybrid"]["hr@10"] / max(results[best]["hr@10"], 1e-12) - 1.0

    timing = [] if args.skip_timing else [time_als(n, n_tracks=max(20_000, n // 50), params=params) for n in size.timing]
    latency = time_ranking(m)

    print(f"\nmixwith bench/recommend ({'quick' if args.quick else 'full'}): {size.tracks} tracks, {len(mixes)} mixes "
          f"({interactions} training plays), {len(test)} test queries, seed {args.seed}")
    print(f"hybrid weights tuned on {len(val)} validation queries in {tune_s:.0f} s: key={hybrid_w.key} "
          f"tempo={hybrid_w.tempo} tempo_clash={hybrid_w.tempo_clash} energy={hybrid_w.energy} sound={hybrid_w.sound} coplay={hybrid_w.coplay} "
          f"(co-occurrence share of CF {best_knn_mix}); validation NDCG@10 {grid[0][0]:.3f}\n")
    print(f"{'method':<26}{'HR@10':>8}{'NDCG@10':>9}{'ms/query':>10}")
    for name, r in results.items():
        print(f"{name:<26}{r['hr@10']:>8.3f}{r['ndcg@10']:>9.3f}{r['ms_per_query']:>10.2f}")
    print(f"\nhybrid vs best baseline ({best}): HR@10 {lift:+.1%} relative; "
          f"Wilcoxon signed-rank on per-query NDCG@10: W={stat.statistic:.1f}, p={stat.pvalue:.2e}")
    print(f"  target: >= +10% and p < 0.01 -> {'MET' if lift >= 0.10 and stat.pvalue < 0.01 else 'NOT MET'}")
    print(f"ALS on the benchmark's item×item matrix ({m.cooc.nnz} nonzeros): {m.als_seconds:.1f} s")
    for t in timing:
        print(f"ALS mix×track, {t['interactions']:>10,} interactions ({t['mixes']} mixes × {t['tracks']} tracks, "
              f"{params.factors} factors, {params.iterations} iterations, 2 threads): wall {t['wall_s']} s, "
              f"CPU {t['cpu_s']} s ({t['device']})  target <= 60 s at 10M")
    print(f"ranking {latency['candidates']} candidates (score + reasons + diversity, top {K}): "
          f"median {latency['median_ms']} ms wall ({latency['cpu_median_ms']} ms CPU), p95 {latency['p95_ms']} ms  "
          "target <= 10 ms")
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.1f} during the run; total {time.perf_counter() - t_start:.0f} s")

    args.out.mkdir(parents=True, exist_ok=True)
    out = {
        "mode": "quick" if args.quick else "full", "size": size.__dict__, "seed": args.seed,
        "results": results, "best_baseline": best, "hr_lift": lift,
        "wilcoxon": {"statistic": float(stat.statistic), "p": float(stat.pvalue)},
        "hybrid_weights": {**{k: getattr(hybrid_w, k) for k in ("key", "tempo", "energy", "sound", "coplay")},
                           "knn_mix": best_knn_mix}, "grid_top5": grid,
        "als_item_view_s": m.als_seconds, "als_timing": timing, "ranking_latency": latency,
        "als_params": params.__dict__, "loadavg": load, "python": platform.python_version(),
    }
    path = args.out / f"{out['mode']}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(out, indent=2, default=str))
    print(f"results: {path}")


if __name__ == "__main__":
    main()
