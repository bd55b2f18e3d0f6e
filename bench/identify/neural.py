"""Neural audio fingerprint on the identify bench: train (models G and C) and evaluate offline.

    python -m bench.identify.neural train --model G --out /tmp/fpnet-g.pt --extra-dir /tmp/nfp_data/gen
    python -m bench.identify.neural train --model C --out /tmp/fpnet-c.pt
    python -m bench.identify.neural eval --weights /tmp/fpnet-g.pt --weights /tmp/fpnet-c.pt

Training protocol (the bench's split: ``load_tracks`` + ``split_tracks``; 64 dev tracks ≥ 30 s, 48
indexed, 16 held out): model **G** trains on audio disjoint from all 64 bench tracks (the shorter dev
files and ``--extra-dir`` audio), model **C** on the 48 indexed tracks. Neither sees a held-out track
or the bench's crowd generator.

Evaluation reads the bench's cached queries (never regenerates them): seed 1001's set fits the
acceptance threshold (≤ 1 % of its out-of-catalog clips pass), seed 1's set is the test. Clips of
held-out tracks that contain catalog audio (``shared_audio``) are counted apart, as the bench does.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import bench.identify.__main__ as ident
from engine.audio import DecodeLimits, load, resample
from engine.device import configure_cpu_threads, select_device
from engine.fingerprint import FP_SR, Calibration, fingerprint
from engine.fpindex import FingerprintIndex
from bench.identify.fpnet.model import FP_NET_SR, HOP_S, FpNet, FpNetConfig, count_parameters, load_model, save_model, segment_vectors
from bench.identify.fpnet.search import ReferenceSet, SegmentMatch, match_segments
from bench.identify.fpnet.train import FpTrainConfig, train_fpnet

logger = logging.getLogger("bench.identify.neural")

BENCH_OUT = ident.OUT  # where `python -m bench.identify` keeps its decoded tracks and queries
REFIT = "refit:landmark"


def bench_tracks(bench_out: Path) -> tuple[list[ident.Track], list[ident.Track], list[ident.Track]]:
    """(all bench tracks, indexed, held out) from the bench's decoded cache under ``bench_out``."""
    tracks = ident.load_tracks(ident.MANIFEST, min_track_s=30.0, limit=None, out=bench_out)
    indexed, held = ident.split_tracks(tracks, holdout=0.25)
    return tracks, indexed, held


def _load_any(path: Path) -> np.ndarray:
    """A .npy of int16 at the bench's 16 kHz (its cache format), or any audio file, as float32 at 8 kHz."""
    if path.suffix == ".npy":
        y = np.load(path).astype(np.float32) / 32767.0
        return resample(y, orig_sr=ident.GEN_SR, target_sr=FP_NET_SR)
    return load(path, sr=FP_NET_SR, limits=DecodeLimits(min_duration_s=0.1, max_duration_s=1800), check_silence=False)


def training_audio(which: str, *, bench_out: Path, extra_dirs: list[Path]) -> tuple[list[np.ndarray], list[str]]:
    """Training arrays at 8 kHz and their names for model ``G`` (disjoint from the 64 bench tracks) or ``C``."""
    tracks, indexed, _held = bench_tracks(bench_out)
    if which == "C":
        return [resample(t.y, orig_sr=ident.GEN_SR, target_sr=FP_NET_SR) for t in indexed], [t.key for t in indexed]
    bench_keys = {t.key for t in tracks}
    files = [f for f in sorted((bench_out / "cache").glob("*.npy")) if f.stem not in bench_keys]
    for d in extra_dirs:
        files += sorted(p for p in d.iterdir() if p.is_file())
    return [_load_any(f) for f in files], [str(f) for f in files]


