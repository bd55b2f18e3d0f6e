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
