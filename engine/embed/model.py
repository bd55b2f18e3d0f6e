"""The sounds-like CNN: 3 s of audio → one 128-d unit vector.

A small 2-D convolutional stem reads the log-mel patch (local timbre and
pitch shapes), then the frequency axis is folded into channels and 1-D
residual convolutions run along time, which is several times cheaper on a
CPU than 2-D convolutions at the same depth. Mean+max pooling over time and
a linear layer give the embedding, L2-normalised.

Weights are saved as a plain state dict (optionally float16) plus a JSON
sidecar and loaded with ``weights_only=True``: never pickled objects.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engine.embed.features import SAMPLE_RATE, LogMel
from engine.errors import ParameterError

logger = logging.getLogger(__name__)

WINDOW_S = 3.0
# Track vectors average windows every 1.5 s (half-overlapping): a query clip
# rarely starts on a 3 s boundary, and the overlap covers the offsets between.
HOP_S = 1.5
EMBED_DIM = 128
DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "sounds-like-v2.pt"


@dataclass(frozen=True)
class ModelConfig:
    """Architecture hyper-parameters (saved beside the weights)."""

    sr: int = SAMPLE_RATE
    window_s: float = WINDOW_S
    embed_dim: int = EMBED_DIM
    stem_channels: tuple[int, int, int] = (24, 32, 64)
    width: int = 192
    blocks: int = 2
    n_classes: int = 0  # > 0 adds the optional supervised (genre) head

    @property
    def window_samples(self) -> int:
        return int(round(self.window_s * self.sr))


def _conv2d_bn(cin: int, cout: int, stride: tuple[int, int]) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class _ResBlock1d(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm1d(width),
            nn.ReLU(inplace=True),
            nn.Conv1d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm1d(width),
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.body(x))


class SoundsLikeNet(nn.Module):
    """Waveform windows ``(batch, window_samples)`` → unit vectors ``(batch, embed_dim)``."""

    def __init__(self, config: ModelConfig = ModelConfig()) -> None:
        super().__init__()
        self.config = config
        self.frontend = LogMel(sr=config.sr)
        c1, c2, c3 = config.stem_channels
        self.input_norm = nn.BatchNorm2d(1)
        self.stem = nn.Sequential(
            _conv2d_bn(1, c1, (2, 1)),
            _conv2d_bn(c1, c2, (2, 2)),
            _conv2d_bn(c2, c3, (2, 2)),
        )
        folded = c3 * (self.frontend.n_mels // 8)
        self.fold = nn.Sequential(
            nn.Conv1d(folded, config.width, 1, bias=False),
            nn.BatchNorm1d(config.width),
            nn.ReLU(inplace=True),
        )
        self.blocks = nn.Sequential(*[_ResBlock1d(config.width) for _ in range(config.blocks)])
        self.proj = nn.Linear(2 * config.width, config.embed_dim)
        self.classifier = nn.Linear(config.embed_dim, config.n_classes) if config.n_classes > 0 else None

    def features(self, y: torch.Tensor, *, mel_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Unnormalised embedding before the L2 step, shape ``(batch, embed_dim)``.

        ``mel_mask`` (training only): boolean ``(batch, n_mels, n_frames)``, True cells are
        set to the window's mean level (SpecAugment), after the level is removed.
        """
        x = self.frontend(y)
        # Remove the overall level: a quiet phone recording and a master are the same track.
        x = x - x.mean(dim=(1, 2), keepdim=True)
        if mel_mask is not None:
            x = x.masked_fill(mel_mask, 0.0)
        x = self.input_norm(x.unsqueeze(1))
        x = self.stem(x)
        b, c, f, t = x.shape
        x = self.fold(x.reshape(b, c * f, t))
        x = self.blocks(x)
        pooled = torch.cat([x.mean(dim=2), x.amax(dim=2)], dim=1)
        return self.proj(pooled)

    def forward(self, y: torch.Tensor, *, mel_mask: torch.Tensor | None = None) -> torch.Tensor:
        return nn.functional.normalize(self.features(y, mel_mask=mel_mask).float(), dim=1)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (the optional classifier included when present)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def save_model(
    model: SoundsLikeNet,
    path: str | os.PathLike[str],
    *,
    version: str,
    half: bool = True,
    extra: dict | None = None,
) -> Path:
    """Write ``path`` (state dict, float16 when ``half``) and ``path.json`` (config, version, extras).

    The classifier head is left out: serving needs only the embedding. Both
    files are written under temporary names and renamed into place.
    """
    state = {
        k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
        for k, v in model.state_dict().items()
        if not k.startswith("classifier.")
    }
    cfg = asdict(model.config) | {"n_classes": 0}
    meta = {"version": version, "config": cfg, "dtype": "float16" if half else "float32"} | (extra or {})
    return write_weights(path, state, meta)


