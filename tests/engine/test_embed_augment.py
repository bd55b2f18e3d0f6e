"""Tests for engine.embed.augment (voice-memo degradations)."""

import numpy as np
import torch

from engine.embed.augment import EVAL_MEMO, bandpass, change_speed, degrade

SR = 16000


def _sine(freq: float, seconds: float = 1.0) -> torch.Tensor:
    t = torch.arange(int(seconds * SR)) / SR
    return (0.5 * torch.sin(2 * torch.pi * freq * t))[None]


def _peak_hz(y: torch.Tensor) -> float:
    spec = torch.fft.rfft(y[0] * torch.hann_window(y.shape[1])).abs()
    return float(spec.argmax()) * SR / y.shape[1]


def test_speed_change_shifts_pitch():
    """Playing 3 % faster raises a 1 kHz tone to 1.03 kHz."""
    out = change_speed(_sine(1000.0, 1.2), torch.tensor([1.03]), out_samples=SR)
    assert abs(_peak_hz(out) - 1030.0) < 3.0


def test_bandpass_removes_bass():
    """A 50 Hz tone loses most of its energy through a 300 Hz high-pass."""
    y = _sine(50.0)
    out = bandpass(y, sr=SR, low_hz=torch.tensor([300.0]), high_hz=torch.tensor([4000.0]))
    assert out.square().mean() < 0.01 * y.square().mean()


def test_degrade_is_seeded_and_shape_preserving():
    """The same generator seed gives the same degraded batch; another seed differs."""
    y = torch.randn(3, SR, generator=torch.Generator().manual_seed(0)) * 0.1
    a = degrade(y, sr=SR, g=torch.Generator().manual_seed(5), memo=EVAL_MEMO)
    b = degrade(y, sr=SR, g=torch.Generator().manual_seed(5), memo=EVAL_MEMO)
    c = degrade(y, sr=SR, g=torch.Generator().manual_seed(6), memo=EVAL_MEMO)
    assert a.shape == y.shape
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_degrade_adds_noise_at_the_asked_snr():
    """With noise only, the added noise sits near the requested SNR."""
    from engine.embed.augment import VoiceMemo

    memo = VoiceMemo(p_bandpass=0.0, p_reverb=0.0, p_noise=1.0, p_clip=0.0, snr_db=(10.0, 10.0), gain_db=(0.0, 0.0))
    y = _sine(440.0, 2.0).repeat(4, 1)
    out = degrade(y, sr=SR, g=torch.Generator().manual_seed(1), memo=memo)
    snr = 10 * np.log10(float(y.square().mean()) / float((out - y).square().mean()))
    assert abs(snr - 10.0) < 1.0


def test_spec_masks_are_seeded_and_sized():
    """SpecAugment masks repeat with a seed and hide at most the asked bands and frames."""
    from engine.embed.augment import spec_masks

    kw = dict(device=torch.device("cpu"), freq_masks=1, max_bands=8, time_masks=1, max_frames=20)
    a = spec_masks(16, 64, 151, g=torch.Generator().manual_seed(3), **kw)
    b = spec_masks(16, 64, 151, g=torch.Generator().manual_seed(3), **kw)
    assert a.shape == (16, 64, 151) and torch.equal(a, b)
    bands = a.all(dim=2).sum(dim=1)  # bins hidden over the whole window
    frames = a.all(dim=1).sum(dim=1)
    assert int(bands.max()) <= 8 and int(frames.max()) <= 20 and a.any()
    # every hidden cell is in a hidden band or a hidden span, never scattered
    assert torch.equal(a, a.all(dim=2, keepdim=True) | a.all(dim=1, keepdim=True))
    none = spec_masks(4, 64, 151, g=torch.Generator().manual_seed(3), device=torch.device("cpu"),
                      freq_masks=0, max_bands=8, time_masks=0, max_frames=20)
    assert not none.any()
