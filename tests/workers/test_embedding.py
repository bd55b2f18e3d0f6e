"""Embedding jobs: decode cache, dev-set loading, catalog index build with versions recorded."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from db.queries import models as models_q
from db.queries import vectors as vectors_q
from engine.camelot import Key
from engine.embed.train import TrainConfig, holdout_split
from engine.errors import ParameterError
from engine.embed.model import SoundsLikeNet, save_model
from engine.index import VectorIndex
from workers.catalog import add_paths
from workers.embedding import (
    aac_roundtrip,
    build_catalog_index,
    cached_audio,
    embed_audio,
    load_devset,
    open_embedder,
    read_manifest,
    sound_scores,
    sounds_like_file,
    train_from_manifest,
    weights_held_out,
)
from workers.settings import EmbedSettings, Settings, SettingsError


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    """Seeded, untrained weights (the pipeline, not the quality, is under test)."""
    torch.manual_seed(0)
    return save_model(SoundsLikeNet().eval(), tmp_path / "w" / "t.pt", version="test-v1")


def test_cache_decodes_once_and_notices_edits(tmp_path, write_track):
    """A second read comes from the cache; touching the file invalidates it."""
    src = write_track("a.wav", duration_s=4.0)
    cache = tmp_path / "cache"
    y1 = cached_audio(src, cache_dir=cache, sr=16000)
    assert len(list(cache.glob("*.npy"))) == 1
    y2 = cached_audio(src, cache_dir=cache, sr=16000)
    np.testing.assert_allclose(y1, y2, atol=1e-3)  # float16 storage
    os.utime(src, (1_000_000_000, 1_000_000_000))
    cached_audio(src, cache_dir=cache, sr=16000)
    assert len(list(cache.glob("*.npy"))) == 2


def test_aac_roundtrip_keeps_length_and_alignment(rng):
    """The AAC copy is sample-aligned with the original (priming removed)."""
    t = np.arange(3 * 16000) / 16000
    y = (0.3 * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 2 * t))).astype(np.float32)
    out = aac_roundtrip(y, sr=16000)
    assert out.shape == y.shape
    corr = float(np.corrcoef(y[2000:-2000], out[2000:-2000])[0, 1])
    assert corr > 0.9


def _tone_file(path: Path, *, freq: float, seconds: float) -> Path:
    t = np.arange(int(seconds * 16000)) / 16000
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 16000)
    return path


def test_devset_skips_short_files_and_holds_out_per_group(tmp_path):
    """Files under min_seconds are skipped; each group gives up its share to the held-out part."""
    rows = []
    for g in ("pkg-a", "pkg-b"):
        for i in range(3):
            p = _tone_file(tmp_path / f"{g}-{i}.wav", freq=220.0 * (i + 1), seconds=5.5)
            rows.append(f"{g}{i}\t{p}\t{g}\t5.5")
    short = _tone_file(tmp_path / "short.wav", freq=440.0, seconds=2.0)
    rows.append(f"s\t{short}\tpkg-a\t2")
    manifest = tmp_path / "m.tsv"
    manifest.write_text("\n".join(rows) + "\n")
    assert len(read_manifest(manifest)) == 7
    ds = load_devset(manifest, cache_dir=tmp_path / "cache", sr=16000, min_seconds=5.0, holdout_fraction=0.34)
    assert len(ds.entries) == 6
    held = [e for e in ds.entries if e.track_id in ds.held_out]
    assert sorted(e.package for e in held) == ["pkg-a", "pkg-b"]
    assert all(len(c) == len(k) for c, k in zip(ds.clean, ds.codec))


def test_training_records_its_split_and_the_bench_queries_it(tmp_path):
    """Weights trained on split seed N hold out exactly that split; evaluating them on another one is refused."""
    rows, ids, groups = [], [], []
    for g in ("pkg-a", "pkg-b"):
        for i in range(5):
            p = _tone_file(tmp_path / f"{g}-{i}.wav", freq=110.0 * (i + 2), seconds=5.5)
            rows.append(f"{g}{i}\t{p}\t{g}\t5.5")
            ids.append(f"{g}{i}")
            groups.append(g)
    manifest = tmp_path / "m.tsv"
    manifest.write_text("\n".join(rows) + "\n")
    split = {s: frozenset(holdout_split(ids, groups, fraction=0.2, seed=s)) for s in range(6)}
    other = next(s for s in range(1, 6) if split[s] != split[0])
    _, meta = train_from_manifest(
        manifest, cache_dir=tmp_path / "cache", out_path=tmp_path / "w.pt", version="split-test",
        config=TrainConfig(steps=1, batch_tracks=2, warmup_steps=1, seed=0, split_seed=other), device="cpu",
        threads=1, holdout_fraction=0.2,
    )
    trained_on = meta["trained_on"]
    assert trained_on["split_seed"] == other and meta["train_config"]["seed"] == 0
    assert set(trained_on["held_out_ids"]) == split[other] and trained_on["tracks"] == len(ids) - len(split[other])
    assert weights_held_out(meta, ids, groups) == (other, split[other])
    assert weights_held_out(meta, ids, groups, split_seed=other) == (other, split[other])
    with pytest.raises(ParameterError, match="trained on"):
        weights_held_out(meta, ids, groups, split_seed=0)


def _manifest(tmp_path: Path, name: str, groups: tuple[str, ...], *, per_group: int, base_freq: float) -> Path:
    rows = []
    for gi, g in enumerate(groups):
        for i in range(per_group):
            freq = base_freq * (1 + gi) + 37.0 * i
            rows.append(f"{name}{gi}{i}\t{_tone_file(tmp_path / f'{name}-{g}-{i}.wav', freq=freq, seconds=5.5)}\t{g}\t5.5")
    path = tmp_path / f"{name}.tsv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_extra_manifest_tracks_are_trained_on_never_held_out(tmp_path, monkeypatch):
    """Extra tracks join training with their package as group; the held-out split is the same without them."""
    import engine.embed.train as train_mod

    main = _manifest(tmp_path, "d", ("pkg-a", "pkg-b"), per_group=5, base_freq=110.0)
    extra = _manifest(tmp_path, "x", ("pkg-x",), per_group=3, base_freq=900.0)
    seen: dict[str, tuple] = {}
    real_train = train_mod.train_embedder

    def spy(tracks, *, config, val, **kw):
        seen[config.extra_manifests and "extra" or "plain"] = (list(tracks), list(val))
        return real_train(tracks, config=config, val=val, **kw)

    monkeypatch.setattr(train_mod, "train_embedder", spy)
    metas = {}
    for key, extras in (("plain", ()), ("extra", (str(extra),))):
        _, metas[key] = train_from_manifest(
            main, cache_dir=tmp_path / "cache", out_path=tmp_path / f"{key}.pt", version=key,
            config=TrainConfig(steps=1, batch_tracks=4, warmup_steps=1, split_seed=1, extra_manifests=extras),
            device="cpu", threads=1, holdout_fraction=0.2)
    plain, with_extra = metas["plain"]["trained_on"], metas["extra"]["trained_on"]
    assert with_extra["held_out_ids"] == plain["held_out_ids"] and len(plain["held_out_ids"]) == 2
    assert with_extra["tracks"] == plain["tracks"] + 3
    extra_audio = [cached_audio(e.path, cache_dir=tmp_path / "cache", sr=16000) for e in read_manifest(extra)]
    trained, val = seen["extra"]
    in_training = [t for t in trained if any(len(t.clean) == len(y) and np.allclose(t.clean, y, atol=1e-3)
                                             for y in extra_audio)]
    assert len(in_training) == 3 and len({t.group for t in in_training}) == 1
    assert in_training[0].group not in {t.group for t in trained if all(t is not x for x in in_training)}
    assert not any(np.allclose(v.clean, y, atol=1e-3) for v in val for y in extra_audio if len(v.clean) == len(y))
    assert [len(v.clean) for v in val] == [len(v.clean) for v in seen["plain"][1]]
    described = with_extra["extra"][0]
    assert described["manifest"] == str(extra) and described["packages"] == {"pkg-x": 3}
    assert described["sha256"] == hashlib.sha256(extra.read_bytes()).hexdigest() and plain["extra"] == []
    assert metas["extra"]["train_config"]["extra_manifests"] == [str(extra)]


def test_extra_manifest_ids_must_not_repeat_the_main_ones(tmp_path):
    """An extra track reusing a main track's id is refused (held-out ids must name one track)."""
    main = _manifest(tmp_path, "d", ("pkg-a",), per_group=3, base_freq=110.0)
    clash = tmp_path / "clash.tsv"
    clash.write_text(main.read_text().replace("\tpkg-a\t", "\tpkg-x\t"))
    with pytest.raises(ParameterError, match="repeat"):
        train_from_manifest(main, cache_dir=tmp_path / "cache", out_path=tmp_path / "w.pt", version="clash",
                            config=TrainConfig(steps=1, batch_tracks=2, warmup_steps=1,
                                               extra_manifests=(str(clash),)), device="cpu", threads=1)


