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
import time
from pathlib import Path

import numpy as np
import torch

import bench.identify.__main__ as ident
from engine.audio import DecodeLimits, load, resample
from engine.device import configure_cpu_threads, select_device
from engine.fpnet.model import FP_NET_SR, FpNetConfig, count_parameters, save_model
from engine.fpnet.train import FpTrainConfig, train_fpnet

logger = logging.getLogger("bench.identify.neural")

BENCH_OUT = Path("/work/main/bench/out/identify")


def bench_tracks(bench_out: Path) -> tuple[list[ident.Track], list[ident.Track], list[ident.Track]]:
    """(all bench tracks, indexed, held out) from the bench's decoded cache under ``bench_out``."""
    # load_tracks reads its cache below the module's OUT; point it at the given bench output for this call
    saved = ident.OUT
    ident.OUT = bench_out
    try:
        tracks = ident.load_tracks(ident.MANIFEST, min_track_s=30.0, limit=None)
    finally:
        ident.OUT = saved
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
    cfg = FpTrainConfig(steps=args.steps, batch=args.batch, seed=args.seed, lr=args.lr)
    mcfg = FpNetConfig(dim=args.dim)
    res = train_fpnet(audio, sr=FP_NET_SR, config=cfg, model_config=mcfg, device=select_device(args.device),
                      on_log=lambda r: print(json.dumps(r), flush=True))
    extra = {"train": {"model": args.model, "files": len(audio), "audio_min": round(total_s / 60, 1),
                       "config": cfg.__dict__, "seconds": round(res.seconds),
                       "final_loss": res.history[-1]["loss"], "command": " ".join(sys.argv)},
             "n_params": count_parameters(res.model)}
    save_model(res.model, args.out, version=f"fpnet-{args.model.lower()}-s{args.seed}", extra=extra)
    print(f"saved {args.out} after {res.seconds:.0f} s")
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
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--threads", type=int, default=1)
    tr.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.cmd == "train":
        return cmd_train(args)
    return cmd_eval(args)


if __name__ == "__main__":
    raise SystemExit(main())
