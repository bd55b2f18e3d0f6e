"""Key estimation on synthesized audio with known answers."""

import numpy as np
import pytest

from engine.camelot import ALL_KEYS, Key
from engine.errors import ParameterError
from engine.key import estimate_key, estimate_tuning
from engine.spectrum import stft_magnitude
from engine.synth import TrackSpec, render

SR = 22050


def _spec(y: np.ndarray):
    return stft_magnitude(y, sr=SR, n_fft=8192, hop_length=4096)


def _tones(midis: list[float], *, duration_s: float = 4.0) -> np.ndarray:
    t = np.arange(int(duration_s * SR)) / SR
    return sum(0.2 * np.sin(2 * np.pi * 440.0 * 2 ** ((m - 69) / 12) * t) for m in midis).astype(np.float32)


@pytest.mark.parametrize("key", ALL_KEYS, ids=lambda k: k.camelot)
def test_all_24_keys(key: Key) -> None:
    """Every key is recognised at least as its Camelot neighbourhood, most exactly."""
    y = render(TrackSpec("house", 124.0, key, duration_s=16.0, seed=key.tonic + (12 if key.mode == "minor" else 0), progression=3))
    est = estimate_key(_spec(y)).key
    assert est == key


@pytest.mark.parametrize("cents", [-45.0, -25.0, 25.0, 45.0])
def test_detuned(cents: float) -> None:
    """A track detuned by up to ±45 cents keeps its key."""
    key = Key(5, "minor")
    y = render(TrackSpec("techno", 130.0, key, duration_s=16.0, seed=3, progression=1, detune_cents=cents))
    est = estimate_key(_spec(y))
    assert est.key == key
    assert abs(est.tuning_cents - cents) < 8.0


@pytest.mark.parametrize("cents", [-30.0, 0.0, 20.0, 40.0])
def test_tuning_of_pure_tones(cents: float) -> None:
    """Tuning offset of a detuned chord is measured within 3 cents."""
    y = _tones([57 + cents / 100, 60 + cents / 100, 64 + cents / 100, 69 + cents / 100])
    assert abs(100 * estimate_tuning(_spec(y)) - cents) < 3.0


def test_relative_minor_is_not_major() -> None:
    """A minor progression (i-iv-v-i) is minor, not its relative major."""
    key = Key(9, "minor")
    y = render(TrackSpec("disco", 118.0, key, duration_s=16.0, seed=21, progression=1))
    assert estimate_key(_spec(y)).key == key


def test_key_change_flagged() -> None:
    """Two long halves a tritone apart are flagged as a key change."""
    a = render(TrackSpec("house", 124.0, Key(0, "major"), duration_s=40.0, seed=1, progression=3))
    b = render(TrackSpec("house", 124.0, Key(6, "major"), duration_s=40.0, seed=2, progression=3))
    assert estimate_key(_spec(np.concatenate([a, b]))).changes
    assert not estimate_key(_spec(np.concatenate([a, a]))).changes


def test_confidence_orders_tonal_over_noise() -> None:
    """Music is more confidently keyed than noise."""
    noise = np.random.default_rng(0).standard_normal(16 * SR).astype(np.float32) * 0.1
    music = render(TrackSpec("trance", 136.0, Key(2, "major"), duration_s=16.0, seed=8, progression=0))
    assert estimate_key(_spec(noise)).confidence < estimate_key(_spec(music)).confidence


def test_coarse_spectrum_refused() -> None:
    """A spectrogram too coarse for bass notes raises ParameterError."""
    y = _tones([60.0])
    with pytest.raises(ParameterError):
        estimate_key(stft_magnitude(y, sr=SR, n_fft=1024, hop_length=512))


def _bright_chords(chords: list[list[int]], *, harmonics: int = 10, rolloff: float = 0.95) -> np.ndarray:
    """Chords of tones whose overtones are nearly as loud as their fundamentals."""
    t = np.arange(int(2.0 * SR)) / SR
    bars = []
    for chord in chords:
        y = np.zeros_like(t)
        for m in chord:
            f = 440.0 * 2 ** ((m - 69) / 12)
            for h in range(1, harmonics + 1):
                if f * h < SR / 2:
                    y += rolloff ** (h - 1) * np.sin(2 * np.pi * f * h * t)
        bars.append(y * np.minimum(t / 0.02, 1.0) * np.exp(-t * 0.3))
    y = np.concatenate(bars * 3)
    return (y / np.abs(y).max() * 0.5).astype(np.float32)


def test_minor_with_strong_overtones() -> None:
    """Bright A minor chords (3rd and 5th harmonics sound E, C#, G#...) stay A minor, not C or A major."""
    a = 57
    y = _bright_chords([[a - 12, a, a + 3, a + 7], [a - 12, a, a + 3, a + 7], [a - 7, a + 5, a + 8, a + 12], [a - 12, a, a + 3, a + 7]])
    assert estimate_key(_spec(y)).key == Key(9, "minor")


def test_tuning_falls_back_to_a440_on_noise() -> None:
    """White noise has no tuning: the estimate falls back to 0 cents instead of wandering."""
    noise = np.random.default_rng(1).standard_normal(20 * SR).astype(np.float32) * 0.1
    assert estimate_tuning(_spec(noise)) == 0.0
    assert estimate_key(_spec(noise)).tuning_cents == 0.0


@pytest.mark.parametrize("key", [Key(9, "minor"), Key(0, "major"), Key(4, "minor")], ids=lambda k: k.camelot)
def test_beatless_drone_key(key: Key) -> None:
    """An ambient drone without drums still gives its key."""
    from engine.synth import render_drone

    assert estimate_key(_spec(render_drone(key, duration_s=20.0))).key == key


@pytest.mark.parametrize(
    ("first", "second", "seconds"),
    [(Key(0, "major"), Key(2, "major"), (80, 40)), (Key(9, "minor"), Key(11, "minor"), (90, 30)),
     (Key(0, "major"), Key(2, "major"), (40, 80))],
)
def test_late_or_early_key_change_flagged(first: Key, second: Key, seconds: tuple[int, int]) -> None:
    """A whole-step modulation for the last third or quarter (a last chorus), or after
    an intro in another key, is flagged: the halves alone blur it into one key."""
    a = render(TrackSpec("house", 124.0, first, duration_s=seconds[0], seed=1, progression=3))
    b = render(TrackSpec("house", 124.0, second, duration_s=seconds[1], seed=2, progression=3))
    assert estimate_key(_spec(np.concatenate([a, b]))).changes


def test_long_track_in_one_key_not_flagged() -> None:
    """Two and a half minutes in one key, with breakdowns and chord changes, are not a key change."""
    for key, style in ((Key(4, "minor"), "techno"), (Key(7, "major"), "disco")):
        y = render(TrackSpec(style, 126.0, key, duration_s=150.0, seed=7))
        assert not estimate_key(_spec(y)).changes
