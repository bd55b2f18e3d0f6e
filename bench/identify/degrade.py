"""Phone-memo degradations of clean excerpts, with known answers.

A query is an excerpt of a catalog track, optionally played faster or slower
(resampled: tempo and pitch together, like a DJ's pitch fader without key
lock), then a synthetic room (exponentially decaying noise impulse response
of a given RT60 and direct-to-reverberant ratio), a phone's band-pass,
babble-like crowd noise at a given SNR and AAC at 64 kbps in an .m4a
container (real ffmpeg).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.ndimage import uniform_filter1d
from scipy.signal import butter, fftconvolve, resample_poly, sosfilt

from engine.degrade import room_impulse

DRR_DB = (-3.0, 6.0)
"""Range of the direct-to-reverberant ratio of the synthetic rooms (uniform), in dB."""


@dataclass(frozen=True)
class Condition:
    """One benchmark condition.

    Attributes
    ----------
    duration_s : float
        Query length after the speed change.
    snr_db : float
        Babble-to-music power ratio (music over noise).
    speed : float
        Playback speed of the clip relative to the catalog track.
    """

    duration_s: float
    snr_db: float
    speed: float = 1.0

    @property
    def name(self) -> str:
        sp = "" if self.speed == 1.0 else f" x{self.speed:.2f}"
        return f"{self.duration_s:g}s {self.snr_db:+g}dB{sp}"


def babble(rng: np.random.Generator, n: int, *, sr: int, talkers: int = 8) -> np.ndarray:
    """Crowd-like noise: talkers alternating voiced (buzz at a gliding f0) and unvoiced
    (noise) syllables at 3–6 Hz, each shaped to the speech band."""
    out = np.zeros(n)
    t = np.arange(n) / sr
    sos_speech = butter(2, [200, 3500], btype="bandpass", fs=sr, output="sos")
    smooth = max(1, int(0.04 * sr))
    for _ in range(talkers):
        f0 = rng.uniform(90, 240) * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(0.3, 1.5) * t + rng.uniform(0, 6)))
        cycles = np.cumsum(f0) / sr
        voiced = 2.0 * (cycles - np.floor(cycles)) - 1.0  # sawtooth: a glottal-like buzz
        unvoiced = rng.standard_normal(n)
        rate = rng.uniform(3, 6)
        n_syl = int(n / sr * rate) + 2
        per = int(np.ceil(n / n_syl))
        gate = np.repeat((rng.uniform(0, 1, n_syl) > 0.35).astype(float), per)[:n]
        is_voiced = np.repeat(rng.uniform(0, 1, n_syl) > 0.3, per)[:n]
        env = uniform_filter1d(gate, smooth)
        talker = sosfilt(sos_speech, np.where(is_voiced, voiced, unvoiced)) * env
        out += talker / (np.std(talker) + 1e-9) * rng.uniform(0.5, 1.0)
    return out


def change_speed(y: np.ndarray, speed: float) -> np.ndarray:
    """Play ``y`` ``speed`` times as fast (resampling: pitch moves with tempo)."""
    if speed == 1.0:
        return y
    frac = Fraction(speed).limit_denominator(200)
    return resample_poly(y, frac.denominator, frac.numerator)


def degrade(
    clean: np.ndarray,
    *,
    sr: int,
    condition: Condition,
    rng: np.random.Generator,
) -> np.ndarray:
    """Apply speed, room, phone band and crowd noise to a clean excerpt.

    ``clean`` must hold ``duration_s * speed`` seconds; the result holds ``duration_s``.
    """
    y = change_speed(clean.astype(np.float64), condition.speed)
    # direct-to-reverberant ratio drawn per query, independent of the sample rate
    h = room_impulse(sr=sr, rt60_s=rng.uniform(0.3, 0.8), rng=rng, drr_db=rng.uniform(*DRR_DB), n_reflections=6)
    y = fftconvolve(y, h)[: y.size]
    noise = babble(rng, y.size, sr=sr)
    p_music = np.mean(y**2) + 1e-12
    noise *= np.sqrt(p_music / (np.mean(noise**2) + 1e-12) / 10 ** (condition.snr_db / 10))
    y = y + noise
    sos = butter(4, [150, 7000], btype="bandpass", fs=sr, output="sos")
    y = sosfilt(sos, y)
    return (y / (np.max(np.abs(y)) + 1e-9) * 0.7).astype(np.float32)


def write_m4a(y: np.ndarray, path: Path, *, sr: int, bitrate: str = "64k") -> None:
    """Encode mono ``y`` as AAC in an .m4a container with ffmpeg."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise RuntimeError("ffmpeg is needed for the benchmark queries")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        sf.write(tmp.name, y, sr, subtype="PCM_16")
        subprocess.run(
            [exe, "-nostdin", "-v", "error", "-y", "-i", tmp.name, "-c:a", "aac", "-b:a", bitrate, str(path)],
            check=True,
        )
