"""Musical key estimation.

Baseline method: a pitch-class profile from the magnitude STFT (each bin's
energy given to its nearest pitch class, 55 Hz–2 kHz), correlated with
major and minor key profiles rotated to all 12 tonics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.camelot import Key
from engine.spectrum import Spectrogram

# Temperley-style profiles, a good fit for pop and electronic harmony.
MAJOR_PROFILE = np.array([5.0, 2.0, 3.5, 2.0, 4.5, 4.0, 2.0, 4.5, 2.0, 3.5, 1.5, 4.0])
MINOR_PROFILE = np.array([5.0, 2.0, 3.5, 4.5, 2.0, 4.0, 2.0, 4.5, 3.5, 2.0, 1.5, 4.0])


@dataclass(frozen=True)
class KeyEstimate:
    """An estimated key.

    Attributes
    ----------
    key : Key
    confidence : float
        0–1: margin of the best key over the runner-up.
    changes : bool
        True when halves of the track disagree on the key.
    """

    key: Key
    confidence: float
    changes: bool = False


def chroma(spec: Spectrogram, *, fmin: float = 55.0, fmax: float = 2000.0) -> np.ndarray:
    """Pitch-class energy per frame.

    Returns
    -------
    C : np.ndarray [shape=(12, n_frames)]
    """
    f = spec.freqs
    band = (f >= fmin) & (f <= fmax)
    midi = 69.0 + 12.0 * np.log2(f[band] / 440.0)
    pc = np.mod(np.round(midi), 12).astype(int)
    M = np.zeros((12, band.sum()), dtype=np.float32)
    M[pc, np.arange(band.sum())] = 1.0
    return M @ np.sqrt(spec.S[band])


def _best_key(profile: np.ndarray) -> tuple[Key, float, float]:
    p = profile / (np.linalg.norm(profile) + 1e-12)
    scores = []
    for mode, ref in (("major", MAJOR_PROFILE), ("minor", MINOR_PROFILE)):
        for t in range(12):
            r = np.roll(ref, t)
            scores.append((float(np.corrcoef(p, r)[0, 1]), Key(t, mode)))
    scores.sort(key=lambda s: s[0], reverse=True)
    return scores[0][1], scores[0][0], scores[1][0]


def estimate_key(spec: Spectrogram) -> KeyEstimate:
    """Estimate the key of the audio behind ``spec``.

    Parameters
    ----------
    spec : Spectrogram
        Frequency resolution of a few Hz (n_fft ≥ 4096 at 22.05 kHz) separates
        neighbouring semitones in the bass.
    """
    C = chroma(spec)
    key, best, second = _best_key(C.sum(axis=1))
    half = C.shape[1] // 2
    changes = False
    if half > 4:
        k1, _, _ = _best_key(C[:, :half].sum(axis=1))
        k2, _, _ = _best_key(C[:, half:].sum(axis=1))
        changes = k1 != k2 and k1.camelot_number != k2.camelot_number
    return KeyEstimate(key=key, confidence=float(np.clip((best - second) * 5, 0, 1)), changes=changes)
