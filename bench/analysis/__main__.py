"""Benchmark tempo, key and energy: ``python -m bench.analysis [--synth N] [--invariance M]``.

Prints one table comparing mixwith's engine with librosa's standard recipe
(and essentia when importable), all measured in this run, and writes the
numbers to ``bench/out/analysis.json``. Speed is audio seconds per CPU
second of one core (BLAS/OpenMP threads pinned to 1), decoding excluded,
after a warm-up call (librosa's numba JIT would otherwise dominate).

essentia (AGPL) is never a project dependency; to include it as a peer,
install it outside the project venv and put it on the path::

    pip install --no-deps --target /work/.cache/bench-peers essentia six
    PYTHONPATH=/work/.cache/bench-peers python -m bench.analysis
"""

from __future__ import annotations

import os

# per-core speed: pin every thread pool before numpy loads
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from bench.analysis.datasets import SR, Item, invariance_items, loop_items, synth_items  # noqa: E402
from bench.analysis.methods import Method, methods  # noqa: E402
from engine.camelot import Key  # noqa: E402

TEMPO_TOL = 0.04
# An estimate on a transformed copy must land within 2 % of the expected
# ratio: half the ±4 % stretch, so an estimate that does not move fails.
INVARIANCE_TOL = 0.02
# The confident subset: checks whose original mixwith estimate has at least
# this confidence (tempo checks by tempo confidence, key checks by key
# confidence), the same checks for every method. Fixed at the value the tests
# use to tell a beat from noise, not tuned on the results.
CONFIDENT = 0.3
_SHARP = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def _acc1(est: float, truths: tuple[float, ...]) -> bool:
    return any(abs(est - t) <= TEMPO_TOL * t for t in truths)


def _acc2(est: float, truths: tuple[float, ...]) -> bool:
    return any(abs(est - t * m) <= TEMPO_TOL * t * m for t in truths for m in (1.0, 2.0, 3.0, 0.5, 1 / 3))


def _mirex(ref: Key, est: Key | None) -> float:
    import mir_eval

    if est is None:
        return 0.0
    return float(mir_eval.key.weighted_score(f"{_SHARP[ref.tonic]} {ref.mode}", f"{_SHARP[est.tonic]} {est.mode}"))


def _camelot_compatible(ref: Key, est: Key | None) -> bool:
    if est is None:
        return False
    d = (est.camelot_number - ref.camelot_number) % 12
    return (d == 0) or (est.mode == ref.mode and d in (1, 11))


class Timer:
    """Accumulates audio seconds and CPU seconds per method."""

    def __init__(self) -> None:
        self.audio_s: dict[str, float] = {}
        self.cpu_s: dict[str, float] = {}

    def run(self, name: str, method: Method, y: np.ndarray) -> tuple[float, Key | None]:
        t0 = time.process_time()
        try:
            bpm, key = method(y, SR)
        except Exception as exc:  # a failure scores as wrong, and is reported
            logging.getLogger(__name__).warning("%s failed: %s", name, exc)
            bpm, key = 0.0, None
        self.cpu_s[name] = self.cpu_s.get(name, 0.0) + time.process_time() - t0
        self.audio_s[name] = self.audio_s.get(name, 0.0) + len(y) / SR
        return bpm, key

    def speed(self, name: str) -> float:
        return self.audio_s.get(name, 0.0) / max(self.cpu_s.get(name, 0.0), 1e-9)


