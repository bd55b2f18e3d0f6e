"""One call that turns audio into the numbers a DJ mixes by."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from engine.audio import is_silent, too_short
from engine.energy import estimate_energy
from engine.errors import DecodeError, ParameterError
from engine.key import estimate_key
from engine.spectrum import stft_magnitude
from engine.tempo import estimate_tempo, onset_envelopes

ANALYZER_VERSION = "mixwith-2"

# Tempo needs a few beats to lock on (engine.tempo refuses less).
MIN_ANALYSIS_S = 3.0


@dataclass(frozen=True)
class Analysis:
    """Tempo, key and energy of one piece of audio.

    ``to_dict`` gives the public JSON contract of ``mixwith analyze``.
    """

    duration: float
    bpm: float
    bpm_alternates: tuple[float, ...]
    bpm_confidence: float
    key: str
    camelot: str
    open_key: str
    key_confidence: float
    key_changes: bool
    energy: int
    loudness_lufs: float
    version: str = ANALYZER_VERSION

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["bpm_alternates"] = list(self.bpm_alternates)
        return d


def analyze(y: np.ndarray, *, sr: int) -> Analysis:
    """Analyse mono audio.

    Parameters
    ----------
    y : np.ndarray [shape=(n,), dtype=float32]
    sr : int

    Raises
    ------
    DecodeError
        If the audio is silent or shorter than ``MIN_ANALYSIS_S``.
    """
    if y.ndim != 1:
        raise ParameterError(f"expected mono audio, got shape {y.shape}")
    if is_silent(y):
        raise DecodeError("silent: no audio above -70 dBFS")
    if len(y) < MIN_ANALYSIS_S * sr:
        # a user's clip, not a bug: tempo needs a few beats to lock on
        raise too_short(len(y) / sr, minimum_s=MIN_ANALYSIS_S)
    # Two resolutions, each computed once and shared: rhythm needs ~10 ms
    # frames, harmony needs ~3 Hz bins to tell bass notes apart.
    fine = stft_magnitude(y, sr=sr, n_fft=1024, hop_length=256)
    coarse = stft_magnitude(y, sr=sr, n_fft=8192, hop_length=4096)
    envelopes = onset_envelopes(fine)
    tempo = estimate_tempo(fine, envelopes=envelopes)
    key = estimate_key(coarse)
    energy = estimate_energy(y, fine, onset_env=envelopes.full)
    return Analysis(
        duration=round(len(y) / sr, 2),
        bpm=tempo.bpm,
        bpm_alternates=tempo.alternates,
        bpm_confidence=round(tempo.confidence, 3),
        key=key.key.name,
        camelot=key.key.camelot,
        open_key=key.key.open_key,
        key_confidence=round(key.confidence, 3),
        key_changes=key.changes,
        energy=energy.energy,
        loudness_lufs=energy.loudness_lufs,
    )