def test_old_sidecars_were_held_out_on_their_training_seed():
    """Sidecars from before the split seed: the recorded ids rule, else the training seed's split."""
    ids, groups = [f"t{i}" for i in range(10)], ["a"] * 5 + ["b"] * 5
    recorded = sorted(holdout_split(ids, groups, fraction=0.2, seed=3))
    old = {"train_config": {"seed": 3}, "trained_on": {"held_out_ids": recorded}}
    assert weights_held_out(old, ids, groups) == (3, frozenset(recorded))
    del old["trained_on"]["held_out_ids"]
    assert weights_held_out(old, ids, groups) == (3, frozenset(recorded))


def test_embed_audio_resamples_to_the_model_rate(weights, rng):
    """Audio at the analysis rate gets a unit vector from the 16 kHz model."""
    embedder, version = open_embedder(EmbedSettings(weights=str(weights), device="cpu", threads=1))
    y = (0.1 * rng.standard_normal(22050 * 7)).astype(np.float32)
    te = embed_audio(y, sr=22050, embedder=embedder, model_version=version)
    assert version == "test-v1" and te.vector.shape == (128,)
    assert abs(float(np.linalg.norm(te.vector)) - 1.0) < 1e-5
    assert te.windows.shape == (4, 128)  # 3 s windows every 1.5 s, the last one aligned to the end


