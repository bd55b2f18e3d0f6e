"""Contrastive training of the sounds-like CNN on arrays the caller provides.

Two crops of the same track are a positive pair; every other track in the
batch is a negative (InfoNCE). One view is lightly touched, the other goes
through the voice-memo chain (AAC round trip, band-pass, room, noise, gain,
±3 % speed), so a phone clip lands next to the clean track. When tracks carry
a group (their Debian package / album), other tracks of the same group in
the batch are weaker positives (``group_weight``), which pulls one
soundtrack's tracks together without collapsing them. When tracks carry
labels (genre tags), a small classifier head adds a supervised term.

Each step's randomness is derived from ``(seed, step)``, so a run resumed
from a checkpoint draws exactly the batches the uninterrupted run would have.
No database and no files besides the optional checkpoint: the caller decodes.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engine.embed.augment import EVAL_MEMO, VoiceMemo, change_speed, degrade, spec_masks
from engine.embed.features import n_frames
from engine.embed.model import Embedder, ModelConfig, SoundsLikeNet, frame_windows, mean_vector
from engine.errors import ParameterError

logger = logging.getLogger(__name__)

LIGHT_MEMO = VoiceMemo(p_bandpass=0.2, p_reverb=0.1, p_noise=0.2, p_clip=0.0, snr_db=(15.0, 30.0))


@dataclass(frozen=True)
class TrainTrack:
    """Audio of one training track at the model's rate.

    Attributes
    ----------
    clean : np.ndarray [shape=(n,)]
        Decoded audio (float16 or float32).
    codec : np.ndarray [shape=(n,)] or None
        The same audio after an AAC round trip, sample-aligned with ``clean``.
    label : int or None
        Class index for the supervised head (e.g. a genre tag), if known.
    group : int or None
        Weak style group (e.g. the source package or album); tracks sharing one
        are same-group positives in the loss. Give it for training tracks only.
    """

    clean: np.ndarray
    codec: np.ndarray | None = None
    label: int | None = None
    group: int | None = None


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; ``seed`` fixes initial weights and every batch.

    ``split_seed`` picks the held-out tracks (:func:`holdout_split`, applied by the
    caller that decodes); ``None`` means ``seed``, the coupling every run before it
    had, so the default split is unchanged. It lives here so a checkpoint of one
    split refuses to resume on another. ``extra_manifests`` names training-only
    material the caller adds (never held out, never evaluated); here for the same
    reason: a checkpoint made with other extra tracks refuses to resume.
    """

    steps: int = 900  # what the shipped weights used (dev set, batch 32)
    batch_tracks: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 40
    temperature: float = 0.1
    seed: int = 0
    split_seed: int | None = None  # held-out split; None = seed
    extra_manifests: tuple[str, ...] = ()  # training-only manifests the caller decodes and adds
    p_codec: float = 0.5
    max_speed_change: float = 0.03
    supervised_weight: float = 0.5
    group_weight: float = 0.3  # weight of the same-group positive term; 0 = plain InfoNCE
    # SpecAugment on both views: masks per window and their largest size (mel bins / 20 ms frames); 0 = off
    freq_masks: int = 0
    freq_mask_bands: int = 8
    time_masks: int = 0
    time_mask_frames: int = 20
    eval_every: int = 100
    log_every: int = 10
    checkpoint_every: int = 50
    amp: bool = True  # only takes effect on CUDA

    @property
    def holdout_seed(self) -> int:
        """The seed of the held-out split this run uses."""
        return self.seed if self.split_seed is None else self.split_seed


@dataclass(frozen=True)
class TrainResult:
    """What a run produced."""

    model: SoundsLikeNet
    history: list[dict] = field(default_factory=list)
    steps_done: int = 0
    val: dict | None = None
    seconds: float = 0.0