def write_weights(path: str | os.PathLike[str], state: dict[str, torch.Tensor], meta: dict) -> Path:
    """Write a state dict to ``path`` and its JSON sidecar to ``path.json``.

    Each file is written under a temporary name and renamed into place, so a
    reader never sees half of one.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, p)
    meta_path = p.with_name(p.name + ".json")
    tmp_meta = meta_path.with_name(meta_path.name + ".tmp")
    tmp_meta.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp_meta, meta_path)
    return p


def read_sidecar(path: str | os.PathLike[str]) -> dict:
    """The JSON sidecar written by :func:`save_model` for the weights at ``path``."""
    meta_path = Path(str(path) + ".json")
    if not meta_path.is_file():
        raise ParameterError(f"no sidecar {meta_path.name} beside the weights")
    return json.loads(meta_path.read_text(encoding="utf-8"))


def read_weights(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict]:
    """A state dict written by :func:`write_weights`, floats widened to float32, and its sidecar."""
    meta = read_sidecar(path)
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}, meta


def load_model(path: str | os.PathLike[str] = DEFAULT_WEIGHTS, *, device: torch.device | str = "cpu") -> tuple[SoundsLikeNet, dict]:
    """Load weights saved by :func:`save_model`, in eval mode, float32, on ``device``.

    Returns
    -------
    model : SoundsLikeNet
    meta : dict
        The sidecar (``version``, ``config``, training command, metrics).
    """
    p = Path(path)
    if not p.is_file():
        raise ParameterError(f"no model weights at {p}")
    state, meta = read_weights(p)
    cfg = dict(meta["config"])
    cfg["stem_channels"] = tuple(cfg["stem_channels"])
    model = SoundsLikeNet(ModelConfig(**cfg))
    model.load_state_dict(state)
    model.to(device).eval()
    return model, meta


def frame_windows(y: np.ndarray, *, window_samples: int, hop_samples: int) -> np.ndarray:
    """Cut ``y`` into windows of ``window_samples`` every ``hop_samples``.

    Audio shorter than one window is tiled (looped) up to a window, so a 1 s
    loop still gets a vector; the tail past the last full window is covered
    by one final window aligned to the end.

    Returns
    -------
    windows : np.ndarray [shape=(n_windows, window_samples), dtype=float32]
    """
    if y.ndim != 1:
        raise ParameterError(f"expected mono audio, got shape {y.shape}")
    if y.size == 0:
        raise ParameterError("empty audio")
    if hop_samples < 1:
        raise ParameterError(f"hop_samples must be >= 1, got {hop_samples}")
    y = y.astype(np.float32, copy=False)
    if y.size < window_samples:
        y = np.tile(y, int(np.ceil(window_samples / y.size)))[:window_samples]
    starts = list(range(0, y.size - window_samples + 1, hop_samples))
    if starts[-1] + window_samples < y.size - hop_samples // 2:
        starts.append(y.size - window_samples)
    return np.stack([y[s : s + window_samples] for s in starts])


class Embedder:
    """Inference wrapper: audio at the model's rate → window and track vectors.

    Parameters
    ----------
    model : SoundsLikeNet
        In eval mode, on ``device``.
    device : torch.device
    batch_size : int
        Windows per forward pass.
    """

    def __init__(self, model: SoundsLikeNet, *, device: torch.device | str = "cpu", batch_size: int = 64) -> None:
        if batch_size < 1:
            raise ParameterError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.sr = model.config.sr
        self.window_samples = model.config.window_samples

    @classmethod
    def from_path(cls, path: str | os.PathLike[str] = DEFAULT_WEIGHTS, *, device: torch.device | str = "cpu",
                  batch_size: int = 64) -> tuple["Embedder", dict]:
        """Load weights and wrap them; returns the embedder and the weights' sidecar."""
        model, meta = load_model(path, device=device)
        return cls(model, device=device, batch_size=batch_size), meta

    @torch.inference_mode()
    def embed_batch(self, windows: np.ndarray) -> np.ndarray:
        """Unit vectors for ``windows`` of shape ``(n, window_samples)`` → ``(n, embed_dim)`` float32."""
        if windows.ndim != 2 or windows.shape[1] != self.window_samples:
            raise ParameterError(
                f"expected windows of shape (n, {self.window_samples}), got {windows.shape}"
            )
        out = []
        for i in range(0, len(windows), self.batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(windows[i : i + self.batch_size], dtype=np.float32))
            out.append(self.model(chunk.to(self.device)).cpu().numpy())
        return np.concatenate(out, axis=0) if out else np.zeros((0, self.model.config.embed_dim), np.float32)

    def embed_sets(self, sets: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Vectors for several clips' windows in shared forward passes (micro-batching across jobs).

        Parameters
        ----------
        sets : sequence of np.ndarray [shape=(n_i, window_samples)]

        Returns
        -------
        vectors : list of np.ndarray [shape=(n_i, embed_dim)], one per set, in order
        """
        if not sets:
            return []
        vectors = self.embed_batch(np.concatenate(sets, axis=0))
        return np.split(vectors, np.cumsum([len(w) for w in sets])[:-1])

    def frame(self, y: np.ndarray, *, sr: int, hop_s: float | None = None) -> np.ndarray:
        """The windows ``embed_windows`` embeds, ``(n_windows, window_samples)``; ``y`` at the model's rate."""
        if sr != self.sr:
            raise ParameterError(f"the model runs at {self.sr} Hz, got audio at {sr} Hz; resample first")
        hop = self.window_samples if hop_s is None else int(round(hop_s * sr))
        return frame_windows(y, window_samples=self.window_samples, hop_samples=hop)

    def embed_windows(self, y: np.ndarray, *, sr: int, hop_s: float | None = None) -> np.ndarray:
        """Window vectors for mono audio ``y`` at ``sr`` (must equal the model's rate).

        Parameters
        ----------
        y : np.ndarray [shape=(n,)]
        sr : int
        hop_s : float or None
            Hop between windows; default one window (no overlap).

        Returns
        -------
        vectors : np.ndarray [shape=(n_windows, embed_dim), dtype=float32], unit rows
        """
        return self.embed_batch(self.frame(y, sr=sr, hop_s=hop_s))

    def embed_track(self, y: np.ndarray, *, sr: int, hop_s: float | None = HOP_S) -> np.ndarray:
        """One unit vector for a whole track: the normalised mean of its window vectors, ``(embed_dim,)``.

        ``hop_s`` defaults to :data:`HOP_S` (overlapping windows); ``None`` = one window (no overlap).
        """
        return mean_vector(self.embed_windows(y, sr=sr, hop_s=hop_s))


def mean_vector(vectors: np.ndarray) -> np.ndarray:
    """Normalised mean of unit rows ``(n, d)`` → ``(d,)``; a zero mean stays zero."""
    if vectors.ndim != 2 or len(vectors) == 0:
        raise ParameterError(f"expected (n >= 1, d) vectors, got shape {vectors.shape}")
    m = vectors.mean(axis=0)
    norm = float(np.linalg.norm(m))
    return (m / norm).astype(np.float32) if norm > 0 else m.astype(np.float32)
