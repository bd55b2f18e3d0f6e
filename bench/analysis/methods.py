"""The analysers compared: ours, librosa's standard recipe, essentia (optional peer).

Each method maps mono float32 audio at 22.05 kHz to (bpm, Key); the caller
times it with process CPU time, so the speed is per core.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from engine.analysis import analyze
from engine.camelot import Key, parse_key

logger = logging.getLogger(__name__)

Method = Callable[[np.ndarray, int], tuple[float, Key | None]]

# Krumhansl–Kessler probe-tone profiles (the classic Krumhansl–Schmuckler baseline).
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def mixwith(y: np.ndarray, sr: int) -> tuple[float, Key | None]:
    """Our engine: tempo, key and energy in one call (energy timed too)."""
    a = analyze(y, sr=sr)
    return a.bpm, parse_key(a.key)


def librosa_baseline(y: np.ndarray, sr: int) -> tuple[float, Key | None]:
    """librosa ``feature.tempo`` and Krumhansl–Schmuckler on mean ``chroma_cqt``."""
    import librosa

    bpm = float(librosa.feature.tempo(y=y, sr=sr)[0])
    c = librosa.feature.chroma_cqt(y=y, sr=sr).mean(axis=1)
    best, key = -np.inf, None
    for mode, prof in (("major", KK_MAJOR), ("minor", KK_MINOR)):
        for t in range(12):
            r = float(np.corrcoef(c, np.roll(prof, t))[0, 1])
            if r > best:
                best, key = r, Key(t, mode)
    return bpm, key


def essentia_peer() -> Method | None:
    """essentia RhythmExtractor2013 + KeyExtractor, or None when not importable (AGPL: peer only)."""
    try:
        import essentia
        import essentia.standard as es
    except Exception:  # not installed, or built for another numpy
        return None
    essentia.log.infoActive = False
    from scipy.signal import resample_poly

    rhythm = es.RhythmExtractor2013(method="multifeature")
    key_ex = es.KeyExtractor(profileType="edma", sampleRate=44100)

    def run(y: np.ndarray, sr: int) -> tuple[float, Key | None]:
        y44 = resample_poly(y, 2, 1).astype(np.float32) if sr == 22050 else y.astype(np.float32)
        bpm = float(rhythm(y44)[0])
        k, scale, _ = key_ex(y44)
        return bpm, parse_key(f"{k} {scale}")

    return run


def methods(*, with_librosa: bool = True) -> dict[str, Method]:
    """The methods available in this environment, ours first."""
    out: dict[str, Method] = {"mixwith": mixwith}
    if with_librosa:
        out["librosa"] = librosa_baseline
    peer = essentia_peer()
    if peer is not None:
        out["essentia"] = peer
    else:
        logger.info("essentia not importable: peer skipped")
    return out
