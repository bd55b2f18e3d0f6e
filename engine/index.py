"""Nearest-neighbour index over track vectors: Annoy (angular), exact numpy below a threshold.

One index per model version lives in its own directory::

    <root>/<model_version>/CURRENT                -> JSON naming the live build
    <root>/<model_version>/<build_id>/items.ann   Annoy trees (memory-mapped on load)
    <root>/<model_version>/<build_id>/ids.npy     row → track id
    <root>/<model_version>/<build_id>/vectors.npy only for small catalogs (exact search)
    <root>/<model_version>/<build_id>/windows.npy, window_rows.npy
                                                  optional, small catalogs: every track's window
                                                  vectors (float16) and the row each belongs to

A build writes a fresh ``build_id`` directory and then replaces ``CURRENT``
with ``os.replace`` (atomic on POSIX), so every worker either sees the old
build or the new one, never a half-written file. Workers memory-map the same
``items.ann``, so N workers share one copy in the page cache.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import ParameterError

logger = logging.getLogger(__name__)

EXACT_BELOW = 2000
POINTER = "CURRENT"


@dataclass(frozen=True)
class Neighbour:
    """One search hit: the item's id and its cosine similarity to the query."""

    item_id: int
    similarity: float


def _check_vectors(vectors: np.ndarray) -> np.ndarray:
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim != 2 or v.shape[0] == 0 or v.shape[1] == 0:
        raise ParameterError(f"expected vectors of shape (n >= 1, d >= 1), got {v.shape}")
    if not np.isfinite(v).all():
        raise ParameterError("vectors contain NaN or infinity")
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.maximum(norms, 1e-12)


def window_match_scores(
    query_windows: np.ndarray,
    ref_windows: np.ndarray,
    ref_owner: np.ndarray,
    *,
    n_tracks: int,
    top_k: int = 1,
) -> np.ndarray:
    """Score every track by how well a clip's windows match the track's own windows.

    A 10 s memo is one passage of a track; a whole-track mean blurs a track with
    distinct sections (intro, drop, breakdown) into a vector the passage may be
    far from. Here each query window takes the mean of its ``top_k`` best
    cosine similarities among a track's windows (``top_k=1``: the best one),
    and a track's score is the mean of that over the query windows.

    Parameters
    ----------
    query_windows : np.ndarray [shape=(m, d)]
        Window vectors of the query clip (normalised here); ``m = 1`` for a clip's mean vector.
    ref_windows : np.ndarray [shape=(n, d)]
        Window vectors of the catalog tracks (normalised here).
    ref_owner : np.ndarray [shape=(n,), dtype=int]
        Track position ``0 .. n_tracks-1`` of each reference window.
    n_tracks : int
        Number of tracks; a track without windows scores ``-inf``.
    top_k : int
        Best windows averaged per track and query window (a track with fewer uses all it has).

    Returns
    -------
    scores : np.ndarray [shape=(n_tracks,), dtype=float32]
        Cosine-like scores in [-1, 1] (``-inf`` for tracks without windows).
    """
    q = _check_vectors(query_windows)
    r = _check_vectors(ref_windows)
    owner = np.asarray(ref_owner)
    if q.shape[1] != r.shape[1]:
        raise ParameterError(f"query dimension {q.shape[1]} differs from the reference's {r.shape[1]}")
    if owner.shape != (r.shape[0],) or not np.issubdtype(owner.dtype, np.integer):
        raise ParameterError(f"ref_owner must be integers of shape ({r.shape[0]},), got {owner.dtype} {owner.shape}")
    if n_tracks < 1 or owner.min() < 0 or owner.max() >= n_tracks:
        raise ParameterError(f"ref_owner must lie in [0, {n_tracks}) and n_tracks >= 1")
    if top_k < 1:
        raise ParameterError(f"top_k must be >= 1, got {top_k}")
    # Sort reference windows by owner so each track is one column segment.
    order = np.argsort(owner, kind="stable")
    owner_sorted = owner[order]
    sims = q @ r[order].T  # (m, n)
    starts = np.flatnonzero(np.r_[True, owner_sorted[1:] != owner_sorted[:-1]])
    present = owner_sorted[starts]
    if top_k == 1:
        per = np.maximum.reduceat(sims, starts, axis=1)  # (m, n_present)
    else:
        # Descending sort inside each owner's segment, then a cumulative sum gives every top-k mean.
        key = np.lexsort((-sims, np.broadcast_to(owner_sorted, sims.shape)), axis=1)
        ranked = np.take_along_axis(sims, key, axis=1)
        counts = np.diff(np.r_[starts, len(owner_sorted)])
        take = np.minimum(counts, top_k)
        csum = np.concatenate([np.zeros((len(q), 1), sims.dtype), np.cumsum(ranked, axis=1)], axis=1)
        per = (csum[:, starts + take] - csum[:, starts]) / take
    scores = np.full(n_tracks, -np.inf, np.float32)
    scores[present] = per.mean(axis=0)
    return scores


