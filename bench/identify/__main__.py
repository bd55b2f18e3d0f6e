"""Benchmark clip identification against audfprint on degraded dev-set queries.

    python -m bench.identify                      # full run (about 15 min here)
    python -m bench.identify --quick              # fewer queries, no 100 h padding
    python -m bench.identify --calibrate          # fit the confidence model on a separate query set

Catalog: dev tracks of at least ``--min-track-s`` seconds from the manifest; a
seeded ``--holdout`` share is kept out of the index and supplies the
out-of-catalog queries. Queries (.m4a, AAC 64 kbps) are generated per
condition by ``bench.identify.degrade``; both systems read the same files.
The 100 h latency figure pads the index with the dev tracks' peaks (and dense
bits) mapped to speeds 0.80–0.93 and 1.07–1.25 (what resampled copies of the
tracks would give, outside the ±3.5 % search range), each a distinct track id.
Results go to ``bench/out/identify/``; the table goes to stdout.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from bench.identify import peer
from bench.identify.degrade import Condition, degrade, write_m4a
from engine.audio import DecodeLimits, load, resample
from engine.errors import DecodeError
from engine.fingerprint import (
    BIN_HZ,
    CALIBRATION_FEATURES,
    FP_SR,
    QUERY_PARAMS,
    REFERENCE_PARAMS,
    Calibration,
    Fingerprints,
    candidate_features,
    dense_filters,
    fingerprint,
    hash_peaks,
    match,
)
from engine.fpindex import FingerprintIndex

logger = logging.getLogger("bench.identify")

GEN_SR = 16000  # degradations run here: enough for the 7 kHz phone band
OUT = Path("bench/out/identify")
MANIFEST = Path("/work/devmusic/manifest.tsv")
PAD_ID_BASE = 10_000_000


def conditions(quick: bool) -> list[Condition]:
    conds = [Condition(d, snr) for d in (3.0, 5.0, 10.0) for snr in (10.0, 5.0, 0.0, -5.0)]
    conds += [Condition(d, 5.0, sp) for d in (5.0, 10.0) for sp in (0.97, 1.03)]
    if quick:
        conds = [c for c in conds if c.snr_db in (0.0, 5.0)]
    return conds


@dataclass
class Track:
    key: str
    track_id: int
    path: Path
    y: np.ndarray  # GEN_SR mono float32

    @property
    def duration_s(self) -> float:
        return self.y.size / GEN_SR


def load_tracks(manifest: Path, *, min_track_s: float, limit: int | None, out: Path = OUT) -> list[Track]:
    cache = out / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    tracks = []
    for i, line in enumerate(manifest.read_text().splitlines()):
        key, path = line.split("\t")[:2]
        f = cache / f"{key}.npy"
        refused = cache / f"{key}.refused"  # the decoder's verdict, so later runs neither retry nor warn again
        if f.exists():
            y = np.load(f).astype(np.float32) / 32767.0
        elif refused.exists():
            continue
        else:
            try:
                y = load(path, sr=GEN_SR, limits=DecodeLimits(min_duration_s=0.1), check_silence=False)
            except DecodeError as exc:  # too short, corrupt: the file's own fault, remembered
                logger.warning("skipping %s: %s", path, exc)
                refused.write_text(f"{exc}\n")
                continue
            except Exception as exc:  # anything else (e.g. a missing file) is skipped this run, not fatal
                logger.warning("skipping %s: %s", path, exc)
                continue
            pcm = np.clip(y * 32767.0, -32767, 32767).astype(np.int16)
            np.save(f, pcm)
            # use what later runs will read from the cache, so the first run indexes the same audio
            y = pcm.astype(np.float32) / 32767.0
        if y.size / GEN_SR >= min_track_s:
            tracks.append(Track(key=key, track_id=i + 1, path=Path(path), y=y))
        if limit and len(tracks) >= limit:
            break
    return tracks


@dataclass
class Query:
    condition: str
    path: Path
    truth: int | None  # track id, None when out of catalog
    offset_s: float
    source: int = 0  # track id the excerpt was cut from (a held-out track for out-of-catalog queries)


def _make_one(job: tuple[np.ndarray, Condition, int, Path, tuple[int, int, int]]) -> None:
    clean, cond, _tid, path, seed = job
    rng = np.random.default_rng(seed)
    write_m4a(degrade(clean, sr=GEN_SR, condition=cond, rng=rng), path, sr=GEN_SR)


def make_queries(
    indexed: list[Track], held: list[Track], conds: list[Condition], *, n_in: int, n_out: int, seed: int, workers: int = 2,
    out: Path = OUT,
) -> list[Query]:
    """Degraded excerpts for every condition (cached under ``out`` by seed and counts); a seeded choice per query."""
    root = out / f"queries-g2-{seed}-{n_in}-{n_out}"  # g2: rooms with a rate-independent DRR
    listing = root / "queries.json"
    wanted = {c.name for c in conds}
    if listing.exists():
        raw = json.loads(listing.read_text())
        # the draws are replayed (cheap, seeded) for each query's source track, which older listings lack
        sources = [s for _, s in _draws(indexed, held, n_in=n_in, n_out=n_out, seed=seed)]
        qs = [Query(q["condition"], Path(q["path"]), q["truth"], q["offset_s"], src) for q, src in zip(raw, sources, strict=True)]
        return [q for q in qs if q.condition in wanted]
    queries: list[Query] = []
    jobs = []
    for (ci, k, cond, tr, start, need), _ in _draws(indexed, held, n_in=n_in, n_out=n_out, seed=seed):
        inside = k < n_in
        path = root / f"c{ci:02d}" / f"q{k:03d}.m4a"
        jobs.append((tr.y[start : start + need], cond, tr.track_id, path, (seed, ci, k)))
        queries.append(Query(cond.name, path, tr.track_id if inside else None, start / GEN_SR, tr.track_id))
    with ProcessPoolExecutor(max_workers=workers) as ex:
        list(ex.map(_make_one, jobs, chunksize=8))
    listing.write_text(json.dumps([q.__dict__ | {"path": str(q.path)} for q in queries]))
    return [q for q in queries if q.condition in wanted]


def _draws(indexed: list[Track], held: list[Track], *, n_in: int, n_out: int, seed: int) -> list[tuple[tuple, int]]:
    """The seeded choice of track and start for every query of every condition, in listing order."""
    rng = np.random.default_rng(seed)
    out = []
    for ci, cond in enumerate(conditions(quick=False)):
        for k in range(n_in + n_out):
            pool = indexed if k < n_in else held
            tr = pool[int(rng.integers(len(pool)))]
            need = int(cond.duration_s * cond.speed * GEN_SR) + 1
            start = int(rng.integers(0, max(1, tr.y.size - need)))
            out.append(((ci, k, cond, tr, start, need), tr.track_id))
    return out


SHARED_MIN_HASHES = 100
"""A held-out track shares audio with the catalog when a clean 10 s excerpt of it aligns at least this many
hashes with one indexed track (dev set: 107–145 for the two held-out tracks that do, at most 24 for the
excerpts of the others)."""


def shared_audio(index: FingerprintIndex, held: list[Track], *, step_s: float = 10.0) -> dict[int, int]:
    """Held-out tracks that contain an indexed track's audio (a remaster, a reused stem), as {held: indexed}.

    Their clips are not out-of-catalog audio: a listener would rightly be told the indexed track. The scan
    cuts clean excerpts every ``step_s`` seconds and needs far more aligned hashes than chance gives.
    """
    found: dict[int, int] = {}
    n = int(step_s * GEN_SR)
    for tr in held:
        for start in range(0, max(1, tr.y.size - n), n):
            cands = match(fingerprint(tr.y[start : start + n], sr=GEN_SR, params=QUERY_PARAMS), index.lookup,
                          keep_speeds=1, speeds=(1.0,))
            if cands and cands[0].score >= SHARED_MIN_HASHES:
                found[tr.track_id] = cands[0].track_id
                break
    return found


def load_query(path: Path) -> np.ndarray:
    return load(path, sr=FP_SR, limits=DecodeLimits(min_duration_s=0.5), check_silence=False)


def pad_index(index: FingerprintIndex, fps: dict[int, Fingerprints], *, target_hours: float) -> float:
    """Add speed-mapped copies of the dev fingerprints until the index holds target_hours."""
    have_s = index.stats().audio_s
    factors = [f for pair in zip(np.linspace(0.93, 0.80, 12), np.linspace(1.07, 1.25, 12)) for f in pair]
    centres = np.argmax(dense_filters(), axis=0).astype(np.float64)  # FFT bin at the peak of each dense band
    k = 0
    while have_s < target_hours * 3600 and k < len(factors):
        s = float(factors[k])
        src = np.abs(centres[None, :] - centres[:, None] / s).argmin(axis=1)  # the copy's band k <- original's src[k]
        items = []
        for tid, fp in fps.items():
            # the copy played at speed s: peaks at t / s, f * s
            frames = np.rint(fp.peak_frames / s).astype(np.int32)
            bins = fp.peak_bins * s
            keep = bins <= REFERENCE_PARAMS.max_hz / BIN_HZ  # what the band would have kept
            h, t = hash_peaks(frames[keep], bins[keep], params=REFERENCE_PARAMS)
            v_frames = np.rint(fp.verify_frames / s).astype(np.int32)
            v_bins = fp.verify_bins * s
            v_keep = v_bins <= REFERENCE_PARAMS.max_hz / BIN_HZ
            # dense bits of the copy: frame t is the original's t * s, band k holds what the original's
            # band nearest to its centre / s held
            n_rows = fp.dense_bits.shape[0]
            rows = np.minimum(np.rint(np.arange(int(n_rows / s)) * s).astype(np.int64), n_rows - 1)
            copy_bits = np.packbits(np.unpackbits(fp.dense_bits[rows], axis=1)[:, src], axis=1)
            items.append((PAD_ID_BASE + k * 100_000 + tid, Fingerprints(
                frames[keep], bins[keep], h, t, fp.duration_s / s, verify_frames=v_frames[v_keep],
                verify_bins=v_bins[v_keep], dense_bits=copy_bits)))
            have_s += fp.duration_s / s
            if have_s >= target_hours * 3600:
                break
        index.add_many(items)
        k += 1
    index.compact()
    return index.stats().audio_s / 3600


def pct(a: list[float], q: float) -> float:
    return float(np.percentile(a, q)) if a else float("nan")


def evaluate_ours(
    index: FingerprintIndex, queries: list[Query], calibration: Calibration, *, keep_speeds: int = 3,
    shared: frozenset[int] = frozenset(),
) -> dict[str, dict]:
    """Per condition: counts of right, raw-right and false answers, CPU ms. Out-of-catalog clips cut from
    a held-out track in ``shared`` (it contains catalog audio) are counted apart (``shared``), not as FA."""
    per: dict[str, dict] = {}
    for q in queries:
        t_dec = peer.cpu_seconds()
        y = load_query(q.path)
        dec_ms = (peer.cpu_seconds() - t_dec) * 1000  # ffmpeg's CPU included, as in the peer's figure
        t0 = time.process_time()  # CPU time: the machine is shared, wall time says more about the load
        res = index.identify(y, sr=FP_SR, calibration=calibration,
                       keep_speeds=keep_speeds)
        ms = (time.process_time() - t0) * 1000
        d = per.setdefault(q.condition, new_counts() | {"offset_ok": 0, "wrong_accept": 0, "ms": [], "decode_ms": []})
        d["ms"].append(ms)
        d["decode_ms"].append(dec_ms)
        got = res.match.track_id if res.match else None
        count_answer(d, got=got, top=res.candidates[0].track_id if res.candidates else None, truth=q.truth,
                     shared=q.truth is None and q.source in shared)
        if q.truth is not None:
            d["wrong_accept"] += got is not None and got != q.truth
            d["offset_ok"] += got == q.truth and abs(res.match.offset_s - q.offset_s) < 0.2
    return per


def new_counts() -> dict[str, int]:
    """A condition's answer counts before any clip (see :func:`count_answer`)."""
    return dict.fromkeys(("in", "correct", "raw", "out", "fa", "shared", "shared_accepted"), 0)


