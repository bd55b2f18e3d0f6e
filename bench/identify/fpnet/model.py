"""Neural audio fingerprint: 1 s of audio → one short unit vector.

A segment's log-mel patch (8 kHz audio, 150–4000 Hz: the band a phone in a
club keeps best) goes through a stack of strided 2-D convolutions that halve
time and frequency at each stage, then a small projection to ``dim``
numbers, L2-normalised. Trained contrastively (``bench.identify.fpnet.train``), a
clean segment and its phone-memo copy land close together while other
segments, of the same track too, stay apart: the vectors identify *where*
in *which* recording, not what it sounds like (that is ``engine.embed``).

Weights are a plain state dict (float16) plus a JSON sidecar, loaded with
``weights_only=True``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engine.embed.features import LogMel
from engine.embed.model import read_weights, write_weights
from engine.errors import ParameterError

FP_NET_SR = 8000
SEGMENT_S = 1.0
HOP_S = 0.5
"""Reference tracks and queries are both cut every ``HOP_S``; a query segment is then at most
``HOP_S / 2`` from a reference one, which training covers with random offsets."""
DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "fpnet-g.pt"


@dataclass(frozen=True)
class FpNetConfig:
    """Architecture hyper-parameters (saved beside the weights)."""

    sr: int = FP_NET_SR
    segment_s: float = SEGMENT_S
    n_fft: int = 512
    hop_length: int = 128  # 16 ms
    n_mels: int = 64
    fmin_hz: float = 150.0
    fmax_hz: float = 4000.0
    channels: tuple[int, ...] = (32, 64, 96, 128, 128)
    dim: int = 64

    @property
    def segment_samples(self) -> int:
        return int(round(self.segment_s * self.sr))


def _stage(cin: int, cout: int) -> nn.Sequential:
    # a separable pair (frequency then time) is cheaper than a 3×3 at the same receptive field
    return nn.Sequential(
        nn.Conv2d(cin, cout, (3, 1), stride=(2, 1), padding=(1, 0), bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, (1, 3), stride=(1, 2), padding=(0, 1), bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class FpNet(nn.Module):
    """Waveform segments ``(batch, segment_samples)`` → unit vectors ``(batch, dim)``."""

    def __init__(self, config: FpNetConfig = FpNetConfig()) -> None:
        super().__init__()
        self.config = config
        self.frontend = LogMel(sr=config.sr, n_fft=config.n_fft, hop_length=config.hop_length,
                               n_mels=config.n_mels, fmin_hz=config.fmin_hz, fmax_hz=config.fmax_hz)
        self.input_norm = nn.BatchNorm2d(1)
        chans = (1, *config.channels)
        self.stages = nn.Sequential(*[_stage(a, b) for a, b in zip(chans[:-1], chans[1:])])
        with torch.no_grad():
            flat = self._conv(torch.zeros(1, config.segment_samples)).shape[1]
        hidden = 4 * config.dim
        self.head = nn.Sequential(nn.Linear(flat, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, config.dim))

    def _conv(self, y: torch.Tensor) -> torch.Tensor:
        x = self.frontend(y)
        # the level of a phone recording says nothing about which recording it is
        x = x - x.mean(dim=(1, 2), keepdim=True)
        x = self.stages(self.input_norm(x.unsqueeze(1)))
        return x.flatten(1)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.head(self._conv(y)).float(), dim=1)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def save_model(model: FpNet, path: str | os.PathLike[str], *, version: str, extra: dict | None = None) -> Path:
    """Write ``path`` (float16 state dict) and ``path.json`` (config, version, extras), each renamed into place."""
    state = {k: (v.half() if v.is_floating_point() else v).detach().cpu().clone() for k, v in model.state_dict().items()}
    meta = {"version": version, "config": asdict(model.config), "dtype": "float16"} | (extra or {})
    return write_weights(path, state, meta)


def load_model(path: str | os.PathLike[str] = DEFAULT_WEIGHTS, *, device: torch.device | str = "cpu") -> tuple[FpNet, dict]:
    """Load weights saved by :func:`save_model`, in eval mode, float32, on ``device``; returns (model, sidecar)."""
    p = Path(path)
    meta_path = Path(str(p) + ".json")
    if not p.is_file() or not meta_path.is_file():
        raise ParameterError(f"no fingerprint model at {p} (weights and .json sidecar)")
    state, meta = read_weights(p)
    cfg = dict(meta["config"])
    cfg["channels"] = tuple(cfg["channels"])
    model = FpNet(FpNetConfig(**cfg))
    model.load_state_dict(state)
    return model.to(device).eval(), meta


def segment_starts(n_samples: int, *, sr: int, segment_s: float = SEGMENT_S, hop_s: float = HOP_S) -> np.ndarray:
    """Start sample of every full segment of ``segment_s`` every ``hop_s`` (none when the audio is shorter).

    Returns
    -------
    starts : np.ndarray [shape=(n_segments,), dtype=int64]
    """
    if sr <= 0 or segment_s <= 0 or hop_s <= 0:
        raise ParameterError("sr, segment_s and hop_s must be positive")
    seg, hop = int(round(segment_s * sr)), int(round(hop_s * sr))
    if n_samples < seg:
        return np.zeros(0, np.int64)
    return np.arange(0, n_samples - seg + 1, hop, dtype=np.int64)


@torch.inference_mode()
def segment_vectors(model: FpNet, y: np.ndarray, *, sr: int, hop_s: float = HOP_S, batch_size: int = 256) -> np.ndarray:
    """Unit vectors of ``y``'s segments, one every ``hop_s`` from 0 (see :func:`segment_starts`).

    Parameters
    ----------
    model : FpNet
        In eval mode; runs on its own device.
    y : np.ndarray [shape=(n,)]
        Mono audio at ``sr``, which must be the model's rate (resample first).
    sr : int
    hop_s : float > 0
    batch_size : int >= 1

    Returns
    -------
    vectors : np.ndarray [shape=(n_segments, dim), dtype=float32]
        Unit rows; zero rows when ``y`` is shorter than one segment.
    """
    cfg = model.config
    if y.ndim != 1:
        raise ParameterError(f"expected mono audio, got shape {y.shape}")
    if sr != cfg.sr:
        raise ParameterError(f"the model runs at {cfg.sr} Hz, got audio at {sr} Hz; resample first")
    if batch_size < 1:
        raise ParameterError(f"batch_size must be >= 1, got {batch_size}")
    starts = segment_starts(y.size, sr=sr, segment_s=cfg.segment_s, hop_s=hop_s)
    if starts.size == 0:
        return np.zeros((0, cfg.dim), np.float32)
    device = next(model.parameters()).device
    seg = cfg.segment_samples
    yt = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32)).to(device)
    out = []
    for i in range(0, starts.size, batch_size):
        idx = torch.from_numpy(starts[i : i + batch_size]).to(device)[:, None] + torch.arange(seg, device=device)[None, :]
        out.append(model(yt[idx]).cpu().numpy())
    return np.concatenate(out, axis=0)
