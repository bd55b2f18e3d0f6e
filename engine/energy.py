"""Energy on the 1–10 scale DJs know, and integrated loudness in LUFS.

Energy blends loudness, onset density and brightness, each mapped to 0–1 by
ranges typical of dance music.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.spectrum import Spectrogram


@dataclass(frozen=True)
class EnergyEstimate:
    """Attributes
    ----------
    energy : int
        1 (ambient) to 10 (peak time).
    loudness_lufs : float
        Integrated loudness, approximately ITU-R BS.1770 (K-weighting omitted).
    """

    energy: int
    loudness_lufs: float


def integrated_loudness(y: np.ndarray, *, sr: int) -> float:
    """Gated mean loudness over 400 ms blocks, in LUFS (approximate)."""
    block = int(0.4 * sr)
    hop = block // 4
    if len(y) < block:
        ms = float(np.mean(np.square(y)))
        return -0.691 + 10 * np.log10(ms + 1e-12)
    frames = np.lib.stride_tricks.sliding_window_view(y, block)[::hop]
    ms = np.mean(np.square(frames, dtype=np.float64), axis=1)
    lk = -0.691 + 10 * np.log10(ms + 1e-12)
    gated = ms[lk > -70.0]
    if gated.size == 0:
        return -70.0
    rel = -0.691 + 10 * np.log10(gated.mean()) - 10.0
    gated = ms[(lk > -70.0) & (lk > rel)]
    return float(-0.691 + 10 * np.log10(gated.mean() + 1e-12))


def estimate_energy(y: np.ndarray, spec: Spectrogram, *, onset_env: np.ndarray) -> EnergyEstimate:
    """Energy 1–10 from loudness, onset density and spectral centroid.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
    spec : Spectrogram
    onset_env : np.ndarray [shape=(n_frames,)]
        Onset strength (``engine.tempo.onset_strength``).
    """
    lufs = integrated_loudness(y, sr=spec.sr)
    loud = np.clip((lufs + 30.0) / 24.0, 0, 1)  # -30 LUFS quiet .. -6 LUFS slammed
    thr = onset_env.mean() + onset_env.std()
    peaks = np.sum((onset_env[1:-1] > thr) & (onset_env[1:-1] >= onset_env[:-2]) & (onset_env[1:-1] > onset_env[2:]))
    duration = len(y) / spec.sr
    density = np.clip((peaks / max(duration, 1e-3)) / 8.0, 0, 1)  # up to 8 onsets/s
    power = spec.S.sum(axis=0) + 1e-9
    centroid = float(np.median((spec.freqs[:, None] * spec.S).sum(axis=0) / power))
    bright = np.clip((centroid - 500.0) / 3000.0, 0, 1)
    score = 0.45 * loud + 0.35 * density + 0.20 * bright
    return EnergyEstimate(energy=int(np.clip(1 + round(score * 9), 1, 10)), loudness_lufs=round(lufs, 1))