def count_answer(d: dict, *, got: int | None, top: int | None, truth: int | None, shared: bool) -> None:
    """Add one clip's answer to a condition's counts: an outside clip with catalog audio (``shared``) apart,
    other outside clips as false accepts when named, in-catalog clips as right (accepted) and raw-right (top)."""
    if shared:
        d["shared"] += 1
        d["shared_accepted"] += got is not None
    elif truth is None:
        d["out"] += 1
        d["fa"] += got is not None
    else:
        d["in"] += 1
        d["correct"] += got == truth
        d["raw"] += top == truth


def evaluate_peer(pm: peer.PeerMatcher, queries: list[Query], name_to_id: dict[str, int],
                  shared: frozenset[int] = frozenset()) -> dict[str, dict]:
    per: dict[str, dict] = {}
    for q in queries:
        if q.truth is None and q.source in shared:
            continue  # as for ours: catalog audio, neither answer is wrong
        name, _off, secs, aligned = pm.match(q.path)
        got = name_to_id.get(name) if name else None
        d = per.setdefault(q.condition, {"in": 0, "correct": 0, "out": 0, "fa": 0, "ms": [],
                                         "right_scores": [], "fa_scores": []})
        d["ms"].append(secs * 1000)
        if q.truth is None:
            d["out"] += 1
            d["fa"] += got is not None
            if got is not None:
                d["fa_scores"].append(aligned)
        else:
            d["in"] += 1
            d["correct"] += got == q.truth
            if got == q.truth:
                d["right_scores"].append(aligned)
    return per


