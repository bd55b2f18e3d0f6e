"""Contrastive training of the fingerprint network on arrays the caller provides.

A positive pair is a clean 1 s segment and a phone-memo copy of (nearly) the
same second: shifted by up to ``max_shift_s`` (a query's segments never sit
on the reference grid), played ±``max_speed_change`` fast, mixed with crowd
noise (``engine.degrade.babble``, not the benchmark's generator), sometimes
with another track's music, then room, pink noise, phone band-pass, gain and
clipping (``engine.embed.augment.degrade``). Every other segment in the
batch — other tracks and other seconds of the same track — is a negative
(InfoNCE, ``engine.embed.train.nt_xent``).

Each step's randomness is derived from ``(seed, step)``: a seed reproduces a
run exactly on the same device.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from engine.degrade import babble
from engine.embed.augment import VoiceMemo, change_speed, degrade
from engine.embed.train import nt_xent
from engine.errors import ParameterError
from bench.identify.fpnet.model import FpNet, FpNetConfig

logger = logging.getLogger(__name__)

CLUB_MEMO = VoiceMemo(p_bandpass=0.9, p_reverb=0.8, p_noise=0.5, p_clip=0.2, highpass_hz=(100.0, 400.0),
                      lowpass_hz=(2500.0, 4000.0), rt60_s=(0.2, 0.9), snr_db=(0.0, 20.0), gain_db=(-12.0, 6.0))
"""The view-B chain after the crowd: pink noise is the lesser part; the crowd (added before) is the main one."""


@dataclass(frozen=True)
class FpTrainConfig:
    """Optimisation and augmentation settings; ``seed`` fixes initial weights and every batch.

    Attributes
    ----------
    crowd_snr_db : (float, float)
        Music-to-crowd power ratio of view B (full band, as a phone would measure it).
    p_music : float
        Chance that another training segment is mixed in (a different song bleeding in), at
        ``music_snr_db``.
    pre_roll_s : float
        Audio before the segment that goes through the room too, so the segment starts reverberant.
    """

    steps: int = 1500
    batch: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    temperature: float = 0.05
    seed: int = 0
    max_shift_s: float = 0.25
    max_speed_change: float = 0.04
    crowd_snr_db: tuple[float, float] = (-8.0, 15.0)
    p_crowd: float = 0.9
    p_music: float = 0.2
    music_snr_db: tuple[float, float] = (5.0, 20.0)
    pre_roll_s: float = 0.5
    min_rms: float = 1e-3
    crowd_bank_s: float = 120.0
    log_every: int = 25


@dataclass
class FpTrainResult:
    """What a run produced."""

    model: FpNet
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def _lr_at(step: int, config: FpTrainConfig) -> float:
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _pick_starts(tracks: Sequence[np.ndarray], weights: np.ndarray, *, rng: np.random.Generator, count: int,
                 before: int, after: int, min_rms: float, check: int) -> tuple[np.ndarray, np.ndarray]:
    """(track index, centre sample) per item, drawn by track length; a few re-draws avoid silent segments."""
    ti = rng.choice(len(tracks), size=count, p=weights)
    pos = np.empty(count, np.int64)
    for j, t in enumerate(ti):
        y = tracks[t]
        for _ in range(4):
            pos[j] = rng.integers(before, y.size - after + 1)
            seg = y[pos[j] : pos[j] + check]
            if float(np.sqrt(np.mean(np.square(seg, dtype=np.float32)))) >= min_rms:
                break
    return ti, pos


def _source_len(config: FpTrainConfig, *, sr: int, seg: int) -> int:
    return int(math.ceil((int(config.pre_roll_s * sr) + seg) * (1 + config.max_speed_change))) + 2


def _margins(config: FpTrainConfig, *, sr: int, seg: int) -> tuple[int, int]:
    """Samples a segment start needs before it (shift, sped-up pre-roll) and after it (shift, source)."""
    shift = int(config.max_shift_s * sr)
    before = shift + int(math.ceil(int(config.pre_roll_s * sr) * (1 + config.max_speed_change))) + 1
    return before, shift + _source_len(config, sr=sr, seg=seg)


def _sample_views(
    tracks: Sequence[np.ndarray], weights: np.ndarray, crowd: np.ndarray, *, step: int, config: FpTrainConfig, sr: int,
    seg: int, device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """View A (clean segments) and view B (degraded, shifted, speed-changed copies), each ``(batch, seg)``."""
    rng = np.random.default_rng([config.seed, step])
    g = torch.Generator(device=device)
    g.manual_seed(int(rng.integers(2**62)))
    n = config.batch
    pre = int(config.pre_roll_s * sr)
    shift = int(config.max_shift_s * sr)
    out_len = pre + seg
    src_len = _source_len(config, sr=sr, seg=seg)
    # B's source starts pre + shift before A's segment and must fit in the track
    before, after = _margins(config, sr=sr, seg=seg)
    ti, pos = _pick_starts(tracks, weights, rng=rng, count=n, before=before, after=after, min_rms=config.min_rms,
                           check=seg)
    a = np.stack([tracks[t][p : p + seg] for t, p in zip(ti, pos)]).astype(np.float32)
    rates = rng.uniform(1 - config.max_speed_change, 1 + config.max_speed_change, size=n)
    # the speed change is centred on A's segment: pre-roll first, so shift the source start by the rate
    starts = pos + rng.integers(-shift, shift + 1, size=n) - np.rint(pre * rates).astype(np.int64)
    b_src = np.stack([tracks[t][s : s + src_len] for t, s in zip(ti, starts)]).astype(np.float32)
    b = change_speed(torch.from_numpy(b_src).to(device), torch.from_numpy(rates.astype(np.float32)).to(device),
                     out_samples=out_len)
    rms = b.square().mean(dim=1, keepdim=True).sqrt().clamp(min=1e-5)
    # crowd: crops of a bank rendered once (engine.degrade.babble), at a full-band SNR
    c_start = rng.integers(0, crowd.size - out_len, size=n)
    noise = torch.from_numpy(np.stack([crowd[s : s + out_len] for s in c_start])).to(device)
    snr = rng.uniform(*config.crowd_snr_db, size=n)
    level = torch.from_numpy((10 ** (-snr / 20) * (rng.random(n) < config.p_crowd)).astype(np.float32)).to(device)
    b = b + noise * rms * level[:, None]
    # another song bleeding in (from another place in the training set)
    ti2, pos2 = _pick_starts(tracks, weights, rng=rng, count=n, before=0, after=out_len, min_rms=config.min_rms,
                             check=out_len)
    other = torch.from_numpy(np.stack([tracks[t][p : p + out_len] for t, p in zip(ti2, pos2)]).astype(np.float32)).to(device)
    o_rms = other.square().mean(dim=1, keepdim=True).sqrt().clamp(min=1e-5)
    m_snr = rng.uniform(*config.music_snr_db, size=n)
    m_level = torch.from_numpy((10 ** (-m_snr / 20) * (rng.random(n) < config.p_music)).astype(np.float32)).to(device)
    b = b + other / o_rms * rms * m_level[:, None]
    b = degrade(b, sr=sr, g=g, memo=CLUB_MEMO)[:, pre:]
    return torch.from_numpy(a).to(device), b.contiguous()


def crowd_bank(*, sr: int, duration_s: float, seed: int) -> np.ndarray:
    """Unit-RMS crowd noise (``engine.degrade.babble``) rendered once per run, in 10 s pieces of new voices."""
    rng = np.random.default_rng([seed, 7])
    piece = int(10 * sr)
    parts = [babble(piece, sr=sr, rng=rng, voices=int(rng.integers(4, 13))) for _ in range(max(1, int(duration_s // 10)))]
    return np.concatenate(parts).astype(np.float32)


def train_fpnet(
    tracks: Sequence[np.ndarray],
    *,
    sr: int,
    config: FpTrainConfig = FpTrainConfig(),
    model_config: FpNetConfig = FpNetConfig(),
    device: torch.device | str = "cpu",
    on_log: Callable[[dict], None] | None = None,
) -> FpTrainResult:
    """Train a fresh :class:`FpNet` on ``tracks``.

    Parameters
    ----------
    tracks : sequence of np.ndarray [shape=(n_i,)]
        Mono audio at ``sr`` (the model's rate); each at least ``segment_s + 2·max_shift_s +
        pre_roll_s`` long with the speed margin (shorter ones are skipped), at least two in all.
    sr : int
    config : FpTrainConfig
    model_config : FpNetConfig
    device : torch.device or str
    on_log : callable or None
        Called with each history record (step, loss, lr, seconds).

    Returns
    -------
    FpTrainResult
        The model in eval mode, the loss history and the wall time.
    """
    if sr != model_config.sr:
        raise ParameterError(f"tracks must be at the model's rate {model_config.sr} Hz, got {sr}")
    if config.steps < 1 or config.batch < 2:
        raise ParameterError("need steps >= 1 and batch >= 2")
    seg = model_config.segment_samples
    need = sum(_margins(config, sr=sr, seg=seg)) + 1
    usable = [np.asarray(t, dtype=np.float32) for t in tracks if t.ndim == 1 and t.size >= need]
    if len(usable) < 2:
        raise ParameterError(f"need at least two tracks of >= {need / sr:.2f} s, got {len(usable)}")
    lengths = np.array([t.size - need for t in usable], np.float64) + 1.0  # a start per usable sample
    weights = lengths / lengths.sum()
    device = torch.device(device)
    crowd = crowd_bank(sr=sr, duration_s=config.crowd_bank_s, seed=config.seed)

    torch.manual_seed(config.seed)
    model = FpNet(model_config).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    history: list[dict] = []
    t0 = time.perf_counter()
    running = 0.0
    model.train()
    for step in range(config.steps):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, config)
        with torch.no_grad():
            a, b = _sample_views(usable, weights, crowd, step=step, config=config, sr=sr, seg=seg, device=device)
        za, zb = model(torch.cat([a, b])).chunk(2)
        loss = nt_xent(za, zb, temperature=config.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running += float(loss.detach())
        if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
            k = (step % config.log_every) + 1
            rec = {"step": step + 1, "loss": running / k, "lr": _lr_at(step, config),
                   "seconds": time.perf_counter() - t0}
            running = 0.0
            history.append(rec)
            logger.info("step %d loss %.3f lr %.2e %.0f s", rec["step"], rec["loss"], rec["lr"], rec["seconds"])
            if on_log is not None:
                on_log(rec)
    model.eval()
    return FpTrainResult(model=model, history=history, seconds=time.perf_counter() - t0)