def build_index(
    vectors: np.ndarray,
    ids: np.ndarray,
    *,
    root: str | os.PathLike[str],
    model_version: str,
    n_trees: int = 50,
    exact_below: int = EXACT_BELOW,
    n_jobs: int = -1,
    seed: int = 0,
    keep_builds: int = 2,
    windows: np.ndarray | None = None,
    window_rows: np.ndarray | None = None,
) -> Path:
    """Build an index for ``vectors`` and make it the live one for ``model_version``.

    Parameters
    ----------
    vectors : np.ndarray [shape=(n, d)]
        Track vectors (normalised here).
    ids : np.ndarray [shape=(n,), dtype=int]
        Track id of each row.
    root : path
        Directory holding one sub-directory per model version.
    model_version : str
    n_trees : int
        Annoy trees; more trees, better recall, bigger file.
    exact_below : int
        Catalogs smaller than this are searched exactly (vectors saved, no trees).
    n_jobs : int
        Build threads (-1: all).
    seed : int
        Annoy's seed, so a build is reproducible.
    keep_builds : int
        Older builds kept beside the live one (a worker may still map them).
    windows : np.ndarray [shape=(m, d)] or None
        Window vectors of the tracks, kept (float16) for :meth:`VectorIndex.query_windows`;
        only in exact mode (a catalog big enough for Annoy would make them too large to scan).
    window_rows : np.ndarray [shape=(m,), dtype=int] or None
        Row of ``vectors`` (not track id) each window belongs to; required with ``windows``.

    Returns
    -------
    Path of the new build directory.
    """
    v = _check_vectors(vectors)
    ids = np.asarray(ids)
    if ids.shape != (v.shape[0],) or not np.issubdtype(ids.dtype, np.integer):
        raise ParameterError(f"ids must be integers of shape ({v.shape[0]},), got {ids.dtype} {ids.shape}")
    if not model_version or "/" in model_version or model_version.startswith("."):
        raise ParameterError(f"bad model version {model_version!r}")
    vdir = Path(root) / model_version
    build_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    tmp_dir = vdir / f".{build_id}.tmp"
    tmp_dir.mkdir(parents=True)
    n, d = v.shape
    mode = "exact" if n < exact_below else "annoy"
    if (windows is None) != (window_rows is None):
        raise ParameterError("windows and window_rows go together")
    if windows is not None:
        w = _check_vectors(windows)
        rows = np.asarray(window_rows)
        if w.shape[1] != v.shape[1] or rows.shape != (w.shape[0],) or not np.issubdtype(rows.dtype, np.integer) \
                or rows.min() < 0 or rows.max() >= v.shape[0]:
            raise ParameterError("windows must match the vectors' dimension and window_rows must index their rows")
    np.save(tmp_dir / "ids.npy", ids.astype(np.int64))
    if mode == "exact":
        np.save(tmp_dir / "vectors.npy", v)
        if windows is not None:
            np.save(tmp_dir / "windows.npy", w.astype(np.float16))
            np.save(tmp_dir / "window_rows.npy", rows.astype(np.int64))
    else:
        from annoy import AnnoyIndex

        t0 = time.perf_counter()
        ann = AnnoyIndex(d, "angular")
        ann.set_seed(seed)
        for i in range(n):
            ann.add_item(i, v[i])
        ann.build(n_trees, n_jobs=n_jobs)
        ann.save(str(tmp_dir / "items.ann"))
        ann.unload()
        logger.info("annoy index of %d x %d built in %.1f s", n, d, time.perf_counter() - t0)
    meta = {"build_id": build_id, "model_version": model_version, "mode": mode, "n_items": n, "dim": d,
            "n_trees": n_trees if mode == "annoy" else 0}
    (tmp_dir / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    final = vdir / build_id
    os.replace(tmp_dir, final)
    _write_pointer(vdir, build_id)
    _prune(vdir, keep=keep_builds, live=build_id)
    return final


def _write_pointer(vdir: Path, build_id: str) -> None:
    tmp = vdir / f".{POINTER}.{uuid.uuid4().hex[:8]}"
    tmp.write_text(json.dumps({"build_id": build_id}), encoding="utf-8")
    os.replace(tmp, vdir / POINTER)


def _prune(vdir: Path, *, keep: int, live: str) -> None:
    builds = sorted(p for p in vdir.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != live)
    for old in builds[: max(0, len(builds) - keep)]:
        shutil.rmtree(old, ignore_errors=True)


def live_build(root: str | os.PathLike[str], model_version: str) -> str | None:
    """The build id ``CURRENT`` names for ``model_version``, or None when there is no index yet."""
    ptr = Path(root) / model_version / POINTER
    if not ptr.is_file():
        return None
    return json.loads(ptr.read_text(encoding="utf-8"))["build_id"]


class VectorIndex:
    """A loaded build: memory-mapped Annoy trees or an exact in-memory matrix.

    Use :meth:`load` (live build of a model version) and :meth:`refresh` (swap to a
    newer live build if one appeared; cheap to call before each query batch).
    """

    def __init__(self, build_dir: Path, *, search_k: int = -1) -> None:
        meta = json.loads((build_dir / "meta.json").read_text(encoding="utf-8"))
        self.build_dir = build_dir
        self.build_id: str = meta["build_id"]
        self.mode: str = meta["mode"]
        self.dim: int = meta["dim"]
        self.search_k = search_k
        self.ids = np.load(build_dir / "ids.npy", mmap_mode="r")
        self._ann = None
        self._vectors = None
        if self.mode == "annoy":
            from annoy import AnnoyIndex

            self._ann = AnnoyIndex(self.dim, "angular")
            self._ann.load(str(build_dir / "items.ann"), prefault=False)  # mmap, shared by workers
        else:
            self._vectors = np.load(build_dir / "vectors.npy")
        self._windows: np.ndarray | None = None
        self._window_rows: np.ndarray | None = None
        if (build_dir / "windows.npy").is_file():
            self._windows = np.load(build_dir / "windows.npy").astype(np.float32)
            self._window_rows = np.load(build_dir / "window_rows.npy")

    @property
    def has_windows(self) -> bool:
        """True when this build keeps window vectors (small catalogs built with them)."""
        return self._windows is not None

    @classmethod
    def load(cls, root: str | os.PathLike[str], model_version: str, *, search_k: int = -1) -> "VectorIndex":
        """Open the live build of ``model_version``."""
        build = live_build(root, model_version)
        if build is None:
            raise ParameterError(f"no index for model version {model_version!r} under {root}; build it first")
        return cls(Path(root) / model_version / build, search_k=search_k)

    def refresh(self, root: str | os.PathLike[str], model_version: str) -> "VectorIndex":
        """This index, or the newer live build when ``CURRENT`` moved on."""
        build = live_build(root, model_version)
        if build is None or build == self.build_id:
            return self
        logger.info("index for %s swapped: %s -> %s", model_version, self.build_id, build)
        return VectorIndex(Path(root) / model_version / build, search_k=self.search_k)

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def query(self, vector: np.ndarray, *, k: int = 10, exclude: frozenset[int] = frozenset()) -> list[Neighbour]:
        """The ``k`` nearest items to ``vector`` (d,), by cosine similarity, skipping ids in ``exclude``."""
        q = np.asarray(vector, dtype=np.float32)
        if q.shape != (self.dim,):
            raise ParameterError(f"query must have shape ({self.dim},), got {q.shape}")
        if k < 1:
            raise ParameterError(f"k must be >= 1, got {k}")
        norm = float(np.linalg.norm(q))
        if not np.isfinite(norm) or norm == 0.0:
            raise ParameterError("query vector is zero or not finite")
        q = q / norm
        want = min(len(self), k + len(exclude))
        if self._vectors is not None:
            sims = self._vectors @ q
            top = np.argpartition(-sims, want - 1)[:want] if want < len(sims) else np.arange(len(sims))
            top = top[np.argsort(-sims[top], kind="stable")]
            rows, sim_list = top.tolist(), sims[top].tolist()
        else:
            rows, dists = self._ann.get_nns_by_vector(q, want, search_k=self.search_k, include_distances=True)
            # Annoy's angular distance is sqrt(2 - 2 cos).
            sim_list = [1.0 - dd * dd / 2.0 for dd in dists]
        out = []
        for r, s in zip(rows, sim_list):
            item = int(self.ids[r])
            if item in exclude:
                continue
            out.append(Neighbour(item_id=item, similarity=float(s)))
            if len(out) == k:
                break
        return out

    def query_windows(self, windows: np.ndarray, *, k: int = 10, exclude: frozenset[int] = frozenset(),
                      top_k: int = 1) -> list[Neighbour]:
        """The ``k`` tracks whose stored windows best match a clip's ``windows`` (m, d).

        Scores are :func:`window_match_scores` (a cosine in [-1, 1]). A build without
        window vectors answers with the clip's mean vector through :meth:`query`.
        """
        w = np.asarray(windows, dtype=np.float32)
        if w.ndim != 2 or w.shape[0] == 0 or w.shape[1] != self.dim:
            raise ParameterError(f"windows must have shape (m >= 1, {self.dim}), got {w.shape}")
        if self._windows is None:
            mean = w.mean(axis=0)
            return self.query(mean, k=k, exclude=exclude)
        if k < 1:
            raise ParameterError(f"k must be >= 1, got {k}")
        scores = window_match_scores(w, self._windows, self._window_rows, n_tracks=len(self), top_k=top_k)
        out = []
        for r in np.argsort(-scores, kind="stable"):
            item = int(self.ids[r])
            if item in exclude or not np.isfinite(scores[r]):
                continue
            out.append(Neighbour(item_id=item, similarity=float(scores[r])))
            if len(out) == k:
                break
        return out

    def window_vectors(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(window_rows, windows)`` of this build, or None when it keeps none."""
        if self._windows is None:
            return None
        return np.asarray(self._window_rows), self._windows

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """All ``(ids, vectors)`` of this build, so a rebuild can reuse them instead of re-embedding."""
        if self._vectors is not None:
            return np.asarray(self.ids), self._vectors
        v = np.array([self._ann.get_item_vector(i) for i in range(len(self))], dtype=np.float32)
        return np.asarray(self.ids), v.reshape(len(self), self.dim)

    def close(self) -> None:
        """Unmap the Annoy file."""
        if self._ann is not None:
            self._ann.unload()
            self._ann = None
