"""Tests for engine.index (Annoy / exact search, atomic swap)."""

import numpy as np
import pytest

from engine.errors import ParameterError
from engine.index import VectorIndex, build_index, live_build


@pytest.fixture
def vectors() -> np.ndarray:
    """300 clustered unit vectors in 32-d (seeded)."""
    rng = np.random.default_rng(5)
    centres = rng.standard_normal((10, 32))
    v = centres[rng.integers(0, 10, 300)] + 0.3 * rng.standard_normal((300, 32))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def _exact_top(vectors: np.ndarray, q: np.ndarray, k: int) -> list[int]:
    return list(np.argsort(-(vectors @ q), kind="stable")[:k])


def test_exact_mode_returns_true_neighbours(vectors, tmp_path):
    """Below the threshold the index answers exactly, with cosine similarities."""
    ids = np.arange(1000, 1300)
    build_index(vectors, ids, root=tmp_path, model_version="m1", exact_below=2000)
    idx = VectorIndex.load(tmp_path, "m1")
    assert idx.mode == "exact"
    hits = idx.query(vectors[7], k=5)
    assert [h.item_id for h in hits] == [1000 + i for i in _exact_top(vectors, vectors[7], 5)]
    assert hits[0].similarity == pytest.approx(1.0, abs=1e-5)


def test_annoy_mode_has_high_recall(vectors, tmp_path):
    """Annoy trees find nearly all of the exact top 10."""
    build_index(vectors, np.arange(300), root=tmp_path, model_version="m1", exact_below=0, n_trees=20)
    idx = VectorIndex.load(tmp_path, "m1")
    assert idx.mode == "annoy"
    recall = []
    for i in range(0, 300, 30):
        got = {h.item_id for h in idx.query(vectors[i], k=10)}
        recall.append(len(got & set(_exact_top(vectors, vectors[i], 10))) / 10)
    assert np.mean(recall) >= 0.9
    top = idx.query(vectors[3], k=1)[0]
    assert top.item_id == 3 and top.similarity == pytest.approx(1.0, abs=1e-4)


def test_exclude_skips_items(vectors, tmp_path):
    """Excluded ids (the query track itself) never come back."""
    build_index(vectors, np.arange(300), root=tmp_path, model_version="m1")
    hits = VectorIndex.load(tmp_path, "m1").query(vectors[0], k=3, exclude=frozenset({0}))
    assert len(hits) == 3 and 0 not in {h.item_id for h in hits}


def test_rebuild_swaps_atomically(vectors, tmp_path):
    """A worker holding the old build keeps answering; refresh moves it to the new one."""
    build_index(vectors[:100], np.arange(100), root=tmp_path, model_version="m1", exact_below=0, n_trees=5)
    old = VectorIndex.load(tmp_path, "m1")
    build_index(vectors, np.arange(300), root=tmp_path, model_version="m1", exact_below=0, n_trees=5)
    assert live_build(tmp_path, "m1") != old.build_id
    assert len(old.query(vectors[1], k=3)) == 3  # still mapped, still valid
    new = old.refresh(tmp_path, "m1")
    assert len(new) == 300 and new.build_id == live_build(tmp_path, "m1")
    assert new.refresh(tmp_path, "m1") is new


def test_old_builds_are_pruned(vectors, tmp_path):
    """Only the live build and a couple of predecessors stay on disk."""
    for _ in range(5):
        build_index(vectors[:50], np.arange(50), root=tmp_path, model_version="m1", keep_builds=1)
    assert len([p for p in (tmp_path / "m1").iterdir() if p.is_dir()]) == 2


def test_versions_are_separate(vectors, tmp_path):
    """Each model version has its own index."""
    build_index(vectors[:10], np.arange(10), root=tmp_path, model_version="a")
    with pytest.raises(ParameterError, match="no index"):
        VectorIndex.load(tmp_path, "b")


