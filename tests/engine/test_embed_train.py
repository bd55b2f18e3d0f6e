"""Tests for engine.embed.train (contrastive training loop)."""

import numpy as np
import pytest
import torch

from engine.audio import resample
from engine.embed.model import ModelConfig
from engine.embed.train import (
    TrainConfig,
    TrainTrack,
    group_contrastive,
    holdout_split,
    nt_xent,
    train_embedder,
)
from engine.errors import ParameterError
from engine.synth import demo_specs, render

TINY = ModelConfig(window_s=1.0, stem_channels=(4, 8, 8), width=32, blocks=1, embed_dim=16)


@pytest.fixture(scope="module")
def tracks() -> list[TrainTrack]:
    """Six short synthesized tracks of different styles, at the model's rate."""
    out = []
    for spec in demo_specs(count=6, duration_s=4.0, seed=3):
        y = resample(render(spec, sr=22050), orig_sr=22050, target_sr=16000)
        out.append(TrainTrack(clean=y))
    return out


def _config(**kw) -> TrainConfig:
    base = dict(steps=12, batch_tracks=6, lr=3e-3, warmup_steps=2, eval_every=1000, checkpoint_every=4)
    return TrainConfig(**(base | kw))


def test_tiny_run_lowers_the_loss(tracks):
    """A short run ends with a lower contrastive loss than it started."""
    torch.set_num_threads(1)
    res = train_embedder(tracks, config=_config(steps=24, log_every=1), model_config=TINY)
    first = np.mean([h["loss"] for h in res.history[:4]])
    last = np.mean([h["loss"] for h in res.history[-4:]])
    assert last < first


def test_resume_matches_uninterrupted_run(tracks, tmp_path):
    """A run interrupted after a checkpoint and resumed ends with the weights of one straight run."""
    torch.set_num_threads(1)
    cfg = _config(steps=8, checkpoint_every=4, log_every=1)
    straight = train_embedder(tracks, config=cfg, model_config=TINY).model.state_dict()
    ckpt = tmp_path / "ckpt.pt"

    def crash_at_6(record):
        if record["step"] == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_embedder(tracks, config=cfg, model_config=TINY, checkpoint_path=ckpt, on_log=crash_at_6)
    resumed = train_embedder(tracks, config=cfg, model_config=TINY, checkpoint_path=ckpt)
    assert resumed.history[0]["step"] == 1  # the history survived the interruption
    for k, v in resumed.model.state_dict().items():
        torch.testing.assert_close(v, straight[k])


def test_checkpoint_from_other_settings_is_refused(tracks, tmp_path):
    """Resuming with different settings is an error, not a silent mix."""
    ckpt = tmp_path / "ckpt.pt"
    train_embedder(tracks, config=_config(steps=2, checkpoint_every=1), model_config=TINY, checkpoint_path=ckpt)
    with pytest.raises(ParameterError, match="different settings"):
        train_embedder(tracks, config=_config(steps=3, checkpoint_every=1), model_config=TINY, checkpoint_path=ckpt)


def test_same_seed_same_weights(tracks):
    """Two runs with one seed produce identical weights."""
    torch.set_num_threads(1)
    a = train_embedder(tracks, config=_config(steps=3), model_config=TINY).model.state_dict()
    b = train_embedder(tracks, config=_config(steps=3), model_config=TINY).model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k])


def test_labels_add_a_supervised_head(tracks):
    """Labelled tracks give the model a classifier with one output per class."""
    labelled = [TrainTrack(clean=t.clean, label=i % 2) for i, t in enumerate(tracks)]
    res = train_embedder(labelled, config=_config(steps=2), model_config=TINY)
    assert res.model.classifier is not None and res.model.classifier.out_features == 2


def test_holdout_split_is_stable_and_stratified():
    """The held-out set takes a share of every group and ignores later additions."""
    ids = [f"t{i}" for i in range(20)]
    groups = ["a"] * 10 + ["b"] * 10
    held = holdout_split(ids, groups, fraction=0.2, seed=0)
    assert len(held & set(ids[:10])) == 2 and len(held & set(ids[10:])) == 2
    more = holdout_split(ids + ["t20", "t21"], groups + ["a", "b"], fraction=0.2, seed=0)
    assert len(held - more) <= 2  # rounding may move the boundary, never reshuffle


def test_holdout_split_per_seed_is_deterministic_and_disjoint():
    """One seed always gives one split, with every group's share held out; seeds give different splits."""
    ids = [f"t{i:02d}" for i in range(30)]
    groups = ["a"] * 10 + ["b"] * 12 + ["c"] * 8
    splits = {}
    for seed in (0, 1, 2):
        held = holdout_split(ids, groups, fraction=0.2, seed=seed)
        assert held == holdout_split(list(reversed(ids)), list(reversed(groups)), fraction=0.2, seed=seed)
        train = set(ids) - held
        assert held <= set(ids) and not held & train and len(held) + len(train) == len(ids)
        assert [sum(g == x for g, t in zip(groups, ids) if t in held) for x in "abc"] == [2, 2, 2]
        splits[seed] = held
    assert len({frozenset(h) for h in splits.values()}) == 3
    # the default split (seed 0) is the one every earlier run and the shipped weights were measured on
    assert splits[0] == {"t02", "t08", "t13", "t15", "t22", "t24"}


def test_split_seed_defaults_to_the_training_seed():
    """Without a split seed the split follows the training seed, as before the option existed."""
    assert TrainConfig(seed=5).holdout_seed == 5
    assert TrainConfig(seed=5, split_seed=1).holdout_seed == 1
    assert TrainConfig(seed=0, split_seed=0).holdout_seed == 0


