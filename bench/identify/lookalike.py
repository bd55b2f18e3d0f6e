"""Look-alike songs: tracks not in the catalog made from the same sounds as tracks that are.

    python -m bench.identify.lookalike

Songs built from one sample pack share drum hits and chord voicings exactly, which is what a
fingerprinter keys on; a DJ asking about one must not be told it is the other. The catalog is
six ``engine.synth`` tracks; the outside clips are excerpts of sixteen other specs of the same
synthesizer (other styles, keys and tempos, some sharing a catalog track's key or tempo), clean
and through the bench's phone-memo chain. The catalog's own memos show what the same acceptance
rule gives the right tracks. The table shows how many are accepted at several confidence
thresholds (the default calibration's threshold is marked).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import numpy as np

from bench.identify.__main__ import load_query
from bench.identify.degrade import Condition, degrade, write_m4a
from engine.fingerprint import FP_SR, REFERENCE_PARAMS, Calibration, fingerprint
from engine.fpindex import FingerprintIndex
from engine.synth import demo_specs, render

logger = logging.getLogger("bench.identify.lookalike")

GEN_SR = 16000
CATALOG = 6
CLIP_S = 10.0
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def _memo(y: np.ndarray, *, snr_db: float, seed: int, tmp: Path) -> np.ndarray:
    """``y`` through the bench's phone-memo chain (room, babble, band-pass, AAC 64 kbps), decoded again."""
    path = tmp / f"memo-{seed}.m4a"
    write_m4a(degrade(y, sr=GEN_SR, condition=Condition(CLIP_S, snr_db), rng=np.random.default_rng(seed)), path, sr=GEN_SR)
    return load_query(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=11, help="seed of the synthesized specs")
    ap.add_argument("--outside", type=int, default=16, help="outside specs (two excerpts each, clean and memo)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    specs = demo_specs(count=CATALOG + args.outside, duration_s=20.0, seed=args.seed)
    audio = [render(s, sr=GEN_SR) for s in specs]
    cal = Calibration()
    with tempfile.TemporaryDirectory(prefix="lookalike-") as d:
        tmp = Path(d)
        index = FingerprintIndex.open(tmp / "ix", create=True)
        index.add_many((i + 1, fingerprint(audio[i], sr=GEN_SR, params=REFERENCE_PARAMS)) for i in range(CATALOG))
        cases: list[tuple[int, int | None, np.ndarray]] = []  # (spec, true track or None, clip at FP_SR)
        for i in range(CATALOG):  # the catalog's own memos: three places in each track, 5 dB
            for k, start in enumerate((1.0, 5.0, 9.0)):
                clip = audio[i][int(start * GEN_SR) : int((start + CLIP_S) * GEN_SR)]
                cases.append((i, i + 1, _memo(clip, snr_db=5.0, seed=100 * i + k, tmp=tmp)))
        for j in range(CATALOG, len(specs)):
            for k, start in enumerate((2.0, 8.0)):
                clip = audio[j][int(start * GEN_SR) : int((start + CLIP_S) * GEN_SR)]
                cases.append((j, None, _clean(clip, tmp, name=f"c{j}-{k}")))
                cases.append((j, None, _memo(clip, snr_db=5.0, seed=1000 + 10 * j + k, tmp=tmp)))
        rows = []
        for spec, truth, y in cases:
            res = index.identify(y, sr=FP_SR, calibration=cal,
                           max_candidates=3)
            top = res.candidates[0] if res.candidates else None
            rows.append((spec, truth, top))
    own = [(t, c) for _, t, c in rows if t is not None]
    out = [(j, c) for j, t, c in rows if t is None]
    print(f"catalog: {CATALOG} synthesized tracks of 20 s; {len(own)} memos of them, {len(out)} clips of "
          f"{args.outside} other specs (half clean, half memo at 5 dB)")
    print(f"{'threshold':>9} | {'own memos accepted':>18} | {'look-alikes accepted':>20}")
    for th in sorted({*THRESHOLDS, cal.accept_confidence}):
        right = sum(c is not None and c.track_id == t and c.confidence >= th for t, c in own)
        fa = sum(c is not None and c.confidence >= th for _, c in out)
        mark = " (default)" if th == cal.accept_confidence else ""
        print(f"{th:>9.2f} | {right:>9}/{len(own):<8} | {fa:>10}/{len(out):<9}{mark}")
    for j, c in out:
        if c is not None and c.confidence >= cal.accept_confidence:
            s, m = specs[j], specs[c.track_id - 1]
            print(f"  accepted: {s.style} {s.bpm:g} BPM {s.key.camelot} as catalog {c.track_id} ({m.style} {m.bpm:g} BPM "
                  f"{m.key.camelot}), confidence {c.confidence:.3f}, verified {c.verified:.1f}, dense {c.dense_verified:.1f}")
    return 0


def _clean(y: np.ndarray, tmp: Path, *, name: str) -> np.ndarray:
    """A clean excerpt as the decoder hands it over (AAC 64 kbps, no room or noise)."""
    path = tmp / f"{name}.m4a"
    write_m4a(y / (np.max(np.abs(y)) + 1e-9) * 0.7, path, sr=GEN_SR)
    return load_query(path)


if __name__ == "__main__":
    raise SystemExit(main())
