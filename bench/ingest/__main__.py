"""CPU cost of ingesting real files: one decode per file against a decode per step.

    python -m bench.ingest [--manifest /work/devmusic/manifest.tsv] [--files 40]

For each dev-set file (≥ 30 s) both ways run in this process, one after the
other on the same file (so both read it from a warm page cache):

- *baseline, a decode per step* — what ``catalog add`` did before: the
  analysis decode, then ``fingerprint_file`` and ``embed_file``, each decoding
  the file again with ffmpeg;
- *one decode* — ``process_file`` with ``FileWork(fingerprint, embed)``: the
  analysis' decode is resampled for the fingerprints and the embedder.

CPU seconds include the ffmpeg child processes (``os.times``). Agreement
columns check that the one-decode results are the same: share of the
baseline's hashes found, cosine of the track vectors.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from workers.catalog import FileWork, process_file
from workers.embedding import embed_file, process_embedder, read_manifest
from workers.identify import fingerprint_file
from workers.settings import AudioSettings, EmbedSettings

MANIFEST = Path("/work/devmusic/manifest.tsv")


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", type=Path, default=MANIFEST)
    ap.add_argument("--files", type=int, default=40, help="dev files of at least 30 s to ingest")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    audio, embed = AudioSettings(processes=1), EmbedSettings(threads=1)
    embedder, version = process_embedder(embed)  # loaded once, outside the timings, as in a warm pool
    paths = [str(e.path) for e in read_manifest(args.manifest)]
    work = FileWork(fingerprint=True, embed=embed)
    warm = next(p for p in paths if process_file(p, audio).error is None)  # numba and imports, untimed
    process_file(warm, audio, work)

    base_cpu = one_cpu = seconds = 0.0
    shares, cosines, n = [], [], 0
    t_start = time.perf_counter()
    for p in paths:
        if n >= args.files:
            break
        t0 = _cpu()
        analysed = process_file(p, audio)
        if analysed.error is not None or analysed.analysis["duration"] < 30.0:
            continue
        fps = fingerprint_file(p, audio)
        emb = embed_file(p, embedder=embedder, model_version=version, limits=audio.limits,
                         max_seconds=embed.max_seconds)
        t1 = _cpu()
        once = process_file(p, audio, work)
        t2 = _cpu()
        if once.fingerprints is None or once.embedding is None:
            raise SystemExit(f"one-decode path failed on {p}: {once.fingerprint_error or once.embed_error}")
        base_cpu += t1 - t0
        one_cpu += t2 - t1
        seconds += fps.duration_s
        shares.append(float(np.isin(fps.hashes, once.fingerprints.hashes).mean()))
        cosines.append(float(once.embedding.vector @ emb.vector))
        n += 1
    wall = time.perf_counter() - t_start
    hours = seconds / 3600
    print(f"{n} files, {seconds / 60:.1f} min of audio; analysis of the first {audio.analysis_seconds:g} s, "
          f"fingerprints of whole files, embedding of the first {embed.max_seconds:g} s; one thread; "
          f"load average {os.getloadavg()[0]:.1f} at the end; {wall:.0f} s wall for both")
    print(f"{'method':<32} {'CPU s':>8} {'CPU s per h':>12} {'x realtime':>11}")
    for name, cpu in (("baseline: a decode per step", base_cpu), ("one decode per file", one_cpu)):
        print(f"{name:<32} {cpu:8.1f} {cpu / hours:12.0f} {seconds / cpu:11.0f}")
    print(f"one decode / baseline CPU: {one_cpu / base_cpu:.2f}")
    print(f"agreement: baseline hashes found min {min(shares):.3f} mean {np.mean(shares):.3f}; "
          f"track-vector cosine min {min(cosines):.4f} mean {np.mean(cosines):.4f}")


if __name__ == "__main__":
    main()
