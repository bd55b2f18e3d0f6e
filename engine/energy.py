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


# K-weighting's impulse response has decayed by 200 dB after this many
# samples at 22.05 kHz (its slowest pole, the 38 Hz high-pass, dies out within
# ~50 ms); at 48 kHz the cut-off is still far below any audible error.
_IR_LENGTH = 2048
_BLOCK_FFT = 1 << 14


def _impulse_response(b: np.ndarray, a: np.ndarray, *, n: int = _IR_LENGTH) -> np.ndarray:
    """First ``n`` samples of the IIR filter's impulse response.

    Evaluated on a dense grid of the unit circle and inverted, which needs no
    sample-by-sample recursion (and no scipy.signal, whose import costs
    seconds on a busy worker's first job).
    """
    n_grid = 4 * n  # time aliasing of the (decayed) tail is negligible
    w = np.exp(-1j * np.pi * np.arange(n_grid // 2 + 1) / (n_grid // 2))
    H = np.polyval(b[::-1], w) / np.polyval(a[::-1], w)
    return np.fft.irfft(H, n_grid)[:n]


def _fft_filter(y: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Linear convolution of ``y`` with a short FIR ``h`` (overlap-add), trimmed to len(y)."""
    m = len(h)
    step = _BLOCK_FFT - m + 1
    H = np.fft.rfft(h, _BLOCK_FFT)
    out = np.zeros(len(y) + _BLOCK_FFT)
    for start in range(0, len(y), step):
        seg = np.fft.irfft(np.fft.rfft(y[start : start + step], _BLOCK_FFT) * H, _BLOCK_FFT)
        out[start : start + _BLOCK_FFT] += seg
    return out[: len(y)]


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
    if y.ndim != 1:
        raise ParameterError(f"expected mono audio, got shape {y.shape}")
    z = _fft_filter(y.astype(np.float64), _impulse_response(*k_weighting(sr=sr)))
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
