"""Tests for engine.embed.model (CNN, windows, save/load)."""

import os

import numpy as np
import pytest
import torch

from engine.embed.model import (
    DEFAULT_WEIGHTS,
    HOP_S,
    Embedder,
    ModelConfig,
    SoundsLikeNet,
    count_parameters,
    frame_windows,
    load_model,
    mean_vector,
    read_sidecar,
    save_model,
)
from engine.errors import ParameterError


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261122)

SR = 16000


def _model(seed: int = 0) -> SoundsLikeNet:
    torch.manual_seed(seed)
    return SoundsLikeNet().eval()


def test_window_vectors_are_128d_unit(rng):
    """Each window gives a 128-d vector of unit length."""
    y = (0.1 * rng.standard_normal(11 * SR)).astype(np.float32)
    v = Embedder(_model()).embed_windows(y, sr=SR)
    assert v.shape == (4, 128)  # three full windows plus one aligned to the 2 s tail's end
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


def test_track_vector_is_unit_mean(rng):
    """A track vector is the normalised mean of its window vectors."""
    y = (0.1 * rng.standard_normal(9 * SR)).astype(np.float32)
    emb = Embedder(_model())
    w = emb.embed_windows(y, sr=SR, hop_s=HOP_S)
    assert len(w) == 5  # 9 s at a 1.5 s hop: windows start at 0, 1.5, 3, 4.5, 6 s
    t = emb.embed_track(y, sr=SR)
    np.testing.assert_allclose(t, w.mean(0) / np.linalg.norm(w.mean(0)), atol=1e-6)


def test_parameter_count_is_compact():
    """The default CNN is of order one million parameters."""
    assert 3e5 <= count_parameters(SoundsLikeNet()) <= 2e6


def test_same_seed_same_vectors(rng):
    """Two models initialised with one seed embed identically."""
    y = (0.1 * rng.standard_normal(3 * SR)).astype(np.float32)
    a = Embedder(_model(3)).embed_windows(y, sr=SR)
    b = Embedder(_model(3)).embed_windows(y, sr=SR)
    np.testing.assert_array_equal(a, b)


def test_batching_does_not_change_vectors(rng):
    """Batch size is a speed knob only."""
    y = (0.1 * rng.standard_normal(12 * SR)).astype(np.float32)
    m = _model()
    a = Embedder(m, batch_size=1).embed_windows(y, sr=SR)
    b = Embedder(m, batch_size=64).embed_windows(y, sr=SR)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_short_audio_is_looped_to_one_window():
    """A 1 s loop still yields exactly one window."""
    w = frame_windows(np.ones(SR, np.float32), window_samples=3 * SR, hop_samples=3 * SR)
    assert w.shape == (1, 3 * SR)


def test_wrong_rate_is_refused(rng):
    """Audio at the analysis rate must be resampled before embedding."""
    with pytest.raises(ParameterError, match="resample"):
        Embedder(_model()).embed_windows(np.zeros(3 * 22050, np.float32), sr=22050)


def test_mean_vector_of_nothing_is_an_error():
    """An empty window set has no mean."""
    with pytest.raises(ParameterError):
        mean_vector(np.zeros((0, 128), np.float32))


def test_save_load_round_trip(tmp_path, rng):
    """Saved float16 weights reload to nearly the same vectors, with the sidecar."""
    m = _model(1)
    path = save_model(m, tmp_path / "m.pt", version="t1", extra={"command": "x"})
    m2, meta = load_model(path)
    assert meta["version"] == "t1" and meta["command"] == "x"
    y = (0.1 * rng.standard_normal(3 * SR)).astype(np.float32)
    a = Embedder(m).embed_windows(y, sr=SR)
    b = Embedder(m2).embed_windows(y, sr=SR)
    assert float((a * b).sum()) > 0.999


class _Evil:
    def __reduce__(self):
        return (os.getcwd, ())


def test_pickled_objects_are_refused(tmp_path):
    """Weights files that need unpickling of arbitrary objects are not loaded."""
    m = _model()
    path = save_model(m, tmp_path / "m.pt", version="t")
    torch.save({"evil": _Evil()}, path)
    with pytest.raises(Exception, match="[Ww]eights only"):
        load_model(path)


def test_default_weights_ship_and_load():
    """The committed default weights are under 10 MB, load, and name their training command."""
    assert DEFAULT_WEIGHTS.is_file()
    assert DEFAULT_WEIGHTS.stat().st_size <= 10 * 1024 * 1024
    meta = read_sidecar(DEFAULT_WEIGHTS)
    assert meta["command"].startswith("mixwith train embedder")
    assert meta["train_config"]["group_weight"] > 0  # trained with same-package positives
    model, _ = load_model(DEFAULT_WEIGHTS)
    assert isinstance(model.config, ModelConfig)