def _score_truth(items: list[Item], ms: dict[str, Method], timer: Timer, *, verbose: bool) -> dict[str, dict[str, float]]:
    res: dict[str, dict[str, list[float]]] = {n: {} for n in ms}
    for it in items:
        for name, m in ms.items():
            bpm, key = timer.run(name, m, it.y)
            r = res[name]
            r.setdefault("tempo_acc1", []).append(_acc1(bpm, it.bpms))
            r.setdefault("tempo_acc2", []).append(_acc2(bpm, it.bpms))
            if it.key is not None:
                r.setdefault("key_weighted", []).append(_mirex(it.key, key))
                r.setdefault("key_exact", []).append(key == it.key)
                r.setdefault("key_camelot_compatible", []).append(_camelot_compatible(it.key, key))
            if verbose and name == "mixwith" and (not _acc1(bpm, it.bpms) or (it.key is not None and key != it.key)):
                print(f"  miss {it.name}: {bpm} {key.name if key else None}")
    return {n: {k: float(np.mean(v)) for k, v in r.items()} for n, r in res.items()}


def _score_invariance(sets, ms: dict[str, Method], timer: Timer, *, verbose: bool) -> dict[str, dict[str, float]]:
    from engine.analysis import analyze

    # which checks count as confident: mixwith's confidence on each original (untimed)
    confident = [analyze(orig.y, sr=SR) for orig, _ in sets]
    out: dict[str, dict[str, float]] = {}
    for name, m in ms.items():
        tempo_ok: list[bool] = []
        key_ok: list[bool] = []
        sure_ok: list[bool] = []
        for (orig, variants), a in zip(sets, confident):
            bpm0, key0 = timer.run(name, m, orig.y)
            for v in variants:
                bpm, key = timer.run(name, m, v.y)
                if bpm0 > 0:
                    t_ok = abs(bpm / (bpm0 * v.tempo_ratio) - 1.0) <= INVARIANCE_TOL
                else:
                    t_ok = bpm == 0
                k_ok = key0 is not None and key == key0.transpose(v.semitones)
                tempo_ok.append(t_ok)
                key_ok.append(k_ok)
                if a.bpm_confidence >= CONFIDENT:
                    sure_ok.append(t_ok)
                if a.key_confidence >= CONFIDENT:
                    sure_ok.append(k_ok)
                if verbose and name == "mixwith" and not (t_ok and k_ok):
                    print(f"  inconsistent {orig.name} {v.name}: {bpm0}->{bpm} "
                          f"{key0.camelot if key0 else None}->{key.camelot if key else None}")
        if tempo_ok:
            out[name] = {
                "invariance_tempo": float(np.mean(tempo_ok)),
                "invariance_key": float(np.mean(key_ok)),
                "invariance": float(np.mean(tempo_ok + key_ok)),
                "invariance_confident": float(np.mean(sure_ok)) if sure_ok else float("nan"),
                "n_confident_checks": float(len(sure_ok)),
            }
    return out


