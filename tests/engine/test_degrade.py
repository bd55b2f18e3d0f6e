"""Synthetic phone-memo degradations: rooms with a known direct-to-reverberant ratio."""

from __future__ import annotations

import numpy as np
import pytest

from engine.degrade import room_impulse
from engine.errors import ParameterError


def _drr_db(h: np.ndarray) -> float:
    return float(10 * np.log10(h[0] ** 2 / np.sum(h[1:].astype(np.float64) ** 2)))


@pytest.mark.parametrize("drr_db", [-3.0, 0.0, 6.0])
@pytest.mark.parametrize("n_reflections", [0, 6])
def test_room_drr_is_as_asked_at_any_rate(drr_db: float, n_reflections: int) -> None:
    """The direct-to-reverberant ratio is the requested one at 8, 16 and 44.1 kHz."""
    for sr in (8000, 16000, 44100):
        h = room_impulse(sr=sr, rt60_s=0.6, rng=np.random.default_rng(3), drr_db=drr_db, n_reflections=n_reflections)
        assert h[0] == 1.0
        assert _drr_db(h) == pytest.approx(drr_db, abs=0.01)


def test_room_decays_by_rt60() -> None:
    """The tail's last tenth is at least 40 dB below its first tenth after the direct sound."""
    sr = 16000
    h = room_impulse(sr=sr, rt60_s=0.5, rng=np.random.default_rng(0))
    tenth = h.size // 10
    early = np.mean(h[int(0.006 * sr) : int(0.006 * sr) + tenth] ** 2)
    late = np.mean(h[-tenth:] ** 2)
    assert 10 * np.log10(early / late) > 40


def test_room_rejects_bad_parameters() -> None:
    """A non-positive RT60 is a parameter error."""
    with pytest.raises(ParameterError):
        room_impulse(sr=16000, rt60_s=0.0, rng=np.random.default_rng(0))
