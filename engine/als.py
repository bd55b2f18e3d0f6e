"""What DJs played together: co-occurrence matrices and implicit ALS.

Two views of mix history feed implicit's alternating least squares:

* item × item (the seeds' view): a song is both "user" and "item"; row ``q``
  holds the tracks played near ``q`` in a mix, closer neighbours weighing
  more, pairs of similar tempo a little more. ``user_factors[q] @ item_factors.T``
  then scores what to play with ``q``.
* mix × track: a mix is the user. Tracks are related through their item
  factors (cosine), which also covers tracks that never had a row.

Feedback (👍/👎 on a recommendation) raises or lowers the confidence of the
(query, recommended) cell. Models are saved as plain ``.npz`` arrays, never
pickles; training uses the GPU when CUDA is present.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from engine.errors import ParameterError

logger = logging.getLogger(__name__)

View = Literal["item", "mix"]
FORMAT_VERSION = 1


@dataclass(frozen=True)
class CooccurrenceParams:
    """How mix neighbours turn into confidence.

    Attributes
    ----------
    window : int
        Largest distance in a mix that still counts (1 = adjacent only).
    decay : float in (0, 1]
        Weight multiplier per extra step of distance (adjacent = 1).
    bpm_boost : float >= 0
        Extra weight, relative, for a pair of equal tempo; fades to 0 at
        ``bpm_tolerance_pct`` (half/double time counts as equal).
    bpm_tolerance_pct : float > 0
    """

    window: int = 3
    decay: float = 0.5
    bpm_boost: float = 0.5
    bpm_tolerance_pct: float = 8.0

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ParameterError("window must be at least 1")
        if not 0 < self.decay <= 1:
            raise ParameterError("decay must be in (0, 1]")
        if self.bpm_boost < 0 or self.bpm_tolerance_pct <= 0:
            raise ParameterError("bpm_boost must be >= 0 and bpm_tolerance_pct > 0")


@dataclass(frozen=True)
class AlsParams:
    """Hyper-parameters of implicit ALS (small factors: implicit's CPU solver costs per interaction)."""

    factors: int = 32
    regularization: float = 0.05
    alpha: float = 2.0
    iterations: int = 10
    # Conjugate-gradient steps per half-sweep. implicit's CPU solver is bound by per-interaction overhead, so
    # each step costs about a third of the training time; it warm-starts from the last sweep, so 2 lose little
    # (bench/recommend --quick: ALS HR@10 0.273 with 3, 0.268 with 2) for a quarter less time.
    cg_steps: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.factors < 1 or self.iterations < 1 or self.cg_steps < 1:
            raise ParameterError("factors, iterations and cg_steps must be at least 1")
        if self.regularization < 0 or self.alpha <= 0:
            raise ParameterError("regularization must be >= 0 and alpha > 0")


@dataclass(frozen=True)
class AlsModel:
    """A trained model with the catalog ids of its rows and columns.

    Attributes
    ----------
    view : {"item", "mix"}
    track_ids : ndarray, shape (n_items,), int64
        Catalog id of each item column (and of each user row in the item view).
    user_factors : ndarray, shape (n_users, factors), float32
    item_factors : ndarray, shape (n_items, factors), float32
    params : AlsParams
    version : str
    metrics : dict
        Training facts (interactions, seconds, device).
    """

    view: View
    track_ids: np.ndarray
    user_factors: np.ndarray
    item_factors: np.ndarray
    params: AlsParams
    version: str
    metrics: dict = field(default_factory=dict)

    def index_of(self, track_id: int) -> int | None:
        """Column of a catalog id, or None if the model never saw it."""
        hits = np.flatnonzero(self.track_ids == int(track_id))
        return int(hits[0]) if hits.size else None


def _check_mixes(mixes: Sequence[Sequence[int]], n_tracks: int) -> None:
    if n_tracks < 1:
        raise ParameterError("n_tracks must be at least 1")
    for m in mixes:
        for t in m:
            if not 0 <= t < n_tracks:
                raise ParameterError(f"track index {t} outside 0..{n_tracks - 1}")


def mix_track_matrix(mixes: Sequence[Sequence[int]], *, n_tracks: int) -> sp.csr_matrix:
    """Mix × track play counts.

    Parameters
    ----------
    mixes : sequence of sequences of int
        Each mix as track indices in play order (0 <= index < n_tracks).
    n_tracks : int

    Returns
    -------
    csr_matrix, shape (len(mixes), n_tracks), float32
    """
    _check_mixes(mixes, n_tracks)
    rows = np.repeat(np.arange(len(mixes)), [len(m) for m in mixes])
    cols = np.fromiter((t for m in mixes for t in m), dtype=np.int64, count=len(rows))
    data = np.ones(len(rows), dtype=np.float32)
    out = sp.csr_matrix((data, (rows, cols)), shape=(len(mixes), n_tracks), dtype=np.float32)
    out.sum_duplicates()
    return out


def _tempo_closeness(a: np.ndarray, b: np.ndarray, tolerance_pct: float) -> np.ndarray:
    """1 at equal tempo (or half/double), 0 at ``tolerance_pct`` apart and beyond."""
    best = np.full(a.shape, np.inf)
    for factor in (1.0, 2.0, 0.5):
        best = np.minimum(best, np.abs(b * factor - a) / a * 100.0)
    return np.clip(1.0 - best / tolerance_pct, 0.0, 1.0)


def cooccurrence_matrix(
    mixes: Sequence[Sequence[int]],
    *,
    n_tracks: int,
    params: CooccurrenceParams = CooccurrenceParams(),
    bpm: np.ndarray | None = None,
) -> sp.csr_matrix:
    """Track × track confidence from mix neighbourhoods (symmetric, zero diagonal).

    A pair ``d`` places apart (``d <= window``) adds ``decay ** (d - 1)``,
    times ``1 + bpm_boost * closeness`` when both tempi are known.

    Parameters
    ----------
    mixes : sequence of sequences of int
        Track indices in play order.
    n_tracks : int
    params : CooccurrenceParams
    bpm : ndarray, shape (n_tracks,), optional
        Tempo per track; NaN or <= 0 where unknown.

    Returns
    -------
    csr_matrix, shape (n_tracks, n_tracks), float32
    """
    _check_mixes(mixes, n_tracks)
    if bpm is not None and bpm.shape != (n_tracks,):
        raise ParameterError(f"bpm must have shape ({n_tracks},), got {bpm.shape}")
    lengths = np.array([len(m) for m in mixes], dtype=np.int64)
    flat = np.fromiter((t for m in mixes for t in m), dtype=np.int64, count=int(lengths.sum()))
    mix_of = np.repeat(np.arange(len(mixes)), lengths)
    rows, cols, vals = [], [], []
    for d in range(1, params.window + 1):
        # position i pairs with i + d when both lie in the same mix
        i = np.arange(len(flat) - d)
        ok = mix_of[i] == mix_of[i + d] if len(i) else np.zeros(0, bool)
        a, b = flat[i[ok]], flat[i[ok] + d]
        keep = a != b
        a, b = a[keep], b[keep]
        w = np.full(len(a), params.decay ** (d - 1), dtype=np.float64)
        if bpm is not None and params.bpm_boost > 0 and len(a):
            ba, bb = bpm[a], bpm[b]
            known = np.isfinite(ba) & np.isfinite(bb) & (ba > 0) & (bb > 0)
            close = np.zeros(len(a))
            close[known] = _tempo_closeness(ba[known], bb[known], params.bpm_tolerance_pct)
            w *= 1.0 + params.bpm_boost * close
        rows += [a, b]
        cols += [b, a]
        vals += [w, w]
    if rows:
        r, c, v = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
    else:
        r = c = np.zeros(0, np.int64)
        v = np.zeros(0)
    out = sp.csr_matrix((v.astype(np.float32), (r, c)), shape=(n_tracks, n_tracks), dtype=np.float32)
    out.sum_duplicates()
    return out


def add_pairs(
    matrix: sp.csr_matrix,
    pairs: Iterable[tuple[int, int, float]],
    *,
    symmetric: bool = True,
) -> sp.csr_matrix:
    """Add weighted (row, col, weight) pairs, e.g. sample relations or feedback.

    Negative weights lower confidence (a 👎); cells never go below zero and
    zero cells are dropped, so a disliked pair stops counting as played together.

    Parameters
    ----------
    matrix : csr_matrix, shape (n, m)
    pairs : iterable of (row, col, weight)
    symmetric : bool
        Also add (col, row); needs a square matrix.

    Returns
    -------
    csr_matrix, shape (n, m), float32
    """
    items = list(pairs)
    if not items:
        return matrix.tocsr().astype(np.float32)
    arr = np.asarray(items, dtype=np.float64).reshape(-1, 3)
    r, c, w = arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64), arr[:, 2]
    n, m = matrix.shape
    if r.min() < 0 or r.max() >= n or c.min() < 0 or c.max() >= m:
        raise ParameterError("pair index outside the matrix")
    if symmetric:
        if n != m:
            raise ParameterError("symmetric pairs need a square matrix")
        r, c, w = np.concatenate([r, c]), np.concatenate([c, r]), np.concatenate([w, w])
    delta = sp.csr_matrix((w, (r, c)), shape=(n, m))
    out = (matrix.astype(np.float64) + delta).tocsr()
    out.data = np.maximum(out.data, 0.0)
    out.eliminate_zeros()
    return out.astype(np.float32)