def cmd_train(args: argparse.Namespace) -> int:
    configure_cpu_threads(args.threads)
    audio, names = training_audio(args.model, bench_out=args.bench_out, extra_dirs=args.extra_dir)
    total_s = sum(a.size for a in audio) / FP_NET_SR
    print(f"model {args.model}: {len(audio)} files, {total_s / 60:.1f} min of audio")
    cfg = FpTrainConfig(steps=args.steps, batch=args.batch, seed=args.seed, lr=args.lr,
                        crowd_snr_db=tuple(args.crowd_snr_db), p_crowd=args.p_crowd)
    mcfg = FpNetConfig(dim=args.dim)
    res = train_fpnet(audio, sr=FP_NET_SR, config=cfg, model_config=mcfg, device=select_device(args.device),
                      on_log=lambda r: print(json.dumps(r), flush=True))
    extra = {"train": {"model": args.model, "files": len(audio), "audio_min": round(total_s / 60, 1),
                       "config": cfg.__dict__, "seconds": round(res.seconds),
                       "final_loss": res.history[-1]["loss"], "command": " ".join(sys.argv)},
             "n_params": count_parameters(res.model)}
    save_model(res.model, args.out, version=args.version or f"fpnet-{args.model.lower()}-s{args.seed}", extra=extra)
    print(f"saved {args.out} after {res.seconds:.0f} s")
    return 0


# ---- evaluation


@dataclass
class Record:
    """One query's answers: the landmark system's and each neural model's candidates."""

    condition: str
    truth: int | None
    shared: bool  # an outside clip of a held-out track that contains catalog audio: counted apart
    offset_s: float
    n_segments: int = 0
    landmark_accepted: int | None = None
    landmark: dict[int, float] = field(default_factory=dict)  # track → calibrated confidence, best first
    neural: dict[str, list[SegmentMatch]] = field(default_factory=dict)
    embed_ms: dict[str, float] = field(default_factory=dict)
    search_ms: dict[str, float] = field(default_factory=dict)


def query_set(bench_out: Path, name: str, indexed: list[ident.Track], held: list[ident.Track]) -> list[ident.Query]:
    """The cached queries of ``bench_out/name`` (``queries-g2-SEED-NIN-NOUT``) with their source tracks."""
    listing = bench_out / name / "queries.json"
    if not listing.is_file():
        raise SystemExit(f"no {listing}: generate the queries with the bench first (this tool never does)")
    seed, n_in, n_out = (int(x) for x in name.split("-")[-3:])
    # the listing is read, never regenerated (checked above); the draws are replayed for the sources
    qs = ident.make_queries(indexed, held, ident.conditions(quick=False), n_in=n_in, n_out=n_out, seed=seed,
                            out=bench_out)
    root = bench_out.parents[2]  # listing paths are relative to the repo the bench ran in
    return [ident.Query(q.condition, q.path if q.path.is_absolute() else root / q.path, q.truth, q.offset_s, q.source)
            for q in qs]


def run_queries(queries: list[ident.Query], *, index: FingerprintIndex, models: dict[str, FpNet],
                refs: dict[str, ReferenceSet], shared: frozenset[int]) -> list[Record]:
    """Decode each clip once; run the landmark system and every neural model on it."""
    out = []
    for k, q in enumerate(queries):
        y16 = ident.load_query(q.path)
        rec = Record(q.condition, q.truth, q.truth is None and q.source in shared, q.offset_s)
        res = index.identify(y16, sr=FP_SR, calibration=Calibration())
        rec.landmark_accepted = res.match.track_id if res.match else None
        for c in res.candidates:
            rec.landmark.setdefault(c.track_id, float(c.confidence))
        y8 = resample(y16, orig_sr=FP_SR, target_sr=FP_NET_SR)
        for name, model in models.items():
            t0 = time.process_time()
            v = segment_vectors(model, y8, sr=FP_NET_SR)
            t1 = time.process_time()
            rec.neural[name] = match_segments(refs[name], v)
            rec.embed_ms[name] = (t1 - t0) * 1000
            rec.search_ms[name] = (time.process_time() - t1) * 1000
            rec.n_segments = len(v)
        out.append(rec)
        if (k + 1) % 100 == 0:
            logger.warning("%d/%d queries", k + 1, len(queries))
    return out


