"""Short-time spectra shared by the analysis features.

One STFT per file is computed here and handed to tempo, key and energy so
the expensive part happens once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.errors import ParameterError


@dataclass(frozen=True)
class Spectrogram:
    """Magnitude STFT.

    Attributes
    ----------
    S : np.ndarray [shape=(1 + n_fft // 2, n_frames), dtype=float32]
        Magnitudes.
    sr : int
        Sample rate of the signal in Hz.
    n_fft, hop_length : int
        Frame size and hop in samples.
    """

    S: np.ndarray
    sr: int
    n_fft: int
    hop_length: int

    @property
    def frame_rate(self) -> float:
        """Frames per second."""
        return self.sr / self.hop_length

    @property
    def freqs(self) -> np.ndarray:
        """Centre frequency of each bin in Hz."""
        return np.fft.rfftfreq(self.n_fft, d=1.0 / self.sr)


def stft_magnitude(y: np.ndarray, *, sr: int, n_fft: int = 2048, hop_length: int = 512) -> Spectrogram:
    """Hann-windowed magnitude STFT, frames not centred (first frame at 0).

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
    sr : int
    n_fft, hop_length : int

    Returns
    -------
    Spectrogram
    """
    if y.ndim != 1:
        raise ParameterError(f"expected mono audio, got shape {y.shape}")
    if len(y) < n_fft:
        y = np.pad(y, (0, n_fft - len(y)))
    n_frames = 1 + (len(y) - n_fft) // hop_length
    frames = np.lib.stride_tricks.sliding_window_view(y, n_fft)[::hop_length][:n_frames]
    window = np.hanning(n_fft).astype(np.float32)
    S = np.abs(np.fft.rfft(frames * window, axis=1)).astype(np.float32).T
    return Spectrogram(S=S, sr=sr, n_fft=n_fft, hop_length=hop_length)
