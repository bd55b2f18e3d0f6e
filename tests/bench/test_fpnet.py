"""Neural fingerprint: segment vectors, training, sequence search."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from engine.audio import resample
from engine.camelot import Key
from engine.errors import ParameterError
from bench.identify.fpnet.model import (
    DEFAULT_WEIGHTS,
    FP_NET_SR,
    HOP_S,
    FpNet,
    FpNetConfig,
    load_model,
    save_model,
    segment_starts,
    segment_vectors,
)
from bench.identify.fpnet.search import ReferenceSet, match_segments
from bench.identify.fpnet.train import FpTrainConfig, train_fpnet
from engine.synth import TrackSpec, render

TINY = FpNetConfig(channels=(8, 8, 16, 16), dim=16)
TINY_TRAIN = FpTrainConfig(steps=3, batch=16, warmup_steps=1, log_every=1, crowd_bank_s=10.0)


def _tracks(count: int, *, duration_s: float, seed: int = 3) -> list[np.ndarray]:
    """Synthesized tracks at the model's rate, each of a different style, tempo and key."""
    styles = ("house", "techno", "hip-hop", "drum & bass")
    out = []
    for i in range(count):
        spec = TrackSpec(style=styles[i % len(styles)], bpm=90.0 + 13 * i, key=Key(i % 12, "minor"),
                         duration_s=duration_s, seed=seed * 100 + i)
        out.append(resample(render(spec, sr=16000), orig_sr=16000, target_sr=FP_NET_SR))
    return out


def _through_composed(duration_s: float, *, seed: int) -> np.ndarray:
    """A melody that never repeats (seeded random notes with harmonics, and noise hits) at the model's rate.

    Loop-based synth tracks repeat every bar, so their offset is ambiguous; this one has one answer.
    """
    rng = np.random.default_rng(seed)
    n = int(duration_s * FP_NET_SR)
    y = np.zeros(n)
    t = 0
    while t < n:
        dur = int(rng.uniform(0.08, 0.35) * FP_NET_SR)
        k = np.arange(min(dur, n - t))
        f0 = 110.0 * 2 ** (rng.integers(0, 36) / 12)
        env = np.exp(-k / (0.15 * FP_NET_SR))
        note = sum(np.sin(2 * np.pi * h * f0 * k / FP_NET_SR) / h for h in range(1, 5) if h * f0 < 3800)
        y[t : t + k.size] += note * env
        if rng.random() < 0.3:
            y[t : t + k.size] += rng.standard_normal(k.size) * env * 0.3
        t += dur
    return (0.3 * y / np.max(np.abs(y))).astype(np.float32)


def test_segment_vectors_shape_and_unit_norm() -> None:
    """One unit vector per 1 s segment every 0.5 s."""
    torch.manual_seed(0)
    model = FpNet(TINY).eval()
    y = np.random.default_rng(0).standard_normal(int(3.2 * FP_NET_SR)).astype(np.float32) * 0.1
    v = segment_vectors(model, y, sr=FP_NET_SR)
    assert v.shape == (5, TINY.dim)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