def test_bad_inputs_are_rejected(vectors, tmp_path):
    """Mismatched ids, NaN vectors and zero queries give clear errors."""
    with pytest.raises(ParameterError, match="ids"):
        build_index(vectors, np.arange(5), root=tmp_path, model_version="m1")
    bad = vectors.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ParameterError, match="NaN"):
        build_index(bad, np.arange(300), root=tmp_path, model_version="m1")
    build_index(vectors, np.arange(300), root=tmp_path, model_version="m1")
    idx = VectorIndex.load(tmp_path, "m1")
    with pytest.raises(ParameterError, match="zero"):
        idx.query(np.zeros(32, np.float32))
    with pytest.raises(ParameterError, match="shape"):
        idx.query(np.ones(8, np.float32))


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def test_window_match_finds_a_section_the_mean_misses():
    """A clip of one section of a two-section track matches it by windows, though the track's mean is far."""
    from engine.index import window_match_scores

    rng = np.random.default_rng(11)
    a, b, c = _unit(rng.standard_normal((3, 16)))
    # track 0: half section a, half section b; track 1: c with a little of a (its mean sits nearer a)
    t0 = _unit(np.r_[a + 0.05 * rng.standard_normal((10, 16)), b + 0.05 * rng.standard_normal((10, 16))])
    t1 = _unit(0.6 * c + 0.8 * a + 0.05 * rng.standard_normal((20, 16)))
    ref = np.r_[t0, t1]
    owner = np.r_[np.zeros(20, int), np.ones(20, int)]
    clip = _unit(a + 0.05 * rng.standard_normal((4, 16)))
    means = np.stack([_unit(t0.mean(axis=0)), _unit(t1.mean(axis=0))])
    assert int(np.argmax(means @ _unit(clip.mean(axis=0)))) == 1  # the whole-track mean picks the wrong track
    scores = window_match_scores(clip, ref, owner, n_tracks=3, top_k=1)
    assert int(np.argmax(scores)) == 0
    assert scores[2] == -np.inf  # a track without windows never wins


def test_window_match_top_k_is_the_mean_of_the_best_windows():
    """top_k averages each query window's k best similarities within a track (all of them when fewer)."""
    from engine.index import window_match_scores

    rng = np.random.default_rng(2)
    ref = _unit(rng.standard_normal((30, 8)))
    owner = rng.permutation(np.r_[np.zeros(27, int), np.ones(3, int)])  # interleaved, not sorted by track
    q = _unit(rng.standard_normal((2, 8)))
    for k in (1, 3, 5):
        got = window_match_scores(q, ref, owner, n_tracks=2, top_k=k)
        for t in range(2):
            sims = np.sort(q @ ref[owner == t].T, axis=1)[:, ::-1][:, :k]
            assert got[t] == pytest.approx(sims.mean(axis=1).mean(), abs=1e-5)
    with pytest.raises(ParameterError):
        window_match_scores(q, ref, owner, n_tracks=1)  # owner 1 is out of range
    with pytest.raises(ParameterError):
        window_match_scores(q[:, :4], ref, owner, n_tracks=2)


def test_index_keeps_windows_for_clip_queries(tmp_path):
    """A small build with window vectors answers a clip by its windows; without them, by the clip's mean."""
    rng = np.random.default_rng(4)
    a, b, c = _unit(rng.standard_normal((3, 16)))
    t0 = _unit(np.r_[a + 0.05 * rng.standard_normal((10, 16)), b + 0.05 * rng.standard_normal((10, 16))])
    t1 = _unit(0.6 * c + 0.8 * a + 0.05 * rng.standard_normal((20, 16)))
    means = np.stack([_unit(t0.mean(axis=0)), _unit(t1.mean(axis=0))])
    clip = _unit(a + 0.05 * rng.standard_normal((4, 16)))
    rows = np.r_[np.zeros(20, int), np.ones(20, int)]
    build_index(means, np.array([70, 71]), root=tmp_path / "w", model_version="m1",
                windows=np.r_[t0, t1], window_rows=rows)
    build_index(means, np.array([70, 71]), root=tmp_path / "m", model_version="m1")
    with_w, without = VectorIndex.load(tmp_path / "w", "m1"), VectorIndex.load(tmp_path / "m", "m1")
    assert with_w.has_windows and not without.has_windows
    assert [h.item_id for h in with_w.query_windows(clip, k=2)] == [70, 71]
    assert [h.item_id for h in without.query_windows(clip, k=2)] == [71, 70]  # the mean picks the other track
    assert [h.item_id for h in with_w.query_windows(clip, k=2, exclude=frozenset({70}))] == [71]
    rows_back, wins = with_w.window_vectors()
    assert wins.shape == (40, 16) and list(rows_back) == list(rows)
    with pytest.raises(ParameterError):
        build_index(means, np.array([70, 71]), root=tmp_path / "x", model_version="m1",
                    windows=np.r_[t0, t1], window_rows=rows + 5)
