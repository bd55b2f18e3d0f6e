"""Voice-memo augmentations: what a phone held up in a club does to a track.

All transforms work on a batch of waveforms ``(batch, n_samples)`` in torch,
draw randomness only from the ``torch.Generator`` they are given (so a seed
reproduces a batch exactly) and run on the batch's device. The codec part
(AAC at a low bitrate) is precomputed with ffmpeg outside the training loop:
the caller hands crops of the round-tripped audio in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from engine.errors import ParameterError


@dataclass(frozen=True)
class VoiceMemo:
    """Probabilities and ranges of each degradation.

    Attributes
    ----------
    p_bandpass, p_reverb, p_noise, p_clip : float
        Chance each transform is applied to a given example.
    highpass_hz, lowpass_hz : (float, float)
        Ranges of the band-pass corner frequencies (phone mics lose bass and air).
    rt60_s : (float, float)
        Range of reverberation time of the synthetic room.
    snr_db : (float, float)
        Range of signal-to-noise ratio of the added (pink) noise.
    gain_db : (float, float)
        Range of overall gain.
    """

    p_bandpass: float = 0.8
    p_reverb: float = 0.6
    p_noise: float = 0.8
    p_clip: float = 0.2
    highpass_hz: tuple[float, float] = (80.0, 400.0)
    lowpass_hz: tuple[float, float] = (3000.0, 7500.0)
    rt60_s: tuple[float, float] = (0.2, 0.9)
    snr_db: tuple[float, float] = (0.0, 25.0)
    gain_db: tuple[float, float] = (-18.0, 6.0)


#: Fixed, fairly harsh setting for evaluation (every transform applied).
EVAL_MEMO = VoiceMemo(p_bandpass=1.0, p_reverb=1.0, p_noise=1.0, p_clip=0.0, snr_db=(5.0, 15.0),
                      rt60_s=(0.3, 0.8))


def _uniform(n: int, lo: float, hi: float, g: torch.Generator, device: torch.device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, device=device)


def _chance(n: int, p: float, g: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=g, device=device) < p


def change_speed(y: torch.Tensor, rates: torch.Tensor, *, out_samples: int) -> torch.Tensor:
    """Play each row at ``rates[i]`` × speed (pitch follows, like a turntable) and keep ``out_samples``.

    ``y`` must hold at least ``ceil(out_samples * max(rates)) + 1`` samples per row.
    """
    if y.ndim != 2 or rates.shape != (y.shape[0],):
        raise ParameterError("expected y (batch, n) and rates (batch,)")
    need = int(math.ceil(out_samples * float(rates.max()))) + 1
    if y.shape[1] < need:
        raise ParameterError(f"need {need} input samples for the fastest rate, got {y.shape[1]}")
    pos = torch.arange(out_samples, device=y.device, dtype=torch.float32)[None, :] * rates[:, None]
    i0 = pos.floor().long()
    frac = pos - i0
    return torch.gather(y, 1, i0) * (1 - frac) + torch.gather(y, 1, i0 + 1) * frac


def bandpass(y: torch.Tensor, *, sr: int, low_hz: torch.Tensor, high_hz: torch.Tensor) -> torch.Tensor:
    """Smooth (2nd-order-like) band-pass per row via an FFT mask between ``low_hz`` and ``high_hz``."""
    n = y.shape[1]
    spec = torch.fft.rfft(y, n=n)
    f = torch.fft.rfftfreq(n, d=1.0 / sr).to(y.device)[None, :]
    hp = 1.0 / (1.0 + (low_hz[:, None] / f.clamp(min=1.0)) ** 4)
    lp = 1.0 / (1.0 + (f / high_hz[:, None]) ** 4)
    return torch.fft.irfft(spec * torch.sqrt(hp * lp), n=n)


def reverb(y: torch.Tensor, *, sr: int, rt60_s: torch.Tensor, g: torch.Generator, wet: torch.Tensor) -> torch.Tensor:
    """Convolve each row with a synthetic room (exponentially decaying noise), mixed ``wet`` : dry."""
    b, n = y.shape
    ir_len = int(sr * 0.8)
    t = torch.arange(ir_len, device=y.device, dtype=torch.float32)[None, :] / sr
    decay = torch.exp(-6.9078 * t / rt60_s[:, None])  # -60 dB at rt60
    ir = torch.randn(b, ir_len, generator=g, device=y.device) * decay
    ir = ir / ir.square().sum(dim=1, keepdim=True).sqrt().clamp(min=1e-8)
    size = 1 << (n + ir_len - 1).bit_length()
    wet_sig = torch.fft.irfft(torch.fft.rfft(y, n=size) * torch.fft.rfft(ir, n=size), n=size)[:, :n]
    return (1 - wet[:, None]) * y + wet[:, None] * wet_sig


def pink_noise(b: int, n: int, *, g: torch.Generator, device: torch.device) -> torch.Tensor:
    """Unit-RMS noise with a 1/f power spectrum (room hum and crowd are closer to pink than white)."""
    white = torch.randn(b, n, generator=g, device=device)
    spec = torch.fft.rfft(white)
    scale = 1.0 / torch.arange(1, spec.shape[1] + 1, device=device, dtype=torch.float32).sqrt()
    noise = torch.fft.irfft(spec * scale, n=n)
    return noise / noise.square().mean(dim=1, keepdim=True).sqrt().clamp(min=1e-8)


def degrade(y: torch.Tensor, *, sr: int, g: torch.Generator, memo: VoiceMemo = VoiceMemo()) -> torch.Tensor:
    """Apply band-pass, reverb, noise, gain and soft clipping to a batch, each by its own chance.

    Room and microphone are linear filters, so they and the (pink) noise are
    applied in one FFT round trip: ``Y = (X·Room + N)·Mic``.

    Parameters
    ----------
    y : torch.Tensor [shape=(batch, n_samples)]
    sr : int
    g : torch.Generator
        On ``y``'s device; the only source of randomness.
    memo : VoiceMemo

    Returns
    -------
    torch.Tensor [shape=(batch, n_samples)]
    """
    if y.ndim != 2:
        raise ParameterError(f"expected (batch, n_samples), got {tuple(y.shape)}")
    b, n = y.shape
    dev = y.device
    x = y.float()
    rms = x.square().mean(dim=1).sqrt().clamp(min=1e-5)
    ir_len = int(sr * 0.8)
    size = 1 << (n + ir_len - 1).bit_length()
    spec = torch.fft.rfft(x, n=size)
    f = torch.fft.rfftfreq(size, d=1.0 / sr).to(dev)[None, :]

    m_room = _chance(b, memo.p_reverb, g, dev)
    if m_room.any():
        rt = _uniform(b, *memo.rt60_s, g, dev)
        wet = _uniform(b, 0.3, 0.8, g, dev) * m_room.float()
        t = torch.arange(ir_len, device=dev, dtype=torch.float32)[None, :] / sr
        ir = torch.randn(b, ir_len, generator=g, device=dev) * torch.exp(-6.9078 * t / rt[:, None])
        ir = ir / ir.square().sum(dim=1, keepdim=True).sqrt().clamp(min=1e-8)
        room = torch.fft.rfft(ir, n=size)
        spec = spec * ((1 - wet[:, None]) + wet[:, None] * room)

    m_noise = _chance(b, memo.p_noise, g, dev)
    if m_noise.any():
        snr = _uniform(b, *memo.snr_db, g, dev)
        bins = spec.shape[1]
        # Complex Gaussian bins shaped 1/sqrt(f): pink noise of unit RMS over the kept n samples.
        white = torch.complex(torch.randn(b, bins, generator=g, device=dev),
                              torch.randn(b, bins, generator=g, device=dev))
        shape = 1.0 / torch.arange(1, bins + 1, device=dev, dtype=torch.float32).sqrt()
        noise = white * shape
        noise_rms = (noise.abs().square().sum(dim=1) * 2).sqrt() / size
        level = m_noise.float() * rms * 10 ** (-snr / 20) / noise_rms.clamp(min=1e-12)
        spec = spec + noise * level[:, None]

    m_bp = _chance(b, memo.p_bandpass, g, dev)
    if m_bp.any():
        low = _uniform(b, *memo.highpass_hz, g, dev)
        high = _uniform(b, *memo.lowpass_hz, g, dev)
        hp = 1.0 / (1.0 + (low[:, None] / f.clamp(min=1.0)) ** 4)
        lp = 1.0 / (1.0 + (f / high[:, None]) ** 4)
        mic = torch.where(m_bp[:, None], torch.sqrt(hp * lp), torch.ones_like(hp))
        spec = spec * mic

    out = torch.fft.irfft(spec, n=size)[:, :n]
    gain = 10 ** (_uniform(b, *memo.gain_db, g, dev) / 20)
    out = out * gain[:, None]
    m = _chance(b, memo.p_clip, g, dev)
    drive = _uniform(b, 1.5, 4.0, g, dev)
    clipped = torch.tanh(out * drive[:, None]) / torch.tanh(drive[:, None])
    return torch.where(m[:, None], clipped, out)


def spec_masks(
    batch: int, n_mels: int, n_frames: int, *, g: torch.Generator, device: torch.device,
    freq_masks: int, max_bands: int, time_masks: int, max_frames: int,
) -> torch.Tensor:
    """SpecAugment-style masks: True where a log-mel cell is hidden, shape ``(batch, n_mels, n_frames)``.

    Each example gets ``freq_masks`` bands of 0..``max_bands`` mel bins and
    ``time_masks`` spans of 0..``max_frames`` frames, at uniform positions.
    Hiding parts of the spectrum makes the embedding rely on more than one
    cue (a phone mic can lose a band; a shout can cover a beat).
    """
    if min(batch, n_mels, n_frames) < 1 or min(freq_masks, max_bands, time_masks, max_frames) < 0:
        raise ParameterError("mask sizes must be non-negative and the spectrogram non-empty")
    mask = torch.zeros(batch, n_mels, n_frames, dtype=torch.bool, device=device)
    for count, width_max, size, axis in ((freq_masks, max_bands, n_mels, 1), (time_masks, max_frames, n_frames, 2)):
        pos = torch.arange(size, device=device)
        for _ in range(count):
            width = torch.randint(0, min(width_max, size) + 1, (batch,), generator=g, device=device)
            start = (torch.rand(batch, generator=g, device=device) * (size - width + 1)).long()
            hit = (pos[None, :] >= start[:, None]) & (pos[None, :] < (start + width)[:, None])
            mask |= hit[:, :, None] if axis == 1 else hit[:, None, :]
    return mask
