"""Ground truth for the analysis benchmark.

Three sources, none of which is committed audio:

* ``synth_items``: tracks rendered by ``engine.synth`` with known tempo and
  key, tempos 70–180 across eight styles (each style's range widened to the
  edges it is really played at), all 24 keys, detuned by up to ±30 cents.
* ``loop_items``: Sonic Pi's CC0 loop samples from the dev set. A loop is a
  whole number of 4/4 bars, so its length gives its tempo: of ½, 1, 2, 4 and
  8 bars, the bar counts that give a tempo in 70–180 BPM are the truth (two
  counts can fit — e.g. 6.86 s is 2 bars at 70 or 4 bars at 140 — then
  either answer counts). The loop is repeated to 24 s, as a DJ would loop it.
  Loops measured to have no beat (``NO_BEAT_LOOPS``) expect bpm 0.
* ``invariance_items``: real dev-set music (game soundtracks under free
  licences), 45 s excerpts, each time-stretched by ±4 % and pitch-shifted by
  ±1 and ±2 semitones with ffmpeg's ``rubberband`` filter. No truth is
  known; an estimate must move by the same ratio / Camelot step.
"""

from __future__ import annotations

import csv
import logging
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.audio import DecodeLimits, load
from engine.camelot import Key
from engine.synth import STYLES, TrackSpec, render

logger = logging.getLogger(__name__)

SR = 22050
# Each style at the edges of the tempo range it is played at.
BENCH_BPM = {
    "hip-hop": (70, 100), "downtempo": (70, 110), "disco": (100, 126), "house": (115, 130),
    "techno": (125, 150), "trance": (128, 145), "dubstep": (138, 150), "drum & bass": (160, 180),
}
LOOP_BARS = (0.5, 1.0, 2.0, 4.0, 8.0)
# Expected tempo of audio without a beat (what the engine reports then).
NO_BEAT = 0.0
# Loops without a beat, by measurement rather than by name. A loop starts on
# its downbeat, so the beat grid its length implies is known: in the 15 other
# loops the onset envelope's mass within 50 ms of that grid's quarter notes is
# 1.5-9x what chance gives, and they have 1.5-6.5 strong onsets (> 0.3 of the
# level-free envelope) per second. These two sit at chance on the quarter,
# eighth and sixteenth grids alike (0.8-1.1x) with 0-0.2 strong onsets per
# second: sound that moves, but nothing to count. (loop_weirdo is also soft,
# 0 strong onsets/s, but its onsets sit on the quarter-note grid at 1.5x
# chance, so it keeps its loop tempo.) See notes/issue-3.md.
NO_BEAT_LOOPS = frozenset({"loop_drone_g_97", "loop_3d_printer"})
TEMPO_RANGE = (70.0, 180.0)


@dataclass(frozen=True)
class Item:
    """One piece of benchmark audio.

    Attributes
    ----------
    name : str
    y : np.ndarray [shape=(n,), dtype=float32]
    bpms : tuple of float
        Acceptable tempos (empty: unknown).
    key : Key or None
    """

    name: str
    y: np.ndarray = field(repr=False)
    bpms: tuple[float, ...] = ()
    key: Key | None = None


def synth_items(*, count: int, duration_s: float = 30.0, seed: int = 2026) -> list[Item]:
    """``count`` rendered tracks covering every style, tempos 70–180 and all 24 keys."""
    rng = np.random.default_rng(seed)
    keys = [Key(t, m) for m in ("minor", "major") for t in range(12)]
    rng.shuffle(keys)
    names = list(STYLES)
    items = []
    for i in range(count):
        style = names[i % len(names)]
        lo, hi = BENCH_BPM[style]
        bpm = round(float(rng.uniform(lo, hi)), 1)
        spec = TrackSpec(
            style=style, bpm=bpm, key=keys[i % 24], duration_s=duration_s, seed=seed + i,
            detune_cents=round(float(rng.uniform(-30, 30)), 1),
        )
        items.append(Item(f"synth/{style}/{bpm}/{spec.key.camelot}", render(spec, sr=SR), (bpm,), spec.key))
    return items


def _manifest(devmusic: Path) -> list[tuple[str, Path, str, float]]:
    """Rows of the dev-set manifest: id, path, group, duration in seconds (nan when unknown)."""
    path = devmusic / "manifest.tsv"
    if not path.is_file():
        return []
    rows = []
    with path.open() as f:
        for r in csv.reader(f, delimiter="\t"):
            if len(r) >= 3:
                try:
                    dur = float(r[3]) if len(r) > 3 else float("nan")
                except ValueError:
                    dur = float("nan")
                rows.append((r[0], Path(r[1]), r[2], dur))
    return rows