def _fit_logistic(X: np.ndarray, y: np.ndarray, *, ridge: float = 1e-3) -> np.ndarray:
    """Weights of a logistic model (Newton's method, small ridge)."""
    w = np.zeros(X.shape[1])
    for _ in range(50):
        p = 1 / (1 + np.exp(-np.clip(X @ w, -50, 50)))
        g = X.T @ (p - y) + ridge * w
        H = X.T @ (X * (p * (1 - p))[:, None]) + ridge * np.eye(X.shape[1])
        w -= np.linalg.solve(H, g)
    return w


def system_features(rec: Record, system: str) -> tuple[list[int], np.ndarray]:
    """Candidate tracks and their features for ``system`` (a neural model name, ``fusion:NAME`` or ``REFIT``).

    Neural: [1, score, score − best other, log segments]. Fusion adds the landmark's calibrated
    confidence of the same track (0 when it is not a landmark candidate) over the union of both lists.
    ``fusion-lm:NAME`` keeps only the landmark's candidates (neural score from the neural top-10 list, 0 when
    absent there). ``REFIT`` is the control for fusion: the landmark's own confidence, its threshold refitted the same way.
    """
    if system == REFIT:
        tracks = list(rec.landmark)
        return tracks, np.column_stack([np.ones(len(tracks)), [rec.landmark[t] for t in tracks]]).reshape(-1, 2)
    name = system.split(":")[-1]
    nm = {m.track_id: m.score for m in rec.neural[name]}
    fusion = system.startswith(("fusion:", "fusion-lm:"))
    if system.startswith("fusion-lm:"):  # the landmark's candidates only: the neural part only re-scores them
        tracks = list(rec.landmark)
    else:
        tracks = list(nm) + ([t for t in rec.landmark if t not in nm] if fusion else [])
    if not tracks:
        return [], np.zeros((0, 5 if fusion else 4))
    s = np.array([nm.get(t, 0.0) for t in tracks])
    others = np.array([max([v for u, v in nm.items() if u != t], default=0.0) for t in tracks])
    cols = [np.ones(len(tracks)), s, s - others, np.full(len(tracks), np.log(max(rec.n_segments, 1)))]
    if fusion:
        cols.append(np.array([rec.landmark.get(t, 0.0) for t in tracks]))
    return tracks, np.column_stack(cols)


@dataclass
class Acceptor:
    """A fitted logistic confidence and the acceptance threshold (p > threshold is accepted)."""

    weights: np.ndarray
    threshold: float

    def decide(self, rec: Record, system: str) -> tuple[int | None, int | None, float]:
        """(accepted track or None, top track or None, its confidence)."""
        tracks, X = system_features(rec, system)
        if not tracks:
            return None, None, 0.0
        p = 1 / (1 + np.exp(-np.clip(X @ self.weights, -50, 50)))
        i = int(np.argmax(p))
        return (tracks[i] if p[i] > self.threshold else None), tracks[i], float(p[i])


def fit_acceptor(records: list[Record], system: str, *, max_far: float = 0.01) -> Acceptor:
    """Fit on every candidate (right track or not) of the fit set, then the lowest threshold at which at most
    ``max_far`` of its out-of-catalog clips (shared ones left out) pass."""
    Xs, ys = [], []
    for r in records:
        if r.shared:
            continue
        tracks, X = system_features(r, system)
        Xs.append(X)
        ys.append(np.array([t == r.truth for t in tracks], float))
    w = _fit_logistic(np.vstack(Xs), np.concatenate(ys))
    acc = Acceptor(w, 0.0)
    conf = np.sort([acc.decide(r, system)[2] for r in records if r.truth is None and not r.shared])[::-1]
    allowed = int(np.floor(max_far * conf.size))
    acc.threshold = float(conf[allowed]) if allowed < conf.size else 0.0
    return acc


def tally(records: list[Record], system: str, acceptor: Acceptor | None) -> dict[str, dict]:
    """Per condition: in/out counts, raw and accepted right answers, false accepts, shared accepted."""
    per: dict[str, dict] = {}
    for r in records:
        if system == "landmark":
            got = r.landmark_accepted
            top = next(iter(r.landmark), None)
        else:
            got, top, _ = acceptor.decide(r, system)
        ident.count_answer(per.setdefault(r.condition, ident.new_counts()), got=got, top=top, truth=r.truth, shared=r.shared)
    return per