def peer_equal_far_threshold(per: dict[str, dict], max_far: float = 0.01) -> int:
    """The lowest aligned-hash count at which the peer names at most ``max_far`` of all outside clips.

    audfprint's own rule (5 aligned hashes) names half the outside clips at low SNR; this is its
    best threshold for the issue's false-accept target, chosen on the very clips it is scored on
    (an oracle in the peer's favour), so that both systems are compared at the same false-accept level.
    """
    n_out = sum(d["out"] for d in per.values())
    fa_scores = np.sort(np.array([a for d in per.values() for a in d["fa_scores"]], dtype=np.int64))[::-1]
    allowed = int(max_far * n_out)
    if len(fa_scores) <= allowed:
        return 0
    return int(fa_scores[allowed]) + 1  # one above the first outside clip that would exceed the allowance


THRESHOLDS = (0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99)
"""Acceptance thresholds ``calibrate`` tries, lowest first."""


def calibrate(index: FingerprintIndex, queries: list[Query], *, max_far: float = 0.0, verify_top: int = 10,
              shared: frozenset[int] = frozenset()) -> Calibration:
    """Fit the logistic confidence model on every verified candidate (right track or not), then pick the
    lowest acceptance threshold (of ``THRESHOLDS``) whose false-accept rate on out-of-catalog queries is at
    most ``max_far``.

    The features are ``candidate_features`` (``CALIBRATION_FEATURES``): each candidate against the best of
    the others, so the model both ranks the candidates and decides on the best one. ``max_far`` is 0 by
    default: with ~140 outside clips 1 % is a single clip, and a threshold resting on one clip's confidence
    let one of 207 through on the other seed (session 8). Out-of-catalog clips of held-out tracks in
    ``shared`` (they contain catalog audio) are left out: neither answer would be wrong. Every candidate's
    features go to ``calibration-features.npz`` (``X`` with columns bias + ``names``, ``labels``, ``query``)
    for offline fits.
    """
    X_all, y_all, q_all, per_query = [], [], [], []
    for qi, q in enumerate(queries):
        if q.truth is None and q.source in shared:
            continue
        y = load_query(q.path)
        fp = fingerprint(y, sr=FP_SR, params=QUERY_PARAMS, with_peak_map=True)
        cands = match(fp, index.lookup, peaks=index.reference_peaks,
                      dense=index.reference_dense, verify_top=verify_top, max_candidates=verify_top)
        if not cands:
            per_query.append((q, None, None))
            continue
        feats = candidate_features(np.array([c.score for c in cands], np.float64),
                                   np.array([c.verified for c in cands], np.float64),
                                   np.array([c.peak_votes for c in cands], np.float64),
                                   np.array([c.dense_verified for c in cands], np.float64), n_query_hashes=fp.n_hashes)
        X = np.column_stack([np.ones(len(cands))] + [feats[name] for name in CALIBRATION_FEATURES])
        X_all.append(X)
        y_all.append(np.array([c.track_id == q.truth for c in cands], np.float64))
        q_all.append(np.full(len(cands), qi))
        per_query.append((q, X, [c.track_id for c in cands]))
    X, yv = np.vstack(X_all), np.concatenate(y_all)
    np.savez(OUT / "calibration-features.npz", X=X, labels=yv, query=np.concatenate(q_all),
             names=np.array(("bias", *CALIBRATION_FEATURES)))
    w = np.zeros(X.shape[1])
    for _ in range(60):  # Newton's method with a small ridge
        p = 1 / (1 + np.exp(-np.clip(X @ w, -50, 50)))
        g = X.T @ (p - yv) + 1e-3 * w
        H = X.T @ (X * (p * (1 - p))[:, None]) + 1e-3 * np.eye(X.shape[1])
        w -= np.linalg.solve(H, g)
    w = np.round(w, 2)  # what ships in code, so the table below is what the shipped numbers give
    weights = {f"w_{name}": float(wi) for name, wi in zip(CALIBRATION_FEATURES, w[1:], strict=True)}
    cal = Calibration(bias=float(w[0]), **weights)
    tops = []  # (outside?, right?, confidence of the most confident candidate)
    for q, Xq, ids in per_query:
        if Xq is None:
            tops.append((q.truth is None, False, 0.0))
            continue
        p = 1 / (1 + np.exp(-np.clip(Xq @ w, -50, 50)))  # = cal.confidence of the same features
        i = int(np.argmax(p))
        tops.append((q.truth is None, ids[i] == q.truth, float(p[i])))
    ooc = np.array([t[0] for t in tops])
    right = np.array([t[1] for t in tops])
    conf = np.array([t[2] for t in tops])
    n_ooc, n_in = int(ooc.sum()), int((~ooc).sum())
    print(f"calibration on {len(per_query)} queries ({n_in} in catalog, {int(right.sum())} right after re-ranking; "
          f"{n_ooc} outside); {int(yv.size)} candidates")
    print("  threshold  accepted-right  wrong-in-catalog  FA(outside)")
    chosen = None
    for thr in THRESHOLDS:
        acc = conf >= thr
        fa = int((acc & ooc).sum())
        print(f"  {thr:9.2f}  {int((acc & right).sum()) / max(n_in, 1):14.1%}  {int((acc & ~right & ~ooc).sum()):16d}"
              f"  {fa / max(n_ooc, 1):10.1%} ({fa}/{n_ooc})")
        if chosen is None and fa <= max_far * n_ooc:
            chosen = thr
    from dataclasses import replace

    cal = replace(cal, accept_confidence=chosen if chosen is not None else THRESHOLDS[-1])
    print(f"fitted: {cal}")
    return cal


