"""audfprint (PyPI ``audfprint2``, MIT) as the benchmark peer, through its Python API.

Strongest settings from the issue: density 70 (``-n 70``), fanout 8 (``-F 8``),
4 sub-frame shifts at query time (``-i 4``); the other options keep the
command line's defaults (20-bit hashes, 100 entries per bucket, ``-N 5``
aligned hashes to report a match). The database is built once and every query
runs against it in this process (the CLI's batch mode, without re-loading).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DENSITY = 70.0
FANOUT = 8
QUERY_SHIFTS = 4
SAMPLE_RATE = 11025


def available() -> str | None:
    """None when audfprint2 imports, else the reason it cannot run."""
    try:
        import audfprint2.cli  # noqa: F401
    except Exception as exc:  # report any import failure in the table's note
        return f"audfprint2 does not import: {exc}"
    return None


def _analyzer(*, is_match: bool):
    from audfprint2.cli import setup_analyzer

    # (density, is_match, pks_per_frame, fanout, freq_sd, shifts, samplerate, continue_on_error, ffmpeg_path)
    return setup_analyzer(DENSITY, is_match, 5, FANOUT, 30.0, QUERY_SHIFTS if is_match else 1, SAMPLE_RATE, False, None)


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (ffmpeg decodes), user + system.

    The process's own share from ``time.process_time`` (os.times counts 10 ms ticks: too coarse
    for an in-process decode of a few ms); the children's from os.times, which is all there is.
    """
    t = os.times()
    return time.process_time() + t.children_user + t.children_system


def _hash_file(path: str) -> tuple[str, np.ndarray, float, float]:
    analyzer = _analyzer(is_match=False)
    t0 = cpu_seconds()
    hashes = analyzer.wavfile2hashes(path)
    return path, hashes, analyzer.soundfiledur, cpu_seconds() - t0


@dataclass
class PeerIndex:
    table: object
    names: list[str]
    db_bytes: int
    audio_s: float
    cpu_s: float


def build(ref_paths: list[Path], *, db_path: Path, workers: int = 2) -> PeerIndex:
    """Fingerprint the reference files (in ``workers`` processes) and save the database."""
    from audfprint2.core import hash_table

    ht = hash_table.HashTable(hashbits=20, depth=100, maxtime=16384)
    audio_s = cpu_s = 0.0
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for path, hashes, dur, secs in pool.map(_hash_file, [str(p) for p in ref_paths]):
            ht.store(path, hashes)
            audio_s += dur
            cpu_s += secs
    ht.params["samplerate"] = SAMPLE_RATE
    saved = ht.save(str(db_path))
    return PeerIndex(table=ht, names=list(ht.names), db_bytes=Path(saved).stat().st_size, audio_s=audio_s, cpu_s=cpu_s)


class PeerMatcher:
    """Query the peer's database; one analyzer and matcher for every query."""

    def __init__(self, index: PeerIndex) -> None:
        from audfprint2.cli import setup_matcher

        self._index = index
        self._analyzer = _analyzer(is_match=True)
        # (match_win, search_depth, min_count, max_matches, exact_count, find_time_range, ...)
        self._matcher = setup_matcher(2, 100, 5, 1, False, False, 0.05, False, False, False)

    def match(self, path: Path) -> tuple[str | None, float, float, int]:
        """(matched reference path or None, offset in s, CPU seconds taken with its decode, aligned hashes).

        The aligned-hash count is audfprint's match score: it names a track from ``min_count`` (5) up.
        """
        t0 = cpu_seconds()
        rslts, _dur, _n = self._matcher.match_file(self._analyzer, self._index.table, str(path))
        secs = cpu_seconds() - t0
        if len(rslts) == 0:
            return None, 0.0, secs, 0
        track, aligned, offset = int(rslts[0][0]), int(rslts[0][1]), int(rslts[0][2])
        hop_s = self._analyzer.n_hop / self._analyzer.target_sr
        return self._index.names[track], offset * hop_s, secs, aligned