def test_bad_embed_device_setting_is_refused():
    """A typo in MIXWITH_EMBED_DEVICE names the variable."""
    with pytest.raises(SettingsError, match="MIXWITH_EMBED_DEVICE"):
        Settings.from_env({"MIXWITH_EMBED_DEVICE": "gpu"})


async def test_index_build_embeds_records_and_reuses(pool, settings, weights, write_track, tmp_path):
    """index build embeds the catalog, registers the build, answers a clip, and a rebuild re-embeds nothing."""
    lib = tmp_path / "lib"
    for i, style in enumerate(("house", "techno", "hip-hop")):
        write_track(f"t{i}.wav", style=style, bpm=120 + i, key=Key(i, "minor"), duration_s=8.0, seed=i, folder=lib)
    await add_paths(pool, [lib], audio=settings.audio)
    settings = dataclasses.replace(settings, embed=EmbedSettings(weights=str(weights), device="cpu", threads=1))
    embedder, version = open_embedder(settings.embed)

    first = await build_catalog_index(pool, settings=settings, embedder=embedder, model_version=version)
    assert (first.n_items, first.embedded, first.mode) == (3, 3, "exact")
    async with pool.acquire() as conn:
        active = await models_q.active(conn, "annoy")
    assert active is not None and active.artifact_path == first.build_dir

    index = VectorIndex.load(settings.index_dir, version)
    ids, vecs = index.vectors()
    scores = sound_scores(index, vecs[0], k=3)
    assert max(scores, key=scores.get) == int(ids[0])
    assert all(0.0 <= s <= 1.0 for s in scores.values())

    async with pool.acquire() as conn:
        assert len(await models_q.list_versions(conn, "annoy")) == 1
    clip = write_track("clip.wav", style="house", bpm=120, key=Key(0, "minor"), duration_s=8.0, seed=0)
    near = sounds_like_file(clip, settings=settings, embedder=embedder, model_version=version, index=index)
    assert set(near) == {int(i) for i in ids}
    # a small catalog keeps window vectors, and the clip (t0's audio) is matched window by window
    assert index.has_windows
    rows_w, _ = index.window_vectors()
    assert set(rows_w.tolist()) == {0, 1, 2}
    t0_id = next(int(i) for i, v in zip(ids, vecs) if np.allclose(v, vecs[0]))
    assert max(near, key=near.get) == t0_id and near[t0_id] > 0.99

    second = await build_catalog_index(pool, settings=settings, embedder=embedder, model_version=version)
    assert (second.embedded, second.reused) == (0, 3)
    assert index.refresh(settings.index_dir, version).build_id != index.build_id


