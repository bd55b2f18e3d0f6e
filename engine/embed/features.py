"""Log-mel front end in torch, computed on the model's device.

The filterbank is built once per :class:`LogMel` (a buffer, so it follows
``.to(device)``); the transform is batched and differentiable-free.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from engine.errors import ParameterError

SAMPLE_RATE = 16000
N_FFT = 1024
HOP_LENGTH = 320  # 20 ms
N_MELS = 64
FMIN_HZ = 30.0
FMAX_HZ = 8000.0


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(*, sr: int, n_fft: int, n_mels: int, fmin_hz: float, fmax_hz: float) -> np.ndarray:
    """Triangular mel filters (HTK mel scale, area-normalised).

    Returns
    -------
    fb : np.ndarray [shape=(n_mels, 1 + n_fft // 2), dtype=float32]
    """
    if not 0 <= fmin_hz < fmax_hz <= sr / 2:
        raise ParameterError(f"need 0 <= fmin < fmax <= sr/2, got {fmin_hz}, {fmax_hz}, sr={sr}")
    if n_mels < 1:
        raise ParameterError(f"n_mels must be >= 1, got {n_mels}")
    freqs = np.fft.rfftfreq(n_fft, d=1.0 / sr)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin_hz), _hz_to_mel(fmax_hz), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None, :] - lower) / (centre - lower)
    down = (upper - freqs[None, :]) / (upper - centre)
    fb = np.maximum(0.0, np.minimum(up, down))
    fb *= (2.0 / (upper - lower))  # equal area, so wide high bands do not dominate
    return fb.astype(np.float32)


def n_frames(n_samples: int, *, n_fft: int = N_FFT, hop_length: int = HOP_LENGTH) -> int:
    """Frames produced for ``n_samples`` (frames not centred; first frame at 0)."""
    return 1 + max(0, n_samples - n_fft) // hop_length


class LogMel(nn.Module):
    """Waveform batch → log-mel batch.

    Input ``(batch, n_samples)`` float audio at ``sr``; output
    ``(batch, n_mels, n_frames)`` natural-log mel power with a 1e-6 floor.
    """

    def __init__(
        self,
        *,
        sr: int = SAMPLE_RATE,
        n_fft: int = N_FFT,
        hop_length: int = HOP_LENGTH,
        n_mels: int = N_MELS,
        fmin_hz: float = FMIN_HZ,
        fmax_hz: float = FMAX_HZ,
    ) -> None:
        super().__init__()
        self.sr, self.n_fft, self.hop_length, self.n_mels = sr, n_fft, hop_length, n_mels
        fb = mel_filterbank(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin_hz=fmin_hz, fmax_hz=fmax_hz)
        # Not saved in the state dict: it is fully determined by the constructor arguments.
        self.register_buffer("fb", torch.from_numpy(fb), persistent=False)
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True), persistent=False)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if y.ndim != 2:
            raise ParameterError(f"expected (batch, n_samples), got shape {tuple(y.shape)}")
        if y.shape[1] < self.n_fft:
            y = nn.functional.pad(y, (0, self.n_fft - y.shape[1]))
        # Mel on float32 even under autocast: fp16 power spectra underflow in quiet passages.
        with torch.autocast(device_type=y.device.type, enabled=False):
            spec = torch.stft(
                y.float(), n_fft=self.n_fft, hop_length=self.hop_length, window=self.window,
                center=False, return_complex=True,
            )
            power = spec.real.square() + spec.imag.square()
            mel = torch.matmul(self.fb, power)
            return torch.log(mel + 1e-6)


def log_mel_reference(y: np.ndarray, *, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Numpy log-mel with the same parameters (for tests and tools without torch graphs).

    Returns
    -------
    S : np.ndarray [shape=(N_MELS, n_frames)]
    """
    if len(y) < N_FFT:
        y = np.pad(y, (0, N_FFT - len(y)))
    count = n_frames(len(y))
    frames = np.lib.stride_tricks.sliding_window_view(y.astype(np.float64), N_FFT)[::HOP_LENGTH][:count]
    window = 0.5 - 0.5 * np.cos(2 * math.pi * np.arange(N_FFT) / N_FFT)
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    fb = mel_filterbank(sr=sr, n_fft=N_FFT, n_mels=N_MELS, fmin_hz=FMIN_HZ, fmax_hz=FMAX_HZ)
    return np.log(fb.astype(np.float64) @ power.T + 1e-6)
