"""Co-occurrence confidence and implicit ALS on a planted mix history."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from engine import als
from engine.errors import ParameterError


def _two_scenes(rng: np.random.Generator, n_mixes: int = 120) -> list[list[int]]:
    """Mixes drawn from tracks 0-19 or from tracks 20-39, never both."""
    mixes = []
    for i in range(n_mixes):
        base = 0 if i % 2 == 0 else 20
        mixes.append((base + rng.permutation(20)[:8]).tolist())
    return mixes


def test_adjacent_pairs_weigh_more_than_distant():
    """In one mix, neighbours get 1, two apart decay, beyond the window nothing."""
    m = als.cooccurrence_matrix([[0, 1, 2, 3]], n_tracks=4, params=als.CooccurrenceParams(window=2, decay=0.5, bpm_boost=0))
    assert m[0, 1] == 1.0 and m[0, 2] == 0.5 and m[0, 3] == 0.0
    assert (m != m.T).nnz == 0 and m.diagonal().sum() == 0


def test_bpm_closeness_upweights_pairs():
    """A pair of equal tempo (or double time) counts more than a pair 20% apart."""
    bpm = np.array([120.0, 240.0, 150.0])
    m = als.cooccurrence_matrix([[0, 1], [0, 2]], n_tracks=3, bpm=bpm, params=als.CooccurrenceParams(bpm_boost=0.5))
    assert m[0, 1] == pytest.approx(1.5) and m[0, 2] == pytest.approx(1.0)


def test_out_of_range_index_rejected():
    """A track index beyond the catalog is a caller bug."""
    with pytest.raises(ParameterError):
        als.mix_track_matrix([[0, 5]], n_tracks=3)


def test_mix_track_counts_repeats():
    """A track played twice in a mix counts twice."""
    m = als.mix_track_matrix([[0, 1, 0], [2]], n_tracks=3)
    assert m.toarray().tolist() == [[2, 1, 0], [0, 0, 1]]


def test_feedback_raises_and_lowers_confidence():
    """A thumbs-up adds confidence; a thumbs-down below zero removes the cell."""
    m = als.cooccurrence_matrix([[0, 1, 2]], n_tracks=3, params=als.CooccurrenceParams(window=1, bpm_boost=0))
    m2 = als.add_pairs(m, [(0, 2, 2.0), (0, 1, -5.0)])
    assert m2[0, 2] == 2.0 and m2[2, 0] == 2.0
    assert m2[0, 1] == 0.0 and m2.nnz == 4  # (1,2),(2,1),(0,2),(2,0)


def test_item_view_neighbours_come_from_the_same_scene(rng):
    """ALS on track×track co-occurrence puts a track's neighbours in its own scene."""
    mixes = _two_scenes(rng)
    mat = als.cooccurrence_matrix(mixes, n_tracks=40)
    model = als.train_als(mat, track_ids=np.arange(100, 140), view="item", params=als.AlsParams(factors=8, iterations=8))
    near = als.neighbours(model, 105, n=10)
    assert len(near) == 10 and all(100 <= t < 120 for t, _ in near)
    assert 105 not in [t for t, _ in near]
    assert model.metrics["interactions"] == mat.nnz and model.metrics["device"] == "cpu"


def test_mix_view_neighbours_come_from_the_same_scene(rng):
    """ALS on mix×track relates tracks through item factors."""
    mat = als.mix_track_matrix(_two_scenes(rng), n_tracks=40)
    model = als.train_als(mat, track_ids=np.arange(40), view="mix", params=als.AlsParams(factors=4, iterations=8))
    assert all(t >= 20 for t, _ in als.neighbours(model, 30, n=10))


def test_unknown_track_has_no_neighbours(rng):
    """A track the model never saw gets an empty list, not an error."""
    mat = als.mix_track_matrix(_two_scenes(rng, 20), n_tracks=40)
    model = als.train_als(mat, track_ids=np.arange(40), view="mix", params=als.AlsParams(factors=4, iterations=2))
    assert als.neighbours(model, 999) == [] and als.affinity(model, 999) is None


def test_save_load_round_trip_without_pickle(tmp_path, rng):
    """A saved model loads back identical, from plain arrays."""
    mat = als.cooccurrence_matrix(_two_scenes(rng, 30), n_tracks=40)
    model = als.train_als(mat, track_ids=np.arange(40), view="item", params=als.AlsParams(factors=4, iterations=2), version="v1")
    path = als.save_model(model, tmp_path / "als" / "v1.npz")
    with np.load(path, allow_pickle=False) as z:
        assert set(z.files) == {"header", "track_ids", "user_factors", "item_factors"}
    back = als.load_model(path)
    assert back.version == "v1" and back.view == "item" and back.params == model.params
    np.testing.assert_array_equal(back.item_factors, model.item_factors)
    assert als.neighbours(back, 3, n=5) == als.neighbours(model, 3, n=5)


def test_load_rejects_other_files(tmp_path):
    """A file that is not a model gives a clear error."""
    bad = tmp_path / "x.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ParameterError, match="not an ALS model"):
        als.load_model(bad)


def test_item_view_needs_square_matrix():
    """The item view is track × track."""
    with pytest.raises(ParameterError):
        als.train_als(als.mix_track_matrix([[0, 1]], n_tracks=3), track_ids=np.arange(3), view="item")


def test_gpu_request_without_cuda_falls_back(caplog, rng):
    """Asking for the GPU on a CPU-only machine trains on the CPU with a warning."""
    if als.has_cuda():
        pytest.skip("CUDA present")
    mat = als.mix_track_matrix(_two_scenes(rng, 10), n_tracks=40)
    with caplog.at_level(logging.WARNING):
        model = als.train_als(mat, track_ids=np.arange(40), view="mix", params=als.AlsParams(factors=4, iterations=1), use_gpu=True)
    assert model.metrics["device"] == "cpu" and "CUDA" in caplog.text


@pytest.mark.gpu
def test_gpu_training_matches_cpu_neighbourhoods(rng):
    """On CUDA the same planted scenes come out."""
    if not als.has_cuda():
        pytest.skip("no CUDA")
    mat = als.cooccurrence_matrix(_two_scenes(rng), n_tracks=40)
    model = als.train_als(mat, track_ids=np.arange(40), view="item", params=als.AlsParams(factors=8, iterations=8), use_gpu=True)
    assert model.metrics["device"] == "cuda"
    assert all(t < 20 for t, _ in als.neighbours(model, 5, n=10))


def test_cg_steps_recorded_and_validated(tmp_path):
    """The solver's CG steps are a hyper-parameter: saved with the model, and zero is refused."""
    with pytest.raises(ParameterError, match="cg_steps"):
        als.AlsParams(cg_steps=0)
    mat = als.mix_track_matrix([[0, 1, 2], [1, 2, 3], [0, 3]], n_tracks=4)
    model = als.train_als(mat, track_ids=np.arange(4), view="mix", params=als.AlsParams(factors=4, iterations=2, cg_steps=1))
    loaded = als.load_model(als.save_model(model, tmp_path / "m.npz"))
    assert loaded.params.cg_steps == 1
