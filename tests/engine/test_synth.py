"""The synthesizer renders what its spec says."""

import numpy as np
import pytest

from engine.camelot import Key
from engine.errors import ParameterError
from engine.synth import STYLES, TrackSpec, demo_specs, render

SR = 22050


def test_length_dtype_and_peak() -> None:
    """Output is float32 of the requested length, peak-normalised below full scale."""
    y = render(TrackSpec("house", 120.0, Key(0, "major"), duration_s=5.0))
    assert y.dtype == np.float32 and len(y) == 5 * SR
    assert 0.8 < np.max(np.abs(y)) <= 0.9


def test_seed_is_deterministic() -> None:
    """The same spec renders the same samples; another seed differs."""
    spec = TrackSpec("techno", 130.0, Key(3, "minor"), duration_s=4.0, seed=4)
    assert np.array_equal(render(spec), render(spec))
    assert not np.array_equal(render(spec), render(TrackSpec("techno", 130.0, Key(3, "minor"), duration_s=4.0, seed=5)))


def test_detune_moves_pitch() -> None:
    """detune_cents=+50 moves the whole harmony up a quarter tone."""
    base = TrackSpec("downtempo", 90.0, Key(9, "minor"), duration_s=8.0, seed=1, progression=1)
    shifted = TrackSpec("downtempo", 90.0, Key(9, "minor"), duration_s=8.0, seed=1, progression=1, detune_cents=50.0)

    def peak_hz(y: np.ndarray) -> float:
        mag = np.abs(np.fft.rfft(y))
        f = np.fft.rfftfreq(len(y), 1 / SR)
        band = (f > 200) & (f < 1000)  # chords, above kick and bass
        return float(f[band][np.argmax(mag[band])])

    assert peak_hz(render(shifted)) / peak_hz(render(base)) == pytest.approx(2 ** (0.5 / 12), rel=0.003)


def test_demo_specs_cover_keys_and_styles() -> None:
    """48 demo specs cover all 24 keys and every style within its tempo range."""
    specs = demo_specs(count=48)
    assert len({s.key for s in specs}) == 24
    assert {s.style for s in specs} == set(STYLES)
    for s in specs:
        lo, hi = STYLES[s.style].bpm_range
        assert lo <= s.bpm <= hi


def test_bad_spec_refused() -> None:
    """Unknown styles, absurd tempos and empty catalogs raise ParameterError."""
    with pytest.raises(ParameterError):
        render(TrackSpec("polka", 120.0, Key(0, "major")))
    with pytest.raises(ParameterError):
        render(TrackSpec("house", 5.0, Key(0, "major")))
    with pytest.raises(ParameterError):
        demo_specs(count=0)


def test_render_drone_length_and_level() -> None:
    """The beatless drone has the asked length and peaks at -1 dBFS."""
    from engine.synth import render_drone

    y = render_drone(Key(2, "minor"), duration_s=6.0, seed=3, sr=22050)
    assert y.shape == (6 * 22050,) and y.dtype == np.float32
    assert abs(float(np.max(np.abs(y))) - 0.89) < 1e-3
