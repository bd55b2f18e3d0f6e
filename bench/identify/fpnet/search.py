"""Exact search of segment vectors and sequence voting over (track, offset).

Every query segment votes for its ``top_k`` nearest reference segments; each
vote names a track and an offset (reference segment − query segment). Every
voted offset (and its neighbours) is then re-scored with the whole query:
the mean similarity of query segment ``i`` to reference segment
``offset + speed·i``, for a few speed hypotheses (a DJ's pitch fader). One
segment that happens to look alike cannot win against a run of aligned ones.

The vote is one exact matmul and top-k over the reference matrix (torch, CPU:
numpy's argpartition is several times slower than ``torch.topk``); the
re-scoring gathers only the voted rows. See the issue-4 note for timings.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from engine.errors import ParameterError

SPEEDS = (0.97, 1.0, 1.03)


@dataclass(frozen=True)
class ReferenceSet:
    """Segment vectors of catalog tracks, stored track after track.

    Attributes
    ----------
    vectors : np.ndarray [shape=(n, d), dtype=float32]
        Unit rows (stored as float16 on disk would be :attr:`storage_bytes`; searched as float32).
    track_ids : np.ndarray [shape=(n_tracks,), dtype=int64]
    starts : np.ndarray [shape=(n_tracks,), dtype=int64]
        First row of each track in ``vectors``.
    counts : np.ndarray [shape=(n_tracks,), dtype=int64]
        Rows of each track.
    hop_s : float
        Time between a track's segments.
    """

    vectors: np.ndarray
    track_ids: np.ndarray
    starts: np.ndarray
    counts: np.ndarray
    hop_s: float

    @classmethod
    def from_tracks(cls, items: Iterable[tuple[int, np.ndarray]], *, hop_s: float) -> "ReferenceSet":
        """Stack ``(track_id, vectors (n_i, d))`` pairs; tracks without segments are skipped."""
        if hop_s <= 0:
            raise ParameterError(f"hop_s must be positive, got {hop_s}")
        ids, blocks = [], []
        for tid, v in items:
            if v.ndim != 2:
                raise ParameterError(f"expected (n, d) vectors for track {tid}, got shape {v.shape}")
            if len(v):
                ids.append(int(tid))
                blocks.append(np.asarray(v, dtype=np.float32))
        if not blocks:
            raise ParameterError("no reference segments")
        if len({b.shape[1] for b in blocks}) != 1:
            raise ParameterError("reference vectors differ in dimension")
        if len(set(ids)) != len(ids):
            raise ParameterError("a track id appears twice")
        counts = np.array([len(b) for b in blocks], np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        return cls(np.concatenate(blocks), np.array(ids, np.int64), starts, counts, float(hop_s))

    @property
    def storage_bytes(self) -> int:
        """Bytes of the vectors as float16 (what a saved reference set needs)."""
        return int(self.vectors.size * 2)


@dataclass(frozen=True)
class SegmentMatch:
    """The best alignment of a query with one track.

    Attributes
    ----------
    track_id : int
    offset_s : float
        Where in the track the query's first segment starts.
    score : float
        Mean cosine similarity of the aligned query segments (segments past the track's end count 0).
    speed : float
        Speed hypothesis of that alignment.
    """

    track_id: int
    offset_s: float
    score: float
    speed: float


def match_segments(
    ref: ReferenceSet,
    query: np.ndarray,
    *,
    top_k: int = 10,
    speeds: Sequence[float] = SPEEDS,
    max_candidates: int = 10,
    vote_stride: int = 2,
) -> list[SegmentMatch]:
    """Best alignment per voted track, best first.

    Parameters
    ----------
    ref : ReferenceSet
    query : np.ndarray [shape=(n_segments, d)]
        Unit vectors of the query's segments, cut every ``ref.hop_s``.
    top_k : int >= 1
        Nearest reference segments each query segment votes for.
    speeds : sequence of float
        Playback speeds tried when re-scoring (1.03 = the query plays 3 % fast).
    max_candidates : int >= 1
        Tracks returned.
    vote_stride : int >= 1
        Every ``vote_stride``-th query segment votes (all of them are used in the re-scoring).

    Returns
    -------
    list of SegmentMatch
        Empty when the query has no segment.
    """
    if query.ndim != 2 or (len(query) and query.shape[1] != ref.vectors.shape[1]):
        raise ParameterError(f"expected (n, {ref.vectors.shape[1]}) query vectors, got shape {query.shape}")
    if top_k < 1 or max_candidates < 1 or vote_stride < 1 or not speeds:
        raise ParameterError("top_k, max_candidates and vote_stride must be >= 1 and speeds non-empty")
    n = len(query)
    if n == 0:
        return []
    q = np.ascontiguousarray(query, dtype=np.float32)
    # votes from every vote_stride-th segment: the matmul and top-k over the whole catalog are the cost
    voters = np.arange(0, n, vote_stride)
    sims = torch.from_numpy(q[voters]) @ torch.from_numpy(ref.vectors).T  # (n_voters, N)
    k = min(top_k, sims.shape[1])
    hits = torch.topk(sims, k, dim=1).indices.numpy()  # (n_voters, k) rows of ref
    row_track = np.searchsorted(ref.starts, hits, side="right") - 1  # track index of each hit
    offsets = hits - ref.starts[row_track] - voters[:, None]  # voted offset, in segments
    cand = np.unique(np.stack([row_track.ravel(), offsets.ravel()], axis=1), axis=0)
    cand = np.unique(np.concatenate([cand + [0, d] for d in (-1, 0, 1)]), axis=0)  # neighbours: sub-hop drift
    ti, off = cand[:, 0], cand[:, 1]
    i = np.arange(n)
    best: dict[int, SegmentMatch] = {}
    for s in speeds:
        pos = off[:, None] + np.rint(s * i)[None, :].astype(np.int64)  # (c, n) segment within the track
        valid = (pos >= 0) & (pos < ref.counts[ti][:, None])
        rows = np.where(valid, ref.starts[ti][:, None] + pos, 0)
        score = np.where(valid, np.einsum("cnd,nd->cn", ref.vectors[rows], q), 0.0).mean(axis=1)
        # the best offset per track under this speed
        order = np.lexsort((-score, ti))
        first = np.concatenate([[True], ti[order][1:] != ti[order][:-1]])
        for c in order[first]:
            tid = int(ref.track_ids[ti[c]])
            if tid not in best or score[c] > best[tid].score:
                best[tid] = SegmentMatch(tid, float(off[c] * ref.hop_s), float(score[c]), float(s))
    return sorted(best.values(), key=lambda m: -m.score)[:max_candidates]
