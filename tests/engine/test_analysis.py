"""The single analysis entry point."""

import json

import numpy as np
import pytest

from engine.analysis import analyze
from engine.camelot import Key
from engine.errors import DecodeError, ParameterError
from engine.synth import TrackSpec, render

SR = 22050


def test_known_track() -> None:
    """A rendered drum & bass track in F minor reads 174 BPM, F minor, 4A, 9m."""
    y = render(TrackSpec("drum & bass", 174.0, Key(5, "minor"), duration_s=20.0, seed=6, progression=1))
    a = analyze(y, sr=SR)
    assert abs(a.bpm - 174.0) <= 1.0
    assert (a.key, a.camelot, a.open_key) == ("F minor", "4A", "9m")
    assert 1 <= a.energy <= 10 and -40.0 < a.loudness_lufs < 0.0
    assert a.duration == 20.0


def test_to_dict_is_json() -> None:
    """to_dict gives the JSON contract with every public field."""
    a = analyze(render(TrackSpec("house", 124.0, Key(0, "major"), duration_s=10.0, seed=1)), sr=SR)
    d = json.loads(json.dumps(a.to_dict()))
    for field in ("duration", "bpm", "bpm_alternates", "bpm_confidence", "key", "camelot", "open_key",
                  "key_confidence", "key_changes", "energy", "loudness_lufs", "version"):
        assert field in d
    assert isinstance(d["bpm_alternates"], list)


def test_silence_raises() -> None:
    """Silent audio is a DecodeError saying silent."""
    with pytest.raises(DecodeError, match="silent"):
        analyze(np.zeros(10 * SR, dtype=np.float32), sr=SR)


def test_stereo_raises() -> None:
    """Two-channel input is a ParameterError."""
    with pytest.raises(ParameterError):
        analyze(np.zeros((2, 10 * SR), dtype=np.float32), sr=SR)


def test_clicks_with_tone() -> None:
    """Clicks at 128 BPM over an A minor chord read 128 and stay within A minor's neighbourhood."""
    t = np.arange(12 * SR) / SR
    chord = sum(0.1 * np.sin(2 * np.pi * f * t) for f in (110.0, 220.0, 261.6, 329.6))
    clicks = np.zeros_like(t)
    for s in np.arange(0.05, 12.0, 60 / 128):
        i = int(s * SR)
        clicks[i : i + 100] += np.random.default_rng(int(i)).standard_normal(100) * 0.5
    a = analyze((chord + clicks).astype(np.float32), sr=SR)
    assert abs(a.bpm - 128.0) <= 0.5
    assert a.camelot in ("8A", "8B", "9A", "7A")
