"""Tests for engine.embed.features (torch log-mel)."""

import numpy as np
import pytest
import torch

from engine.embed.features import N_MELS, SAMPLE_RATE, LogMel, log_mel_reference, mel_filterbank, n_frames
from engine.errors import ParameterError


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261122)


def test_shape_matches_frame_count(rng):
    """A batch of 3 s windows gives (batch, n_mels, n_frames)."""
    y = torch.from_numpy(rng.standard_normal((2, 3 * SAMPLE_RATE)).astype(np.float32))
    out = LogMel()(y)
    assert out.shape == (2, N_MELS, n_frames(3 * SAMPLE_RATE))


def test_matches_numpy_reference(rng):
    """The torch front end agrees with the float64 numpy reference."""
    y = (0.1 * rng.standard_normal(SAMPLE_RATE)).astype(np.float32)
    got = LogMel()(torch.from_numpy(y)[None])[0].numpy()
    np.testing.assert_allclose(got, log_mel_reference(y), atol=2e-3)


def test_tone_lands_in_the_right_band():
    """A 1 kHz sine peaks in the mel band whose filter peaks nearest 1 kHz."""
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    y = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    S = LogMel()(torch.from_numpy(y)[None])[0].numpy()
    fb = mel_filterbank(sr=SAMPLE_RATE, n_fft=1024, n_mels=N_MELS, fmin_hz=30.0, fmax_hz=8000.0)
    bin_1k = round(1000 * 1024 / SAMPLE_RATE)
    assert S.mean(axis=1).argmax() == fb[:, bin_1k].argmax()


def test_bad_band_edges_are_rejected():
    """fmax above Nyquist is a parameter error."""
    with pytest.raises(ParameterError):
        mel_filterbank(sr=16000, n_fft=512, n_mels=10, fmin_hz=0.0, fmax_hz=9000.0)


def test_rejects_unbatched_input():
    """A 1-D waveform must be batched first."""
    with pytest.raises(ParameterError, match="batch"):
        LogMel()(torch.zeros(16000))