def search_timing(*, n_vectors: int, dim: int, n_query: int, repeats: int, seed: int = 0) -> dict:
    """CPU ms of :func:`match_segments` on random unit float16 vectors (the 100 h catalog stand-in)."""
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n_vectors, dim)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    per_track = 400  # ~200 s tracks at 2 segments/s
    items = [(i, v[s : s + per_track]) for i, s in enumerate(range(0, n_vectors, per_track))]
    ref = ReferenceSet.from_tracks(items, hop_s=HOP_S)
    del v, items
    ms = []
    for _ in range(repeats):
        q = rng.standard_normal((n_query, dim)).astype(np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        t0 = time.process_time()
        match_segments(ref, q)
        ms.append((time.process_time() - t0) * 1000)
    return {"n_vectors": n_vectors, "mb": ref.storage_bytes / 1e6, "p50_ms": float(np.percentile(ms, 50)),
            "p95_ms": float(np.percentile(ms, 95))}


def cmd_eval(args: argparse.Namespace) -> int:
    configure_cpu_threads(args.threads)
    t_start = time.perf_counter()
    _tracks, indexed, held = bench_tracks(args.bench_out)
    models: dict[str, FpNet] = {}
    for path in args.weights:
        model, meta = load_model(path, device="cpu")
        models[meta["version"]] = model
    refs: dict[str, ReferenceSet] = {}
    ref_audio_s = sum(t.duration_s for t in indexed)
    for name, model in models.items():
        t0 = time.process_time()
        items = [(t.track_id, segment_vectors(model, resample(t.y, orig_sr=ident.GEN_SR, target_sr=FP_NET_SR), sr=FP_NET_SR))
                 for t in indexed]
        refs[name] = ReferenceSet.from_tracks(items, hop_s=HOP_S)
        print(f"{name}: {len(refs[name].vectors)} reference vectors, {refs[name].storage_bytes / (ref_audio_s / 3600) / 1e6:.2f} "
              f"MB/h (float16), embedded {ref_audio_s / (time.process_time() - t0):.0f}× realtime (CPU, 1 thread)")
    tmp = Path(tempfile.mkdtemp(prefix="fpnet-eval-"))
    index = FingerprintIndex.open(tmp / "dev", create=True)
    index.add_many((t.track_id, fingerprint(t.y, sr=ident.GEN_SR)) for t in indexed)
    shared = frozenset(ident.shared_audio(index, held))
    sets = {}
    for name in (args.fit_queries, args.test_queries):
        qs = query_set(args.bench_out, name, indexed, held)
        if args.limit:
            qs = qs[:: max(1, len(qs) // args.limit)]
        sets[name] = run_queries(qs, index=index, models=models, refs=refs, shared=shared)
        print(f"{name}: {len(qs)} queries done after {time.perf_counter() - t_start:.0f} s")
    fit, test = sets[args.fit_queries], sets[args.test_queries]
    systems = ["landmark", REFIT] + list(models) + [f"{f}:{m}" for f in ("fusion", "fusion-lm") for m in models]
    acceptors = {s: (fit_acceptor(fit, s) if s != "landmark" else None) for s in systems}
    tallies = {s: tally(test, s, acceptors[s]) for s in systems}
    conds = list(dict.fromkeys(r.condition for r in test))
    print(f"\ntest set {args.test_queries}; thresholds fitted on {args.fit_queries} (≤ 1 % of its outside clips pass)")
    short = {s: s.replace("fusion-lm:", "FL:").replace("fusion:", "F:").replace("fpnet-", "").replace(REFIT, "lm refit") for s in systems}
    hdr = f"{'condition':<16}{'in/out':>8} | " + " | ".join(f"{short[s][:14]:>14} raw  acc  FA" for s in systems)
    print(hdr)
    print("-" * len(hdr))
    result = {"systems": systems, "conditions": {}, "command": " ".join(sys.argv),
              "thresholds": {s: (a.threshold if a else None) for s, a in acceptors.items()},
              "weights": {s: (a.weights.tolist() if a else None) for s, a in acceptors.items()}}
    for c in conds:
        d0 = tallies["landmark"][c]
        line = f"{c:<16}{d0['in']:>4}/{d0['out']:<3} | "
        cells = []
        for s in systems:
            d = tallies[s][c]
            cells.append(f"{'':>14}{d['raw'] / max(d['in'], 1):>4.0%} {d['correct'] / max(d['in'], 1):>4.0%} {d['fa']:>3d}")
        print(line + " | ".join(cells))
        result["conditions"][c] = {s: tallies[s][c] for s in systems}
    print("totals (accepted right / raw right / in; FA / out; shared accepted / shared):")
    for s in systems:
        tot = {k: sum(d[k] for d in tallies[s].values()) for k in ("in", "raw", "correct", "out", "fa", "shared", "shared_accepted")}
        print(f"  {s:<24} {tot['correct']}/{tot['raw']}/{tot['in']}; FA {tot['fa']}/{tot['out']}; shared {tot['shared_accepted']}/{tot['shared']}"
              + (f"; threshold {acceptors[s].threshold:.3f}" if acceptors[s] else ""))
        result.setdefault("totals", {})[s] = tot
    for name in models:
        emb = [r.embed_ms[name] for r in test if r.condition.startswith("10s")]
        srch = [r.search_ms[name] for r in test if r.condition.startswith("10s")]
        print(f"{name}: 10 s query CPU ms (1 thread): embed p50 {np.percentile(emb, 50):.1f} p95 {np.percentile(emb, 95):.1f}; "
              f"search ({len(refs[name].vectors)} vectors) p50 {np.percentile(srch, 50):.1f} p95 {np.percentile(srch, 95):.1f}")
    if args.search_vectors:
        dim = next(iter(models.values())).config.dim if models else 64
        st = search_timing(n_vectors=args.search_vectors, dim=dim, n_query=19, repeats=30)
        print(f"search at {st['n_vectors']} random {dim}-d float16 vectors ({st['mb']:.0f} MB): CPU ms p50 {st['p50_ms']:.0f} "
              f"p95 {st['p95_ms']:.0f} (19 query segments = a 10 s clip)")
        result["search_timing"] = st
    print(f"total {time.perf_counter() - t_start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.identify.neural", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    tr = sub.add_parser("train", help="train model G or C")
    tr.add_argument("--model", choices=("G", "C"), required=True)
    tr.add_argument("--out", type=Path, required=True)
    tr.add_argument("--bench-out", type=Path, default=BENCH_OUT, help="the bench's output dir (cache/, queries-*/)")
    tr.add_argument("--extra-dir", type=Path, action="append", default=[], help="G only: more training audio")
    tr.add_argument("--steps", type=int, default=1500)
    tr.add_argument("--batch", type=int, default=128)
    tr.add_argument("--lr", type=float, default=1e-3)
    tr.add_argument("--dim", type=int, default=64)
    tr.add_argument("--crowd-snr-db", type=float, nargs=2, default=list(FpTrainConfig.crowd_snr_db),
                    help="range of the training crowd's SNR (engine.degrade.babble)")
    tr.add_argument("--p-crowd", type=float, default=FpTrainConfig.p_crowd)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--threads", type=int, default=1)
    tr.add_argument("--version", default=None, help="name in the sidecar (default fpnet-g-s0 etc.)")
    tr.add_argument("--device", default="auto")
    ev = sub.add_parser("eval", help="evaluate models (and the landmark system) on the bench's cached queries")
    ev.add_argument("--weights", type=Path, action="append", default=[])
    ev.add_argument("--bench-out", type=Path, default=BENCH_OUT)
    ev.add_argument("--test-queries", default="queries-g2-1-30-15")
    ev.add_argument("--fit-queries", default="queries-g2-1001-20-10")
    ev.add_argument("--limit", type=int, default=0, help="about this many queries per set (0: all)")
    ev.add_argument("--search-vectors", type=int, default=0, help="also time the search at this many random vectors")
    ev.add_argument("--threads", type=int, default=1)
    ev.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.cmd == "train":
        return cmd_train(args)
    return cmd_eval(args)


if __name__ == "__main__":
    raise SystemExit(main())