def _pooled(results: dict[str, dict[str, dict[str, float]]], counts: dict[str, int], parts: tuple[str, ...],
            metrics: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Every item of ``parts`` counted once (a mean weighted by set size), next to the per-set rows."""
    total = sum(counts[p] for p in parts)
    names = set.intersection(*(set(results[p]) for p in parts))
    return {n: {m: sum(results[p][n][m] * counts[p] for p in parts) / total for m in metrics} for n in names}


ROWS = (
    ("synth: tempo Acc1", "synth", "tempo_acc1", ">= 0.90"),
    ("synth: tempo Acc2", "synth", "tempo_acc2", ">= 0.98"),
    ("synth: key MIREX weighted", "synth", "key_weighted", ">= 0.85"),
    ("synth: key exact", "synth", "key_exact", ""),
    ("synth: key Camelot-compatible", "synth", "key_camelot_compatible", ">= 0.92"),
    ("loops: tempo Acc1", "loops", "tempo_acc1", ">= 0.90"),
    ("loops: tempo Acc2", "loops", "tempo_acc2", ">= 0.98"),
    ("pooled (synth+loops): Acc1", "pooled", "tempo_acc1", ">= 0.90"),
    ("pooled (synth+loops): Acc2", "pooled", "tempo_acc2", ">= 0.98"),
    ("real: invariance tempo", "invariance", "invariance_tempo", ""),
    ("real: invariance key", "invariance", "invariance_key", ""),
    ("real: invariance (both)", "invariance", "invariance", ">= 0.90"),
    ("real: invariance, confident", "invariance", "invariance_confident", ""),
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.analysis", description=__doc__.splitlines()[0])
    ap.add_argument("--synth", type=int, default=48, help="rendered tracks with known tempo and key (default 48)")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds per rendered track (default 30)")
    ap.add_argument("--invariance", type=int, default=8, help="real dev-set tracks to transform (default 8; 0 skips)")
    ap.add_argument("--no-loops", action="store_true", help="skip the Sonic Pi loops")
    ap.add_argument("--no-librosa", action="store_true", help="skip the librosa baseline")
    ap.add_argument("--devmusic", type=Path, default=Path(os.environ.get("MIXWITH_DEVMUSIC", "/work/devmusic")))
    ap.add_argument("--out", type=Path, default=Path("bench/out"))
    ap.add_argument("-v", "--verbose", action="store_true", help="list our misses")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    ms = methods(with_librosa=not args.no_librosa)
    warm = synth_items(count=1, duration_s=8.0)[0].y
    for m in ms.values():
        m(warm, SR)  # JIT and caches outside the timings

    timer = Timer()
    results: dict[str, dict[str, dict[str, float]]] = {}
    counts: dict[str, int] = {}
    t_wall = time.time()
    synth = synth_items(count=args.synth, duration_s=args.duration)
    counts["synth"] = len(synth)
    results["synth"] = _score_truth(synth, ms, timer, verbose=args.verbose)
    if not args.no_loops:
        loops = loop_items(args.devmusic)
        counts["loops"] = len(loops)
        if loops:
            results["loops"] = _score_truth(loops, ms, timer, verbose=args.verbose)
    if "synth" in results and "loops" in results:
        results["pooled"] = _pooled(results, counts, ("synth", "loops"), ("tempo_acc1", "tempo_acc2"))
        counts["pooled"] = counts["synth"] + counts["loops"]
    if args.invariance > 0:
        sets = invariance_items(args.devmusic, args.out / "cache", count=args.invariance)
        counts["invariance"] = sum(len(v) for _, v in sets)
        if sets:
            results["invariance"] = _score_invariance(sets, ms, timer, verbose=args.verbose)

    names = list(ms)
    head = f"{'metric':34} {'target':>8} " + " ".join(f"{n:>10}" for n in names)
    lines = [head, "-" * len(head)]
    for label, part, metric, target in ROWS:
        if part not in results:
            continue
        vals = [results[part].get(n, {}).get(metric) for n in names]
        n_items = counts.get(part, 0)
        if metric == "invariance_confident":  # counts checks (tempo and key), not variants
            n_items = int(results[part].get("mixwith", {}).get("n_confident_checks", 0))
        lines.append(f"{label + f' (n={n_items})':34} {target:>8} " + " ".join(
            f"{v:>10.3f}" if v is not None else f"{'-':>10}" for v in vals))
    speeds = {n: timer.speed(n) for n in names}
    lines.append(f"{'speed, x realtime per core':34} {'>= 150':>8} " + " ".join(f"{speeds[n]:>10.0f}" for n in names))
    if "essentia" in speeds:
        lines.append(f"{'speed vs essentia':34} {'>= 3':>8} " + " ".join(
            f"{speeds[n] / speeds['essentia']:>10.2f}" for n in names))
    else:
        lines.append("essentia: not importable, peer skipped")
    table = "\n".join(lines)
    print(table)
    print(f"({time.time() - t_wall:.0f} s wall)")

    args.out.mkdir(parents=True, exist_ok=True)
    report = {"args": {k: str(v) for k, v in vars(args).items()}, "counts": counts, "results": results,
              "speed_x_realtime_per_core": speeds, "table": table}
    (args.out / "analysis.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