def loop_tempos(duration_s: float) -> tuple[float, ...]:
    """Tempos a loop of ``duration_s`` can have as ½–8 bars of 4/4 within 70–180 BPM."""
    lo, hi = TEMPO_RANGE
    return tuple(round(4 * bars * 60.0 / duration_s, 1) for bars in LOOP_BARS if lo <= 4 * bars * 60.0 / duration_s <= hi)


def loop_items(devmusic: Path, *, repeat_to_s: float = 24.0) -> list[Item]:
    """Sonic Pi loops with tempo from loop length (see module docstring)."""
    items = []
    for _, path, group, _dur in _manifest(devmusic):
        if group != "sonic-pi-samples" or not path.name.startswith("loop_"):
            continue
        y = load(path, sr=SR, check_silence=False, limits=DecodeLimits(min_duration_s=0.1))
        # the exact length in samples at the file's own rate fixes the tempo
        import soundfile as sf

        info = sf.info(str(path))
        tempos = (NO_BEAT,) if path.stem in NO_BEAT_LOOPS else loop_tempos(info.frames / info.samplerate)
        if not tempos:
            logger.warning("no bar count fits %s (%.2f s)", path.name, info.frames / info.samplerate)
            continue
        reps = int(np.ceil(repeat_to_s * SR / len(y)))
        items.append(Item(f"loop/{path.stem}", np.tile(y, reps)[: int(repeat_to_s * SR)], tempos))
    return items


@dataclass(frozen=True)
class Variant:
    """A transformed copy of a real track.

    Attributes
    ----------
    tempo_ratio : float
        Expected ratio of the new tempo to the original's.
    semitones : int
        Expected key transposition.
    """

    name: str
    y: np.ndarray = field(repr=False)
    tempo_ratio: float
    semitones: int


TRANSFORMS = (
    ("tempo+4%", "rubberband=tempo=1.04", 1.04, 0),
    ("tempo-4%", "rubberband=tempo=0.96", 0.96, 0),
    ("pitch+1", f"rubberband=pitch={2 ** (1 / 12):.6f}", 1.0, 1),
    ("pitch-1", f"rubberband=pitch={2 ** (-1 / 12):.6f}", 1.0, -1),
    ("pitch+2", f"rubberband=pitch={2 ** (2 / 12):.6f}", 1.0, 2),
    ("pitch-2", f"rubberband=pitch={2 ** (-2 / 12):.6f}", 1.0, -2),
)


def invariance_items(
    devmusic: Path, cache: Path, *, count: int, excerpt_s: float = 45.0, offset_s: float = 20.0
) -> list[tuple[Item, list[Variant]]]:
    """``count`` real tracks (spread over the dev set) with their transformed copies."""
    if shutil.which("ffmpeg") is None:
        logger.warning("ffmpeg missing: no invariance set")
        return []
    # whole pieces only: long enough for the excerpt (the dev set also holds jingles)
    rows = [(i, p, g) for i, p, g, d in _manifest(devmusic)
            if g != "sonic-pi-samples" and d >= offset_s + excerpt_s and p.is_file()]
    if not rows or count <= 0:
        return []
    picks = [rows[int(j)] for j in np.linspace(0, len(rows) - 1, min(count, len(rows)))]
    cache.mkdir(parents=True, exist_ok=True)
    out = []
    for ident, path, group in picks:
        orig = _render_variant(path, cache / f"{ident}-orig.flac", "anull", excerpt_s, offset_s)
        if orig is None or len(orig) < 20 * SR:
            continue
        variants = []
        for name, filt, ratio, semis in TRANSFORMS:
            y = _render_variant(path, cache / f"{ident}-{name}.flac", filt, excerpt_s, offset_s)
            if y is not None:
                variants.append(Variant(f"{ident}/{name}", y, ratio, semis))
        out.append((Item(f"{group}/{path.stem}", orig), variants))
    return out


def _render_variant(src: Path, dst: Path, filt: str, excerpt_s: float, offset_s: float) -> np.ndarray | None:
    if not dst.exists():
        cmd = [
            "ffmpeg", "-nostdin", "-v", "error", "-y", "-ss", f"{offset_s}", "-t", f"{excerpt_s}", "-i", str(src),
            "-af", filt, "-ac", "1", "-ar", str(SR), str(dst),
        ]
        proc = subprocess.run(cmd, capture_output=True, timeout=300, check=False)
        if proc.returncode != 0:
            logger.warning("ffmpeg %s on %s failed: %s", filt, src.name, proc.stderr[-200:])
            return None
    try:
        return load(dst, sr=SR)
    except Exception as exc:  # a silent or broken excerpt just leaves the set
        logger.warning("skipping %s: %s", dst.name, exc)
        return None