async def test_index_build_stores_vectors_per_model_version(pool, settings, weights, write_track, tmp_path):
    """Track vectors land in track_vectors; a rebuild reads them back, and another model version embeds afresh."""
    lib = tmp_path / "lib"
    for i, style in enumerate(("house", "techno")):
        write_track(f"t{i}.wav", style=style, bpm=122 + i, key=Key(i, "minor"), duration_s=8.0, seed=i, folder=lib)
    await add_paths(pool, [lib], audio=settings.audio)
    settings = dataclasses.replace(settings, embed=EmbedSettings(weights=str(weights), device="cpu", threads=1))
    embedder, version = open_embedder(settings.embed)
    await build_catalog_index(pool, settings=settings, embedder=embedder, model_version=version)
    async with pool.acquire() as conn:
        stored = await vectors_q.for_version(conn, version)
    assert len(stored) == 2
    index = VectorIndex.load(settings.index_dir, version)
    ids, vecs = index.vectors()
    for tid, vec in zip(ids, vecs):  # the database holds the very vectors the index serves
        np.testing.assert_allclose(stored[int(tid)], vec, atol=1e-5)

    # With the index directory gone, the stored vectors are still served, but a small catalog's
    # window vectors lived only in the build: its tracks are embedded again for them.
    import shutil

    shutil.rmtree(settings.index_dir)
    again = await build_catalog_index(pool, settings=settings, embedder=embedder, model_version=version)
    assert again.embedded == 2 and VectorIndex.load(settings.index_dir, version).has_windows
    ids2, vecs2 = VectorIndex.load(settings.index_dir, version).vectors()
    for tid, vec in zip(ids2, vecs2):
        np.testing.assert_allclose(stored[int(tid)], vec, atol=1e-5)
    # a catalog too big to keep windows (here: the threshold at 0) reuses the stored vectors alone
    big = dataclasses.replace(settings, embed=dataclasses.replace(settings.embed, index_exact_below=0))
    shutil.rmtree(settings.index_dir)
    annoy = await build_catalog_index(pool, settings=big, embedder=embedder, model_version=version)
    assert (annoy.embedded, annoy.reused, annoy.mode) == (0, 2, "annoy")

    other = await build_catalog_index(pool, settings=settings, embedder=embedder, model_version="test-v2")
    assert other.embedded == 2
    async with pool.acquire() as conn:
        assert await vectors_q.count_by_version(conn) == {version: 2, "test-v2": 2}
        assert await vectors_q.delete_other_versions(conn, keep="test-v2") == 2
        assert set(await vectors_q.for_version(conn, "test-v2", track_ids=[int(ids[0])])) == {int(ids[0])}


async def test_training_saves_weights_and_records_the_version(pool, tmp_path):
    """train_from_manifest writes loadable weights whose version lands in model_versions."""
    from engine.embed.train import TrainConfig
    from workers.embedding import record_embedder, train_from_manifest

    rows = [f"x{i}\t{_tone_file(tmp_path / f'x{i}.wav', freq=200.0 * (i + 1), seconds=5.5)}\tpkg\t5.5"
            for i in range(3)]
    manifest = tmp_path / "m.tsv"
    manifest.write_text("\n".join(rows) + "\n")
    path, meta = train_from_manifest(
        manifest, cache_dir=tmp_path / "cache", out_path=tmp_path / "w.pt", version="tiny-v1",
        config=TrainConfig(steps=2, batch_tracks=2, warmup_steps=1), device="cpu", threads=1,
        holdout_fraction=0.34, command="mixwith train embedder --steps 2",
    )
    assert meta["version"] == "tiny-v1" and len(meta["trained_on"]["held_out_ids"]) == 1
    await record_embedder(pool, path=path, meta=meta)
    async with pool.acquire() as conn:
        active = await models_q.active(conn, "embedder")
    assert active is not None and active.version == "tiny-v1" and active.metrics["command"].startswith("mixwith")
    assert active.metrics["training_set"]["manifest"] == str(manifest) and active.metrics["training_set"]["extra"] == []
    embedder, version = open_embedder(EmbedSettings(weights=str(path), device="cpu", threads=1))
    assert version == "tiny-v1"