def has_cuda() -> bool:
    """True when implicit was built with CUDA and a device is present."""
    try:
        import implicit.gpu

        return bool(implicit.gpu.HAS_CUDA)
    except Exception:  # an implicit without GPU support raises on import on some builds
        return False


def train_als(
    user_items: sp.csr_matrix,
    *,
    track_ids: np.ndarray,
    view: View,
    params: AlsParams = AlsParams(),
    threads: int = 0,
    use_gpu: bool | None = None,
    version: str | None = None,
) -> AlsModel:
    """Fit implicit ALS on a confidence matrix.

    Parameters
    ----------
    user_items : csr_matrix, shape (n_users, n_items)
        Raw confidences (counts); ``alpha`` scales them inside implicit.
    track_ids : ndarray, shape (n_items,)
        Catalog id of each column.
    view : {"item", "mix"}
        Item view needs a square matrix (rows are the same tracks).
    params : AlsParams
    threads : int
        CPU threads (0 = all).
    use_gpu : bool or None
        None picks CUDA when present; True without CUDA falls back with a warning.
    version : str, optional
        Defaults to a UTC timestamp.

    Returns
    -------
    AlsModel
    """
    if view not in ("item", "mix"):
        raise ParameterError(f"view must be 'item' or 'mix', got {view!r}")
    user_items = sp.csr_matrix(user_items, dtype=np.float32)
    n_users, n_items = user_items.shape
    track_ids = np.asarray(track_ids, dtype=np.int64)
    if track_ids.shape != (n_items,):
        raise ParameterError(f"track_ids must have shape ({n_items},), got {track_ids.shape}")
    if view == "item" and n_users != n_items:
        raise ParameterError("the item view needs a square track × track matrix")
    if user_items.nnz == 0:
        raise ParameterError("no interactions to train on")
    gpu = has_cuda() if use_gpu is None else use_gpu
    if gpu and not has_cuda():
        logger.warning("CUDA requested for ALS but not available; training on the CPU")
        gpu = False
    kwargs = dict(
        factors=params.factors,
        regularization=params.regularization,
        alpha=params.alpha,
        iterations=params.iterations,
        random_state=params.seed,
    )
    # BLAS threads fight implicit's own OpenMP threads (implicit warns and slows down)
    with threadpool_limits(1, "blas"):
        if gpu:
            from implicit.gpu.als import AlternatingLeastSquares as GpuAls

            model = GpuAls(**kwargs)
        else:
            from implicit.cpu.als import AlternatingLeastSquares as CpuAls

            model = CpuAls(**kwargs, num_threads=threads)
        model.cg_steps = params.cg_steps  # not a constructor argument in implicit 0.7
        started = time.perf_counter()
        model.fit(user_items, show_progress=False)
    seconds = time.perf_counter() - started
    if gpu:
        model = model.to_cpu()
    uf = np.ascontiguousarray(model.user_factors, dtype=np.float32)
    itf = np.ascontiguousarray(model.item_factors, dtype=np.float32)
    version = version or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    metrics = {
        "interactions": int(user_items.nnz),
        "users": int(n_users),
        "items": int(n_items),
        "seconds": round(seconds, 3),
        "device": "cuda" if gpu else "cpu",
    }
    logger.info("trained ALS %s view on %d interactions in %.1f s (%s)", view, user_items.nnz, seconds, metrics["device"])
    return AlsModel(view, track_ids, uf, itf, params, version, metrics)


