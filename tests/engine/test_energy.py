"""Loudness (BS.1770) and the 1–10 energy scale."""

import numpy as np
import pytest

from engine.camelot import Key
from engine.energy import estimate_energy, integrated_loudness
from engine.errors import ParameterError
from engine.spectrum import stft_magnitude
from engine.synth import TrackSpec, render
from engine.tempo import onset_strength

SR = 22050


def _energy(y: np.ndarray) -> int:
    spec = stft_magnitude(y, sr=SR, n_fft=1024, hop_length=256)
    return estimate_energy(y, spec, onset_env=onset_strength(spec)).energy


@pytest.mark.parametrize("sr", [22050, 44100, 48000])
def test_sine_reference_level(sr: int) -> None:
    """A 1 kHz sine at -6 dBFS peak reads -9.0 LUFS at any rate (BS.1770 reference)."""
    t = np.arange(5 * sr) / sr
    y = 0.5 * np.sin(2 * np.pi * 1000.0 * t)
    assert integrated_loudness(y, sr=sr) == pytest.approx(-9.03, abs=0.1)


def test_matches_pyloudnorm() -> None:
    """Loudness of a rendered track agrees with pyloudnorm within 0.3 LU."""
    pyln = pytest.importorskip("pyloudnorm")
    y = render(TrackSpec("techno", 132.0, Key(1, "minor"), duration_s=12.0, seed=3))
    assert integrated_loudness(y, sr=SR) == pytest.approx(pyln.Meter(SR).integrated_loudness(y.astype(np.float64)), abs=0.3)


def test_low_bass_weighs_less() -> None:
    """K-weighting: a 30 Hz tone reads quieter than a 1 kHz tone of equal level."""
    t = np.arange(5 * SR) / SR
    low = integrated_loudness(0.5 * np.sin(2 * np.pi * 30.0 * t), sr=SR)
    mid = integrated_loudness(0.5 * np.sin(2 * np.pi * 1000.0 * t), sr=SR)
    assert low < mid - 2.0


def test_gain_shifts_loudness() -> None:
    """-20 dB of gain lowers the loudness by 20 LU."""
    y = render(TrackSpec("house", 124.0, Key(0, "major"), duration_s=10.0, seed=1))
    assert integrated_loudness(y, sr=SR) - integrated_loudness(0.1 * y, sr=SR) == pytest.approx(20.0, abs=0.05)


def test_silence_is_minus_70() -> None:
    """Digital silence sits at the -70 LUFS absolute gate."""
    assert integrated_loudness(np.zeros(SR * 3), sr=SR) == -70.0


def test_energy_orders_tracks() -> None:
    """A loud, busy techno track has more energy than a quiet, sparse downtempo one."""
    busy = render(TrackSpec("techno", 140.0, Key(9, "minor"), duration_s=15.0, seed=2))
    calm = 0.1 * render(TrackSpec("downtempo", 82.0, Key(9, "minor"), duration_s=15.0, seed=2))
    e_busy, e_calm = _energy(busy), _energy(calm)
    assert 1 <= e_calm < e_busy <= 10


def test_sustained_drone_is_low_energy() -> None:
    """A soft sustained chord without attacks rates at most 3."""
    t = np.arange(15 * SR) / SR
    y = sum(0.05 * np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)).astype(np.float32)
    assert _energy(y) <= 3


def test_stereo_refused() -> None:
    """Loudness wants mono; a 2-D array is a ParameterError."""
    with pytest.raises(ParameterError):
        integrated_loudness(np.zeros((2, SR)), sr=SR)
