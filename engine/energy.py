"""Energy on the 1–10 scale DJs know, and integrated loudness in LUFS.

Energy blends loudness, onset density and brightness, each mapped to 0–1 by
ranges typical of dance music.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.errors import ParameterError
from engine.spectrum import Spectrogram


# Onset strength (mean log-flux per band) below which nothing counts as an attack.
ONSET_FLOOR = 0.25


@dataclass(frozen=True)
class EnergyEstimate:
    """Attributes
    ----------
    energy : int
        1 (ambient) to 10 (peak time).
    loudness_lufs : float
        Integrated loudness, ITU-R BS.1770-4, in LUFS.
    """

    energy: int
    loudness_lufs: float


def k_weighting(*, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """ITU-R BS.1770 K-weighting (high shelf, then high-pass) as one filter.

    The two biquads are designed for ``sr`` by the bilinear transform of
    their analogue prototypes (the coefficients the standard tabulates at
    48 kHz), so 22.05 kHz analysis audio is weighted correctly.

    Returns
    -------
    b, a : np.ndarray [shape=(5,)]
        Numerator and denominator of the cascaded filter.
    """
    # stage 1: +4 dB shelf above ~1.7 kHz (the head's acoustic effect)
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = np.tan(np.pi * f0 / sr)
    vh = 10.0 ** (gain_db / 20.0)
    vb = vh ** 0.4996667741545416
    a0 = 1.0 + k / q + k * k
    b1 = np.array([(vh + vb * k / q + k * k) / a0, 2.0 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0])
    a1 = np.array([1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0])
    # stage 2: high-pass at ~38 Hz (RLB weighting)
    f0, q = 38.13547087602444, 0.5003270373238773
    k = np.tan(np.pi * f0 / sr)
    a0 = 1.0 + k / q + k * k
    b2 = np.array([1.0, -2.0, 1.0])
    a2 = np.array([1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0])
    return np.convolve(b1, b2), np.convolve(a1, a2)


def integrated_loudness(y: np.ndarray, *, sr: int) -> float:
    """Integrated loudness of mono audio in LUFS (ITU-R BS.1770-4).

    K-weighted mean square over 400 ms blocks with 75 % overlap, gated at
    -70 LUFS absolute and 10 LU below the ungated mean.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
    sr : int

    Returns
    -------
    float
        -70.0 for silence.
    """
    from scipy.signal import lfilter

    if y.ndim != 1:
        raise ParameterError(f"expected mono audio, got shape {y.shape}")
    b, a = k_weighting(sr=sr)
    z = lfilter(b, a, y.astype(np.float64))
    block = int(round(0.4 * sr))
    hop = block // 4
    sq = np.square(z)
    if len(z) < block:
        ms = np.array([sq.mean()]) if len(z) else np.array([0.0])
    else:
        c = np.concatenate([[0.0], np.cumsum(sq)])
        starts = np.arange(0, len(z) - block + 1, hop)
        ms = (c[starts + block] - c[starts]) / block
    lk = -0.691 + 10 * np.log10(ms + 1e-20)
    gated = ms[lk > -70.0]
    if gated.size == 0:
        return -70.0
    rel = -0.691 + 10 * np.log10(gated.mean()) - 10.0
    gated = ms[(lk > -70.0) & (lk > rel)]
    return float(-0.691 + 10 * np.log10(gated.mean()))


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
    if y.ndim != 1:
        raise ParameterError(f"expected mono audio, got shape {y.shape}")
    # relative threshold finds the accents; the absolute floor keeps a
    # drone's ripples from counting as onsets (the envelope is level-free)
    thr = max(onset_env.mean() + onset_env.std(), ONSET_FLOOR)
    peaks = np.sum((onset_env[1:-1] > thr) & (onset_env[1:-1] >= onset_env[:-2]) & (onset_env[1:-1] > onset_env[2:]))
    duration = len(y) / spec.sr
    density = np.clip((peaks / max(duration, 1e-3)) / 8.0, 0, 1)  # up to 8 onsets/s
    power = spec.S.sum(axis=0) + 1e-9
    centroid = float(np.median((spec.freqs[:, None] * spec.S).sum(axis=0) / power))
    bright = np.clip((centroid - 500.0) / 3000.0, 0, 1)
    score = 0.45 * loud + 0.35 * density + 0.20 * bright
    return EnergyEstimate(energy=int(np.clip(1 + round(score * 9), 1, 10)), loudness_lufs=round(lufs, 1))