def split_tracks(tracks: list[Track], *, holdout: float) -> tuple[list[Track], list[Track]]:
    """(indexed, held out): a seeded split, fixed across query seeds."""
    order = np.random.default_rng(0).permutation(len(tracks))
    n_held = int(round(holdout * len(tracks)))
    return [tracks[i] for i in sorted(order[n_held:])], [tracks[i] for i in sorted(order[:n_held])]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.identify", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", type=Path, default=MANIFEST)
    ap.add_argument("--min-track-s", type=float, default=30.0)
    ap.add_argument("--max-tracks", type=int, default=None)
    ap.add_argument("--holdout", type=float, default=0.25, help="share of tracks kept out of the index")
    ap.add_argument("--queries", type=int, default=30, help="in-catalog queries per condition")
    ap.add_argument("--ooc", type=int, default=15, help="out-of-catalog queries per condition")
    ap.add_argument("--pad-hours", type=float, default=100.0, help="catalog size for the latency figure (0: skip)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--calibrate", action="store_true",
                    help="fit the confidence model on queries of seed + 1000 (e.g. --queries 20 --ooc 10)")
    ap.add_argument("--keep-speeds", type=int, default=3, help="speed hypotheses matched in full after the pre-check")
    ap.add_argument("--max-postings", type=int, default=200, help="lookups skip hashes stored more often than this")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    conds = conditions(args.quick)

    t_start = time.perf_counter()
    tracks = load_tracks(args.manifest, min_track_s=args.min_track_s, limit=args.max_tracks)
    indexed, held = split_tracks(tracks, holdout=args.holdout)
    print(f"dev set: {len(tracks)} tracks ≥ {args.min_track_s:g} s; indexed {len(indexed)} "
          f"({sum(t.duration_s for t in indexed) / 3600:.2f} h), held out {len(held)}")

    # ours: fingerprint and index
    fps: dict[int, Fingerprints] = {}
    t0 = time.process_time()
    for tr in indexed:
        fps[tr.track_id] = fingerprint(tr.y, sr=GEN_SR)
    fp_secs = time.process_time() - t0
    audio_s = sum(t.duration_s for t in indexed)
    tmp = Path(tempfile.mkdtemp(prefix="fpindex-", dir=OUT))
    index = FingerprintIndex.open(tmp / "dev", create=True, max_postings=args.max_postings)
    index.add_many(fps.items())
    stats = index.stats()

    seed = args.seed + (1000 if args.calibrate else 0)
    queries = make_queries(indexed, held, conds, n_in=args.queries, n_out=args.ooc, seed=seed)
    print(f"{len(queries)} queries in {len(conds)} conditions (seed {seed}), ready after {time.perf_counter() - t_start:.0f} s")

    shared_map = shared_audio(index, held)
    shared = frozenset(shared_map)
    names = {t.track_id: f"{t.path.parent.name}/{t.path.name}" for t in tracks}
    shared_note = "; ".join(f"held-out {names[h]} contains indexed {names[i]}" for h, i in sorted(shared_map.items())) or "none"
    n_shared = sum(q.truth is None and q.source in shared for q in queries)
    print(f"out-of-catalog clips of held-out tracks that contain catalog audio (counted apart, not as FA): {n_shared} ({shared_note})")

    if args.calibrate:
        calibrate(index, queries, shared=shared)
        return 0

    cal = Calibration()
    for q in queries[:5]:  # warm the page cache and code paths
        index.identify(load_query(q.path), sr=FP_SR, calibration=cal)
    ours = evaluate_ours(index, queries, cal, keep_speeds=args.keep_speeds, shared=shared)

    padded: dict[str, dict] = {}
    pad_stats = None
    pad_hours = 0.0
    if args.pad_hours > 0 and not args.quick:
        big = FingerprintIndex.open(tmp / "padded", create=True, max_postings=args.max_postings)
        big.add_many(fps.items())
        pad_hours = pad_index(big, fps, target_hours=args.pad_hours)
        pad_stats = big.stats()
        big = FingerprintIndex.open(tmp / "padded", max_postings=args.max_postings)
        pad_skipped = big.skipped_share()
        for q in queries[:5]:
            big.identify(load_query(q.path), sr=FP_SR, calibration=cal)
        # the latency target is for 10 s clips: only those run against the padded index
        padded = evaluate_ours(big, [q for q in queries if q.condition.startswith("10s")], cal, keep_speeds=args.keep_speeds,
                               shared=shared)

    peer_note = None if not args.no_peer else "skipped (--no-peer)"
    peer_res: dict[str, dict] = {}
    peer_thr = 0
    peer_idx = None
    if peer_note is None:
        peer_note = peer.available()
    if peer_note is None:
        wav_dir = OUT / "peer-wav"
        wav_dir.mkdir(parents=True, exist_ok=True)
        ref_paths = []
        for tr in indexed:  # the peer reads the same decoded audio, as WAV (its ffmpeg header parse fails on some dev Ogg files)
            p = wav_dir / f"{tr.key}.wav"
            if not p.exists():
                sf.write(p, resample(tr.y, orig_sr=GEN_SR, target_sr=peer.SAMPLE_RATE), peer.SAMPLE_RATE, subtype="PCM_16")
            ref_paths.append(p)
        peer_idx = peer.build(ref_paths, db_path=tmp / "audfprint.pklz")
        name_to_id = {str(wav_dir / f"{tr.key}.wav"): tr.track_id for tr in indexed}
        pm = peer.PeerMatcher(peer_idx)
        pm.match(queries[0].path)
        peer_res = evaluate_peer(pm, queries, name_to_id, shared)
        peer_thr = peer_equal_far_threshold(peer_res)

    # ---- table
    lines = []
    hdr = f"{'condition':<16}{'n in/out':>9} | {'ours top1':>9}{'raw':>6}{'FA':>6}{'p50 ms':>8}{'p95 ms':>8}"
    if padded:
        hdr += f" | {'100h top1':>9}{'raw':>5}{'FA':>6}{'p50':>6}{'p95':>6}"
    # how engine.audio.load decodes a bench clip (short): in this process when PyAV imports
    in_process = importlib.util.find_spec("av") is not None
    if peer_res:
        hdr += f" | {'ours ms/q' + ('*' if in_process else '^'):>11} | {'afp top1':>8}{'FA':>6}{'@1%FA':>7}{'ms/q^':>7}{'×':>6}"
    lines.append(hdr)
    lines.append("-" * len(hdr))
    results = {"conditions": {}, "command": "python -m bench.identify " + " ".join(argv if argv is not None else sys.argv[1:])}
    for c in conds:
        o = ours[c.name]
        row = {"n_in": o["in"], "n_out": o["out"], "top1": o["correct"] / max(o["in"], 1), "far": o["fa"] / max(o["out"], 1),
               "raw_top1": o["raw"] / max(o["in"], 1),
               "offset_ok": o["offset_ok"] / max(o["in"], 1), "wrong_accept": o["wrong_accept"] / max(o["in"], 1),
               "p50_ms": pct(o["ms"], 50), "p95_ms": pct(o["ms"], 95)}
        line = f"{c.name:<16}{o['in']:>4}/{o['out']:<4} | {row['top1']:>9.1%}{row['raw_top1']:>6.0%}{row['far']:>6.1%}{row['p50_ms']:>8.1f}{row['p95_ms']:>8.1f}"
        if padded and c.name in padded:
            p = padded[c.name]
            row["padded"] = {"top1": p["correct"] / max(p["in"], 1), "raw_top1": p["raw"] / max(p["in"], 1),
                             "far": p["fa"] / max(p["out"], 1), "p50_ms": pct(p["ms"], 50), "p95_ms": pct(p["ms"], 95)}
            line += (f" | {row['padded']['top1']:>9.1%}{row['padded']['raw_top1']:>5.0%}{row['padded']['far']:>6.1%}"
                     f"{row['padded']['p50_ms']:>6.0f}{row['padded']['p95_ms']:>6.0f}")
        elif padded:
            line += f" | {'':>9}{'':>5}{'':>6}{'':>6}{'':>6}"
        if peer_res:
            p = peer_res[c.name]
            row["peer"] = {"top1": p["correct"] / max(p["in"], 1), "far": p["fa"] / max(p["out"], 1),
                           "top1_at_equal_far": sum(a >= peer_thr for a in p["right_scores"]) / max(p["in"], 1),
                           "mean_ms": float(np.mean(p["ms"])), "p95_ms": pct(p["ms"], 95)}
            ours_mean = float(np.mean(o["ms"])) + float(np.mean(o["decode_ms"]))  # like for like: with decode
            row["mean_ms_with_decode"] = ours_mean
            line += (f" | {ours_mean:>11.1f} | {row['peer']['top1']:>8.1%}{row['peer']['far']:>6.1%}"
                     f"{row['peer']['top1_at_equal_far']:>7.1%}{row['peer']['mean_ms']:>7.0f}{row['peer']['mean_ms'] / ours_mean:>6.1f}")
        results["conditions"][c.name] = row
        lines.append(line)
    tot = {k: sum(o[k] for o in ours.values()) for k in ("in", "correct", "raw", "out", "fa", "shared", "shared_accepted")}
    lines.append(f"all: accepted top-1 {tot['correct']}/{tot['in']} (raw {tot['raw']}), false accepts {tot['fa']}/{tot['out']}; "
                 f"clips of held-out tracks containing catalog audio: {tot['shared_accepted']}/{tot['shared']} accepted (not counted)")
    results["totals"] = tot
    print("\n".join(lines))
    fps_speed = audio_s / fp_secs
    print(f"\nours: index {stats.bytes / 1e6:.1f} MB for {stats.audio_s / 3600:.2f} h = {stats.bytes_per_hour / 1e6:.2f} MB/h "
          f"({stats.n_hashes / stats.audio_s:.0f} hashes/s; of which reference peaks for verification "
          f"{stats.peak_bytes / (stats.audio_s / 3600) / 1e6:.2f} MB/h, dense bits "
          f"{stats.dense_bytes / (stats.audio_s / 3600) / 1e6:.2f} MB/h); fingerprinting {fps_speed:.0f}× realtime "
          "(CPU time, one thread, decoded audio)")
    dec = [m for o in ours.values() for m in o["decode_ms"]]
    how = ("in this process (engine.audio through PyAV)" if in_process
           else "by an ffmpeg process (engine.audio without PyAV; its CPU included)")
    print("ours: p50/p95 ms = CPU time of fingerprint + match of decoded audio, one thread (index warm); decoding the "
          f".m4a costs another {np.mean(dec):.1f} ms CPU on average, decoded {how}; raw = top candidate right or "
          "wrong before the acceptance rule")
    if peer_res:
        print(f"ours ms/q = mean CPU ms per query, decode + fingerprint + match; {'*' if in_process else '^'} = decoded "
              f"{'in-process' if in_process else 'by an ffmpeg process'}, ^ = decoded by an ffmpeg process (its CPU counted)")
    results["ours"] = {"index": stats.to_dict(), "fingerprint_x_realtime": fps_speed}
    if pad_stats is not None:
        print(f"ours @ {pad_hours:.0f} h: index {pad_stats.bytes / 1e6:.0f} MB = {pad_stats.bytes_per_hour / 1e6:.2f} MB/h "
              f"({pad_stats.n_tracks} tracks; padding = dev peaks and dense bits mapped to speeds 0.80–0.93 and 1.07–1.25); "
              f"{pad_skipped:.1%} of its entries are in hashes too common to look up (dev index: {index.skipped_share():.1%})")
        results["padded"] = pad_stats.to_dict()
    if peer_idx is not None:
        print(f"audfprint: database {peer_idx.db_bytes / 1e6:.1f} MB saved (in memory 2^20×100×4 B = 419 MB) = "
              f"{peer_idx.db_bytes / (peer_idx.audio_s / 3600) / 1e6:.2f} MB/h; fingerprinting "
              f"{peer_idx.audio_s / peer_idx.cpu_s:.0f}× realtime (CPU); ms/q = mean CPU ms per query with its decode "
              f"of the .m4a; × = its mean CPU ms / ours (our decode added); @1%FA = its top-1 when it names a track "
              f"only from {peer_thr} aligned hashes (its own rule: 5), the lowest count that names ≤ 1 % of all "
              "outside clips, picked on these clips")
        results["peer"] = {"db_bytes": peer_idx.db_bytes, "audio_s": peer_idx.audio_s,
                           "fingerprint_x_realtime": peer_idx.audio_s / peer_idx.cpu_s, "equal_far_threshold": peer_thr}
    else:
        print(f"audfprint: {peer_note}")
        results["peer"] = {"note": peer_note}
    print(f"total {time.perf_counter() - t_start:.0f} s")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
