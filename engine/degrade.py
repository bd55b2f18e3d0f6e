"""Making clean audio sound like a phone recording in a club.

Used to build realistic queries for the demo, tests and benchmarks: room
reverb, crowd-like noise, a phone microphone's band, and AAC in .m4a.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
from scipy.signal import butter, fftconvolve, sosfiltfilt

from engine.errors import DecodeError, ParameterError


def room_impulse(
    *,
    sr: int,
    rt60_s: float,
    rng: np.random.Generator,
    drr_db: float = 6.0,
    n_reflections: int = 0,
) -> np.ndarray:
    """A synthetic room impulse response: direct path, early reflections, decaying noise tail.

    The reverberant part (reflections and tail) is scaled as a whole so that the
    direct-to-reverberant energy ratio is ``drr_db`` at any sample rate: the tail
    has one noise sample per sample, so scaling it per sample would make a higher
    rate more reverberant.

    Parameters
    ----------
    sr : int
    rt60_s : float > 0
        Time for the reverb to fall by 60 dB.
    rng : np.random.Generator
    drr_db : float
        Energy of the direct sound over the energy of everything after it, in dB.
    n_reflections : int >= 0
        Discrete early reflections between 2 and 30 ms.

    Returns
    -------
    np.ndarray [shape=(int(rt60_s * sr),), dtype=float32]
        ``h[0] = 1`` (the direct sound).
    """
    if rt60_s <= 0 or sr <= 0:
        raise ParameterError("rt60_s and sr must be positive")
    if n_reflections < 0:
        raise ParameterError("n_reflections must be non-negative")
    n = max(int(rt60_s * sr), int(0.031 * sr) + 1)
    t = np.arange(n) / sr
    rev = rng.standard_normal(n) * np.exp(-6.91 * t / rt60_s)  # 6.91 = ln(1000): -60 dB at rt60
    rev[: int(0.005 * sr) + 1] = 0.0  # the diffuse field arrives after ~5 ms
    tail_rms = np.sqrt(np.sum(rev**2))  # reflections are sized against the whole tail, not a sample of it
    for _ in range(n_reflections):
        rev[max(1, int(rng.uniform(0.002, 0.03) * sr))] += rng.uniform(-0.6, 0.6) * tail_rms
    rev *= np.sqrt(10 ** (-drr_db / 10) / (np.sum(rev**2) + 1e-12))
    rev[0] = 1.0
    return rev.astype(np.float32)


def babble(n: int, *, sr: int, rng: np.random.Generator, voices: int = 8) -> np.ndarray:
    """Crowd-like noise: several amplitude-modulated speech-band noises."""
    out = np.zeros(n)
    sos = butter(4, [200, 3000], btype="bandpass", fs=sr, output="sos")
    for _ in range(voices):
        v = sosfiltfilt(sos, rng.standard_normal(n))
        syll = rng.uniform(3, 6)  # syllables per second
        env = 0.5 * (1 + np.sin(2 * np.pi * syll * np.arange(n) / sr + rng.uniform(0, 2 * np.pi)))
        out += v * env
    return (out / (np.std(out) + 1e-12)).astype(np.float32)


def phone_memo(
    y: np.ndarray,
    *,
    sr: int,
    rng: np.random.Generator,
    snr_db: float = 5.0,
    rt60_s: float = 0.5,
    band_hz: tuple[float, float] = (150.0, 7000.0),
) -> np.ndarray:
    """Reverb, crowd noise at ``snr_db`` and a phone's band-pass, peak-normalised.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
    sr : int
    rng : np.random.Generator
    snr_db : float
        Signal-to-noise ratio of music to crowd.
    rt60_s : float
    band_hz : (low, high)

    Returns
    -------
    np.ndarray [shape=(n,), dtype=float32]
    """
    if y.ndim != 1 or y.size == 0:
        raise ParameterError("expected non-empty mono audio")
    wet = fftconvolve(y, room_impulse(sr=sr, rt60_s=rt60_s, rng=rng))[: len(y)]
    noise = babble(len(y), sr=sr, rng=rng)
    p_sig = np.mean(wet**2) + 1e-12
    wet = wet + noise * np.sqrt(p_sig / 10 ** (snr_db / 10))
    hi = min(band_hz[1], sr / 2 * 0.95)
    sos = butter(4, [band_hz[0], hi], btype="bandpass", fs=sr, output="sos")
    out = sosfiltfilt(sos, wet)
    return (out / (np.max(np.abs(out)) + 1e-12) * 0.9).astype(np.float32)


def write_aac(y: np.ndarray, *, sr: int, path: Path, bitrate_kbps: int = 64, timeout_s: float = 60.0) -> Path:
    """Encode mono audio to AAC in an .m4a file with ffmpeg, as a phone would.

    Raises
    ------
    DecodeError
        When ffmpeg is missing or fails.
    """
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise DecodeError("ffmpeg is not installed")
    cmd = [
        exe, "-nostdin", "-hide_banner", "-v", "error", "-y", "-f", "f32le", "-ar", str(sr), "-ac", "1",
        "-i", "pipe:0", "-c:a", "aac", "-b:a", f"{bitrate_kbps}k", str(path),
    ]
    proc = subprocess.run(cmd, input=y.astype("<f4").tobytes(), capture_output=True, timeout=timeout_s, check=False)
    if proc.returncode != 0:
        raise DecodeError(f"ffmpeg could not encode AAC: {proc.stderr.decode(errors='replace')[-200:]}")
    return path