def test_checkpoint_of_another_split_is_refused(tracks, tmp_path):
    """A run checkpointed on one held-out split (or extra tracks) does not resume on another; old checkpoints do."""
    ckpt = tmp_path / "ckpt.pt"
    train_embedder(tracks, config=_config(steps=2, checkpoint_every=1, split_seed=1), model_config=TINY,
                   checkpoint_path=ckpt)
    with pytest.raises(ParameterError, match="different settings"):
        train_embedder(tracks, config=_config(steps=2, checkpoint_every=1, split_seed=2), model_config=TINY,
                       checkpoint_path=ckpt)
    extra = tmp_path / "extra.pt"
    train_embedder(tracks, config=_config(steps=2, checkpoint_every=1, extra_manifests=("x.tsv",)), model_config=TINY,
                   checkpoint_path=extra)
    with pytest.raises(ParameterError, match="different settings"):
        train_embedder(tracks, config=_config(steps=2, checkpoint_every=1), model_config=TINY, checkpoint_path=extra)
    # the same extra tracks resume
    train_embedder(tracks, config=_config(steps=2, checkpoint_every=1, extra_manifests=("x.tsv",)), model_config=TINY,
                   checkpoint_path=extra)
    old = tmp_path / "old.pt"
    train_embedder(tracks, config=_config(steps=2, checkpoint_every=1, log_every=1), model_config=TINY,
                   checkpoint_path=old)
    state = torch.load(old, weights_only=True)
    del state["train_config"]["split_seed"], state["train_config"]["extra_manifests"]  # as before the fields existed
    torch.save(state, old)
    res = train_embedder(tracks, config=_config(steps=2, checkpoint_every=1, log_every=1), model_config=TINY,
                         checkpoint_path=old)
    assert [h["step"] for h in res.history] == [1, 2]  # picked up where it stopped


def test_nt_xent_prefers_aligned_pairs():
    """Matching pairs give a lower loss than shuffled ones."""
    g = torch.Generator().manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(8, 16, generator=g), dim=1)
    assert nt_xent(a, a) < nt_xent(a, a.roll(1, dims=0))


def test_one_track_is_not_enough(tracks):
    """Contrastive training needs negatives."""
    with pytest.raises(ParameterError, match="at least 2"):
        train_embedder(tracks[:1], config=_config(), model_config=TINY)


def test_group_term_prefers_groups_that_sit_together():
    """Same-group tracks lying close give a lower group loss than the same vectors with the groups swapped."""
    g = torch.Generator().manual_seed(1)
    centres = torch.nn.functional.normalize(torch.randn(2, 16, generator=g), dim=1)
    a = torch.nn.functional.normalize(centres.repeat_interleave(4, 0) + 0.3 * torch.randn(8, 16, generator=g), dim=1)
    b = torch.nn.functional.normalize(a + 0.1 * torch.randn(8, 16, generator=g), dim=1)
    right = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    wrong = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])
    assert group_contrastive(a, b, right) < group_contrastive(a, b, wrong)


def test_group_term_needs_a_partner():
    """Tracks without a group partner in the batch (or without a group) add nothing."""
    a = torch.nn.functional.normalize(torch.randn(4, 16, generator=torch.Generator().manual_seed(2)), dim=1)
    assert float(group_contrastive(a, a, torch.tensor([0, 1, 2, -1]))) == 0.0
    assert float(group_contrastive(a, a, torch.tensor([0, 0, -1, -1]))) > 0.0


def test_group_weight_pulls_a_group_together(tracks):
    """Training with groups brings same-group tracks closer than training without them (same seed)."""
    torch.set_num_threads(1)
    grouped = [TrainTrack(clean=t.clean, group=i % 2) for i, t in enumerate(tracks)]

    def margin(group_weight: float) -> float:
        model = train_embedder(grouped, config=_config(steps=24, group_weight=group_weight),
                               model_config=TINY).model
        from engine.embed.model import Embedder

        emb = Embedder(model)
        v = np.stack([emb.embed_track(np.asarray(t.clean, np.float32), sr=16000) for t in tracks])
        sims = v @ v.T
        same = np.array([[i % 2 == j % 2 and i != j for j in range(6)] for i in range(6)])
        other = np.array([[i % 2 != j % 2 for j in range(6)] for i in range(6)])
        return float(sims[same].mean() - sims[other].mean())

    assert margin(2.0) > margin(0.0)


def test_group_weight_zero_is_plain_infonce(tracks):
    """With group_weight 0 the groups change nothing: same weights as ungrouped tracks."""
    torch.set_num_threads(1)
    grouped = [TrainTrack(clean=t.clean, group=i % 2) for i, t in enumerate(tracks)]
    a = train_embedder(grouped, config=_config(steps=3, group_weight=0.0), model_config=TINY).model.state_dict()
    b = train_embedder(tracks, config=_config(steps=3, group_weight=0.0), model_config=TINY).model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k])


def test_spec_augment_changes_training_and_stays_seeded(tracks):
    """Masking is part of the seeded run: same seed same weights, and different weights from no masking."""
    torch.set_num_threads(1)
    cfg = _config(steps=3, freq_masks=2, freq_mask_bands=8, time_masks=2, time_mask_frames=10)
    a = train_embedder(tracks, config=cfg, model_config=TINY).model.state_dict()
    b = train_embedder(tracks, config=cfg, model_config=TINY).model.state_dict()
    plain = train_embedder(tracks, config=_config(steps=3), model_config=TINY).model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k])
    assert any(not torch.allclose(a[k].float(), plain[k].float()) for k in a if a[k].is_floating_point())