def holdout_split(ids: Sequence[str], groups: Sequence[str], *, fraction: float = 0.2, seed: int = 0) -> set[str]:
    """Deterministic held-out subset: ``fraction`` of each group, chosen by a seeded hash of the id.

    Hash order (not ``random``) keeps the split stable when tracks are added:
    an existing track never moves between train and held-out.
    """
    if not 0.0 <= fraction < 1.0:
        raise ParameterError(f"fraction must be in [0, 1), got {fraction}")
    if len(ids) != len(groups):
        raise ParameterError("ids and groups differ in length")
    by_group: dict[str, list[str]] = {}
    for i, g in zip(ids, groups):
        by_group.setdefault(g, []).append(i)
    held: set[str] = set()
    for members in by_group.values():
        ranked = sorted(members, key=lambda x: hashlib.sha1(f"{seed}:{x}".encode()).hexdigest())
        held.update(ranked[: int(round(fraction * len(members)))])
    return held


def _view_similarity(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Scaled cosine similarity between all ``2·batch`` views, ``-inf`` on the diagonal (a view is not its own pair)."""
    z = torch.cat([a, b], dim=0).float()
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    return sim


def nt_xent(a: torch.Tensor, b: torch.Tensor, *, temperature: float = 0.1) -> torch.Tensor:
    """Symmetric InfoNCE over positive pairs (row i of ``a`` with row i of ``b``), unit vectors ``(batch, d)``."""
    if a.shape != b.shape or a.ndim != 2:
        raise ParameterError("expected two (batch, d) tensors of equal shape")
    sim = _view_similarity(a, b, temperature)
    n = a.shape[0]
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(a.device)
    return nn.functional.cross_entropy(sim, targets)


def group_contrastive(
    a: torch.Tensor, b: torch.Tensor, groups: torch.Tensor, *, temperature: float = 0.1,
) -> torch.Tensor:
    """Same-group positive term: −log-softmax mass on views of *other* tracks of the anchor's group.

    Uses the same ``2·batch`` similarity matrix as :func:`nt_xent`; for every
    view whose group has another track in the batch, the loss is the mean
    −log p over that group's other-track views (both crops). Views with no
    group partner (or group ``-1`` = unknown) do not contribute; zero when none has one.

    Parameters
    ----------
    a, b : torch.Tensor [shape=(batch, d)]
        Unit vectors of the two views; row i of both is track i.
    groups : torch.Tensor [shape=(batch,), dtype=int64]
        Group id per track, ``-1`` when unknown.
    """
    if a.shape != b.shape or a.ndim != 2 or groups.shape != (a.shape[0],):
        raise ParameterError("expected two (batch, d) tensors and (batch,) groups")
    n = a.shape[0]
    logp = torch.log_softmax(_view_similarity(a, b, temperature), dim=1)
    g = torch.cat([groups, groups]).to(a.device)
    track = torch.arange(n, device=a.device).repeat(2)
    partner = (g[:, None] == g[None, :]) & (g[:, None] >= 0) & (track[:, None] != track[None, :])
    has = partner.any(dim=1)
    if not bool(has.any()):
        return logp.new_zeros(())
    # masked_fill, not a product with the mask: the diagonal is -inf and -inf * 0 is nan
    picked = logp[has].masked_fill(~partner[has], 0.0)
    return (-picked.sum(dim=1) / partner[has].sum(dim=1)).mean()


def _ensure_length(y: np.ndarray, n: int) -> np.ndarray:
    return y if y.size >= n else np.tile(y, int(math.ceil(n / max(1, y.size))))[:n]


def _sample_batch(
    tracks: Sequence[TrainTrack], *, step: int, config: TrainConfig, window: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Crops for one step: view A (window), view B (window·(1+max speed)+2 samples), rates, labels, groups."""
    rng = np.random.default_rng([config.seed, step])
    k = min(config.batch_tracks, len(tracks))
    idx = rng.choice(len(tracks), size=k, replace=False)
    long_len = int(math.ceil(window * (1 + config.max_speed_change))) + 2
    rates = rng.uniform(1 - config.max_speed_change, 1 + config.max_speed_change, size=k)
    a = np.empty((k, window), np.float32)
    b = np.empty((k, long_len), np.float32)
    labels = np.full(k, -1, np.int64)
    groups = np.full(k, -1, np.int64)
    for j, t in enumerate(idx):
        tr = tracks[t]
        clean = _ensure_length(tr.clean, long_len)
        sa = rng.integers(0, clean.size - window + 1)
        sb = rng.integers(0, clean.size - long_len + 1)
        use_codec = tr.codec is not None and rng.random() < config.p_codec
        src_b = _ensure_length(tr.codec, long_len) if use_codec else clean
        a[j] = clean[sa : sa + window]
        b[j] = src_b[sb : sb + long_len]
        if tr.label is not None:
            labels[j] = tr.label
        if tr.group is not None:
            groups[j] = tr.group
    return a, b, rates.astype(np.float32), labels, groups


def _lr_at(step: int, config: TrainConfig) -> float:
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train_embedder(
    tracks: Sequence[TrainTrack],
    *,
    config: TrainConfig = TrainConfig(),
    model_config: ModelConfig = ModelConfig(),
    val: Sequence[TrainTrack] = (),
    device: torch.device | str = "cpu",
    checkpoint_path: str | os.PathLike[str] | None = None,
    on_log: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Train (or resume training) the CNN.

    Parameters
    ----------
    tracks : sequence of TrainTrack
        At least two tracks (a batch needs negatives).
    config : TrainConfig
    model_config : ModelConfig
        ``n_classes`` is set from the labels when any track has one.
    val : sequence of TrainTrack
        Held-out tracks for the validation metric (degraded 10 s clip → own track top-1).
    device : torch.device or str
    checkpoint_path : path or None
        Saved every ``checkpoint_every`` steps; if it exists, training resumes from it.
    on_log : callable or None
        Called with each history record (step, loss, lr, seconds, and validation when measured).

    Returns
    -------
    TrainResult
    """
    if len(tracks) < 2:
        raise ParameterError(f"need at least 2 training tracks, got {len(tracks)}")
    if config.steps < 1 or config.batch_tracks < 2:
        raise ParameterError("steps must be >= 1 and batch_tracks >= 2")
    device = torch.device(device)
    labels = [t.label for t in tracks if t.label is not None]
    n_classes = (max(labels) + 1) if labels else 0
    model_config = replace(model_config, n_classes=n_classes)

    torch.manual_seed(config.seed)
    model = SoundsLikeNet(model_config).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    use_amp = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    history: list[dict] = []
    start = 0
    ckpt = Path(checkpoint_path) if checkpoint_path is not None else None
    if ckpt is not None and ckpt.is_file():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        # checkpoints from before split_seed / extra_manifests existed: their own split, no extras
        stored = {"split_seed": None, "extra_manifests": ()} | state["train_config"]
        stored["extra_manifests"] = tuple(stored["extra_manifests"])
        if state["model_config"] != _config_dict(model_config) or stored != asdict(config):
            raise ParameterError(f"checkpoint {ckpt} was made with different settings; delete it to start over")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        start, history = int(state["step"]), list(state["history"])
        logger.info("resuming from %s at step %d", ckpt, start)

    window = model_config.window_samples
    sr = model_config.sr
    t0 = time.perf_counter()
    model.train()
    for step in range(start, config.steps):
        a_np, b_np, rates, lab, grp = _sample_batch(tracks, step=step, config=config, window=window)
        g = torch.Generator(device=device).manual_seed(config.seed * 1_000_003 + step)
        a = torch.from_numpy(a_np).to(device)
        b = torch.from_numpy(b_np).to(device)
        with torch.no_grad():
            b = change_speed(b, torch.from_numpy(rates).to(device), out_samples=window)
            a = degrade(a, sr=sr, g=g, memo=LIGHT_MEMO)
            b = degrade(b, sr=sr, g=g)
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, config)
            masks = [None, None]
            if config.freq_masks or config.time_masks:
                frames = n_frames(window)
                masks = [spec_masks(len(a), model.frontend.n_mels, frames, g=g, device=device,
                                    freq_masks=config.freq_masks, max_bands=config.freq_mask_bands,
                                    time_masks=config.time_masks, max_frames=config.time_mask_frames)
                         for _ in range(2)]
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            za = model(a, mel_mask=masks[0])
            zb = model(b, mel_mask=masks[1])
            loss = nt_xent(za, zb, temperature=config.temperature)
            if config.group_weight > 0 and (grp >= 0).any():
                loss = loss + config.group_weight * group_contrastive(
                    za, zb, torch.from_numpy(grp), temperature=config.temperature)
            if model.classifier is not None:
                lab_t = torch.from_numpy(lab).to(device)
                known = lab_t >= 0
                if known.any():
                    logits = model.classifier(torch.cat([za[known], zb[known]]).float())
                    loss = loss + config.supervised_weight * nn.functional.cross_entropy(
                        logits, torch.cat([lab_t[known], lab_t[known]])
                    )
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

        done = step + 1
        record = {"step": done, "loss": round(float(loss.detach()), 5), "lr": round(_lr_at(step, config), 6),
                  "seconds": round(time.perf_counter() - t0, 1)}
        if val and (done % config.eval_every == 0 or done == config.steps):
            model.eval()
            record["val"] = evaluate_retrieval(Embedder(model, device=device), val, seed=config.seed)
            model.train()
        if done % config.log_every == 0 or "val" in record or done == config.steps:
            history.append(record)
            logger.info("step %d loss %.4f%s", done, record["loss"],
                        f" val {record['val']}" if "val" in record else "")
            if on_log is not None:
                on_log(record)
        if ckpt is not None and (done % config.checkpoint_every == 0 or done == config.steps):
            _save_checkpoint(ckpt, model, opt, scaler, done, history, model_config, config)

    model.eval()
    final_val = next((h["val"] for h in reversed(history) if "val" in h), None)
    return TrainResult(model=model, history=history, steps_done=config.steps, val=final_val,
                       seconds=time.perf_counter() - t0)


def _config_dict(model_config: ModelConfig) -> dict:
    d = asdict(model_config)
    d["stem_channels"] = list(d["stem_channels"])
    return d


def _save_checkpoint(path: Path, model: nn.Module, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                     step: int, history: list[dict], model_config: ModelConfig, config: TrainConfig) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scaler": scaler.state_dict(),
                "step": step, "history": history, "model_config": _config_dict(model_config),
                "train_config": asdict(config)}, tmp)
    os.replace(tmp, path)


def degraded_clip(
    clean: np.ndarray, codec: np.ndarray | None, *, sr: int, clip_s: float, seed: int, degrade_it: bool,
) -> np.ndarray:
    """A ``clip_s`` excerpt at a seeded position; with ``degrade_it``, through AAC (if given) and EVAL_MEMO."""
    n = int(round(clip_s * sr))
    clean = _ensure_length(np.asarray(clean, dtype=np.float32), n)
    rng = np.random.default_rng(seed)
    start = int(rng.integers(0, clean.size - n + 1))
    if not degrade_it:
        return clean[start : start + n].copy()
    src = _ensure_length(np.asarray(codec, dtype=np.float32), n) if codec is not None else clean
    g = torch.Generator().manual_seed(int(seed))
    return degrade(torch.from_numpy(src[start : start + n].copy())[None], sr=sr, g=g, memo=EVAL_MEMO)[0].numpy()


def evaluate_retrieval(
    embedder: Embedder,
    tracks: Sequence[TrainTrack],
    *,
    seed: int = 0,
    clip_s: float = 10.0,
    clip_hop_s: float = 1.0,
    max_track_s: float | None = 120.0,
) -> dict:
    """Own-track retrieval among ``tracks``: clean and degraded ``clip_s`` clips vs clean track vectors.

    Returns
    -------
    dict
        ``clean_top1``, ``clean_top10``, ``degraded_top1``, ``degraded_top10`` in [0, 1].
    """
    if not tracks:
        raise ParameterError("no tracks to evaluate")
    sr = embedder.sr
    lim = None if max_track_s is None else int(max_track_s * sr)
    db = np.stack([embedder.embed_track(np.asarray(t.clean[:lim], np.float32), sr=sr) for t in tracks])
    out = {}
    for name, deg in (("clean", False), ("degraded", True)):
        ranks = []
        for i, t in enumerate(tracks):
            clip = degraded_clip(t.clean, t.codec, sr=sr, clip_s=clip_s, seed=seed * 7919 + i, degrade_it=deg)
            q = mean_vector(embedder.embed_batch(frame_windows(
                clip, window_samples=embedder.window_samples, hop_samples=int(clip_hop_s * sr))))
            sims = db @ q
            ranks.append(int((sims > sims[i]).sum()))
        ranks_a = np.asarray(ranks)
        out[f"{name}_top1"] = round(float((ranks_a < 1).mean()), 4)
        out[f"{name}_top10"] = round(float((ranks_a < 10).mean()), 4)
    return out