def test_segment_vectors_short_audio_has_no_segments() -> None:
    """Audio shorter than a segment gives zero rows, not a padded guess."""
    model = FpNet(TINY).eval()
    assert segment_vectors(model, np.zeros(FP_NET_SR // 2, np.float32), sr=FP_NET_SR).shape == (0, TINY.dim)


def test_segment_vectors_rejects_wrong_rate() -> None:
    """The model runs at its own rate; other rates are refused, not silently misread."""
    with pytest.raises(ParameterError):
        segment_vectors(FpNet(TINY).eval(), np.zeros(16000, np.float32), sr=16000)


def test_segment_starts_cover_hop_grid() -> None:
    """Starts are multiples of the hop and every segment fits."""
    starts = segment_starts(int(2.6 * 100), sr=100, segment_s=1.0, hop_s=0.5)
    assert starts.tolist() == [0, 50, 100, 150]


def test_save_load_round_trip(tmp_path) -> None:
    """Saved float16 weights load to a model giving the same vectors (to float16 precision)."""
    torch.manual_seed(1)
    model = FpNet(TINY).eval()
    path = save_model(model, tmp_path / "fp.pt", version="t")
    loaded, meta = load_model(path)
    y = np.random.default_rng(1).standard_normal(2 * FP_NET_SR).astype(np.float32) * 0.1
    assert meta["version"] == "t"
    np.testing.assert_allclose(segment_vectors(loaded, y, sr=FP_NET_SR), segment_vectors(model, y, sr=FP_NET_SR), atol=0.02)


def test_training_is_deterministic_with_a_seed() -> None:
    """Two runs with one seed give the same losses and weights."""
    tracks = _tracks(3, duration_s=6.0)
    runs = [train_fpnet(tracks, sr=FP_NET_SR, config=TINY_TRAIN, model_config=TINY) for _ in range(2)]
    assert [h["loss"] for h in runs[0].history] == [h["loss"] for h in runs[1].history]
    for a, b in zip(runs[0].model.state_dict().values(), runs[1].model.state_dict().values()):
        assert torch.equal(a, b)


def test_training_lowers_the_loss() -> None:
    """A short run on synthesized tracks ends with a lower contrastive loss than it starts with."""
    tracks = _tracks(4, duration_s=8.0)
    cfg = replace(TINY_TRAIN, steps=40, batch=24, lr=3e-3, warmup_steps=5, log_every=10)
    res = train_fpnet(tracks, sr=FP_NET_SR, config=cfg, model_config=TINY)
    assert res.history[-1]["loss"] < res.history[0]["loss"] - 0.3


def test_match_segments_finds_track_offset_and_speed() -> None:
    """A query made of a track's own vectors, read 3 % fast from segment 7, names that track, offset and speed."""
    rng = np.random.default_rng(2)
    refs = [rng.standard_normal((60, 16)).astype(np.float32) for _ in range(5)]
    refs = [r / np.linalg.norm(r, axis=1, keepdims=True) for r in refs]
    ref = ReferenceSet.from_tracks(enumerate(refs, start=10), hop_s=0.5)
    rows = 7 + np.rint(1.03 * np.arange(30)).astype(int)
    query = refs[3][rows] + 0.3 * rng.standard_normal((30, 16)).astype(np.float32)
    best = match_segments(ref, query / np.linalg.norm(query, axis=1, keepdims=True))[0]
    assert (best.track_id, best.offset_s, best.speed) == (13, 3.5, 1.03)


def test_reference_set_rejects_duplicate_track() -> None:
    """A track id stored twice would split its votes; it is refused."""
    v = np.eye(4, dtype=np.float32)
    with pytest.raises(ParameterError):
        ReferenceSet.from_tracks([(1, v), (1, v)], hop_s=0.5)


@pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason="no shipped fingerprint weights")
def test_shipped_model_finds_a_noisy_excerpt() -> None:
    """With the shipped weights, a noisy, band-limited 5 s excerpt of a synthesized track names its track and offset."""
    model, _ = load_model(DEFAULT_WEIGHTS)
    tracks = [_through_composed(24.0, seed=s) for s in range(4)]
    ref = ReferenceSet.from_tracks(((i, segment_vectors(model, y, sr=FP_NET_SR)) for i, y in enumerate(tracks)),
                                   hop_s=HOP_S)
    rng = np.random.default_rng(4)
    start = int(9.25 * FP_NET_SR)  # between two reference segments
    clip = tracks[2][start : start + 5 * FP_NET_SR].astype(np.float64)
    clip = np.convolve(clip, np.ones(4) / 4, mode="same")  # a dull microphone
    clip += rng.standard_normal(clip.size) * np.sqrt(np.mean(clip**2) / 10 ** (5 / 10))  # 5 dB SNR
    best = match_segments(ref, segment_vectors(model, clip.astype(np.float32), sr=FP_NET_SR))[0]
    assert best.track_id == 2
    assert abs(best.offset_s - 9.25) <= 0.5