def save_model(model: AlsModel, path: Path) -> Path:
    """Write the model as a plain ``.npz`` (arrays and a JSON header; no pickles)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {
        "format": FORMAT_VERSION,
        "view": model.view,
        "version": model.version,
        "params": model.params.__dict__,
        "metrics": model.metrics,
    }
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(
        tmp,
        header=np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8),
        track_ids=model.track_ids,
        user_factors=model.user_factors,
        item_factors=model.item_factors,
    )
    tmp.replace(path)  # readers never see a half-written model
    return path


def load_model(path: Path) -> AlsModel:
    """Read a model written by :func:`save_model`.

    Raises
    ------
    ParameterError
        When the file is not such a model.
    """
    try:
        with np.load(Path(path), allow_pickle=False) as z:
            header = json.loads(bytes(z["header"]).decode("utf-8"))
            track_ids, uf, itf = z["track_ids"], z["user_factors"], z["item_factors"]
    except (OSError, KeyError, ValueError) as exc:
        raise ParameterError(f"not an ALS model file: {path} ({exc})") from exc
    if header.get("format") != FORMAT_VERSION:
        raise ParameterError(f"unsupported ALS model format {header.get('format')!r} in {path}")
    return AlsModel(
        header["view"], track_ids, uf, itf, AlsParams(**header["params"]), header["version"], header.get("metrics", {})
    )


def _normalised(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def affinity(model: AlsModel, track_id: int) -> np.ndarray | None:
    """How well every model track goes with ``track_id``.

    Item view: the query's user factors against every item. Mix view (or a
    track without a row): cosine of item factors.

    Returns
    -------
    ndarray, shape (n_items,), float32, or None when the model never saw the track.
    The query's own entry is set to -inf.
    """
    idx = model.index_of(track_id)
    if idx is None:
        return None
    if model.view == "item":
        scores = model.item_factors @ model.user_factors[idx]
    else:
        items = _normalised(model.item_factors)
        scores = items @ items[idx]
    scores = scores.astype(np.float32)
    scores[idx] = -np.inf
    return scores


def neighbours(model: AlsModel, track_id: int, *, n: int = 100) -> list[tuple[int, float]]:
    """The ``n`` tracks that go best with ``track_id`` as (catalog id, score), best first.

    Empty when the model never saw the track.
    """
    if n < 1:
        raise ParameterError("n must be at least 1")
    scores = affinity(model, track_id)
    if scores is None:
        return []
    n = min(n, len(scores) - 1)
    if n <= 0:
        return []
    top = np.argpartition(-scores, n - 1)[:n]
    top = top[np.argsort(-scores[top], kind="stable")]
    return [(int(model.track_ids[i]), float(scores[i])) for i in top if np.isfinite(scores[i])]


def unit_scores(scores: Sequence[float]) -> np.ndarray:
    """Map raw CF scores to [0, 1] by rank-free min–max over the given set (empty → empty)."""
    arr = np.asarray(scores, dtype=np.float64)
    if arr.size == 0:
        return arr
    lo, hi = float(arr.min()), float(arr.max())
    if hi - lo < 1e-12:
        return np.ones_like(arr) if hi > 0 else np.zeros_like(arr)
    return (arr - lo) / (hi - lo)
