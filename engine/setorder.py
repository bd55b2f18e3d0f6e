"""Ordering chosen tracks into a playable set.

A set's score is the sum of its transition scores (how well each track mixes
into the next, from ``engine.rank.transition_matrix``) minus a penalty for
straying from an optional energy arc (build, peak, cool down). Greedy
"best next track" paints itself into corners; we search: exact dynamic
programming over subsets for small sets, beam search beyond.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np

from engine.errors import ParameterError

logger = logging.getLogger(__name__)

Arc = Literal["build", "peak", "cooldown", "flat"]
ARCS: tuple[str, ...] = ("build", "peak", "cooldown", "flat")


@dataclass(frozen=True)
class SetOrder:
    """An ordered set.

    Attributes
    ----------
    order : tuple of int
        Indices into the input, in play order.
    score : float
        Transition sum minus the arc penalty (higher is better).
    transitions : tuple of float
        Score of each of the ``len(order) - 1`` transitions.
    method : str
        ``"exact"``, ``"beam"``, ``"greedy"`` or ``"trivial"``.
    """

    order: tuple[int, ...]
    score: float
    transitions: tuple[float, ...]
    method: str


def energy_targets(n: int, *, arc: Arc, low: float, high: float) -> np.ndarray:
    """Energy each position of an ``n``-track set should have.

    ``build`` rises from ``low`` to ``high``; ``peak`` rises to ``high`` two
    thirds in, then eases back to the middle; ``cooldown`` falls; ``flat``
    stays at the middle.

    Returns
    -------
    ndarray, shape (n,)
    """
    if n < 0:
        raise ParameterError("n must be >= 0")
    if arc not in ARCS:
        raise ParameterError(f"arc must be one of {', '.join(ARCS)}, got {arc!r}")
    if n == 0:
        return np.zeros(0)
    x = np.linspace(0.0, 1.0, n) if n > 1 else np.zeros(1)
    mid = (low + high) / 2.0
    if arc == "build":
        return low + (high - low) * x
    if arc == "cooldown":
        return high - (high - low) * x
    if arc == "flat":
        return np.full(n, mid)
    peak_at = 2.0 / 3.0
    up = low + (high - low) * np.clip(x / peak_at, 0.0, 1.0)
    down = high - (high - mid) * np.clip((x - peak_at) / (1.0 - peak_at), 0.0, 1.0)
    return np.where(x <= peak_at, up, down)


def _check(transition: np.ndarray, energies: np.ndarray | None, start: int | None) -> int:
    t = np.asarray(transition)
    if t.ndim != 2 or t.shape[0] != t.shape[1]:
        raise ParameterError(f"transition must be square, got shape {t.shape}")
    if not np.all(np.isfinite(t)):
        raise ParameterError("transition scores must be finite")
    n = t.shape[0]
    if energies is not None and np.asarray(energies).shape != (n,):
        raise ParameterError(f"energies must have shape ({n},)")
    if start is not None and not 0 <= start < n:
        raise ParameterError(f"start must be in 0..{n - 1}")
    return n


def _arc_cost(n: int, energies: np.ndarray | None, arc: Arc | None, arc_weight: float) -> np.ndarray:
    """Penalty of putting track i at position p, shape (n_positions, n_tracks)."""
    if arc is None or energies is None or arc_weight == 0:
        return np.zeros((n, n))
    e = np.asarray(energies, dtype=np.float64)
    targets = energy_targets(n, arc=arc, low=float(e.min()), high=float(e.max()))
    # energies are 1–10: a miss of the whole range costs arc_weight
    return arc_weight * np.abs(targets[:, None] - e[None, :]) / 9.0


def set_score(
    order: tuple[int, ...] | list[int],
    transition: np.ndarray,
    *,
    energies: np.ndarray | None = None,
    arc: Arc | None = None,
    arc_weight: float = 1.0,
) -> float:
    """Score of a given order under the same objective :func:`order_set` maximises."""
    t = np.asarray(transition, dtype=np.float64)
    n = _check(t, energies, None)
    if sorted(order) != list(range(n)):
        raise ParameterError("order must be a permutation of all tracks")
    cost = _arc_cost(n, energies, arc, arc_weight)
    return float(sum(t[a, b] for a, b in zip(order, order[1:])) - sum(cost[p, i] for p, i in enumerate(order)))


def _result(order: list[int], t: np.ndarray, cost: np.ndarray, method: str) -> SetOrder:
    steps = tuple(float(t[a, b]) for a, b in zip(order, order[1:]))
    penalty = float(sum(cost[p, i] for p, i in enumerate(order)))
    return SetOrder(tuple(order), round(sum(steps) - penalty, 9), steps, method)


def greedy_order(
    transition: np.ndarray,
    *,
    start: int = 0,
    energies: np.ndarray | None = None,
    arc: Arc | None = None,
    arc_weight: float = 1.0,
) -> SetOrder:
    """Nearest-neighbour baseline: from ``start``, always take the best next track."""
    t = np.asarray(transition, dtype=np.float64)
    n = _check(t, energies, start)
    cost = _arc_cost(n, energies, arc, arc_weight)
    order = [start]
    left = set(range(n)) - {start}
    while left:
        p = len(order)
        nxt = max(sorted(left), key=lambda j: t[order[-1], j] - cost[p, j])
        order.append(nxt)
        left.remove(nxt)
    return _result(order, t, cost, "greedy")


def order_set(
    transition: np.ndarray,
    *,
    energies: np.ndarray | None = None,
    arc: Arc | None = None,
    arc_weight: float = 1.0,
    start: int | None = None,
    beam_width: int = 256,
    exact_up_to: int = 10,
) -> SetOrder:
    """Order all tracks to maximise transitions minus the energy-arc penalty.

    Parameters
    ----------
    transition : ndarray, shape (N, N)
        Score of playing j right after i (see ``engine.rank.transition_matrix``).
    energies : ndarray, shape (N,), optional
        Energy (1–10) of each track; needed for an arc.
    arc : {"build", "peak", "cooldown", "flat"} or None
    arc_weight : float >= 0
        Penalty for the largest possible energy miss at one position.
    start : int, optional
        Index that must open the set (the query track).
    beam_width : int >= 1
        Partial sets kept per step when N exceeds ``exact_up_to``.
    exact_up_to : int
        Largest N solved exactly (Held–Karp, O(2^N N^2) time).

    Returns
    -------
    SetOrder
    """
    t = np.asarray(transition, dtype=np.float64)
    n = _check(t, energies, start)
    if arc_weight < 0:
        raise ParameterError("arc_weight must be >= 0")
    if beam_width < 1:
        raise ParameterError("beam_width must be at least 1")
    if arc is not None and arc not in ARCS:
        raise ParameterError(f"arc must be one of {', '.join(ARCS)}, got {arc!r}")
    if arc is not None and energies is None:
        raise ParameterError("an energy arc needs the tracks' energies")
    cost = _arc_cost(n, energies, arc, arc_weight)
    if n <= 1:
        return _result(list(range(n)), t, cost, "trivial")
    if n <= exact_up_to:
        order = _held_karp(t, cost, start)
        method = "exact"
    else:
        order = _beam(t, cost, start, beam_width)
        method = "beam"
    return _result(order, t, cost, method)


def _held_karp(t: np.ndarray, cost: np.ndarray, start: int | None) -> list[int]:
    """Best path visiting every node once; position-dependent node costs allowed."""
    n = t.shape[0]
    full = 1 << n
    best = np.full((full, n), -np.inf)
    parent = np.full((full, n), -1, dtype=np.int64)
    firsts = [start] if start is not None else range(n)
    for i in firsts:
        best[1 << i, i] = -cost[0, i]
    popcount = np.array([bin(m).count("1") for m in range(full)])
    for size in range(1, n):
        for mask in np.flatnonzero(popcount == size).tolist():
            row = best[mask]
            ends = np.flatnonzero(np.isfinite(row))
            if ends.size == 0:
                continue
            for j in range(n):
                if mask >> j & 1:
                    continue
                cand = row[ends] + t[ends, j]
                k = int(np.argmax(cand))
                value = cand[k] - cost[size, j]
                nm = mask | (1 << j)
                if value > best[nm, j]:
                    best[nm, j] = value
                    parent[nm, j] = ends[k]
    mask = full - 1
    last = int(np.argmax(best[mask]))
    order = [last]
    while parent[mask, last] >= 0:
        prev = int(parent[mask, last])
        mask ^= 1 << last
        last = prev
        order.append(last)
    return order[::-1]


def _beam(t: np.ndarray, cost: np.ndarray, start: int | None, width: int) -> list[int]:
    """Beam search over partial sets; states with the same (visited, last) keep the best."""
    n = t.shape[0]
    firsts = [start] if start is not None else list(range(n))
    beam: list[tuple[float, list[int], int]] = [(-cost[0, i], [i], 1 << i) for i in firsts]
    for pos in range(1, n):
        expanded: dict[tuple[int, int], tuple[float, list[int], int]] = {}
        for score, path, mask in beam:
            last = path[-1]
            for j in range(n):
                if mask >> j & 1:
                    continue
                value = score + t[last, j] - cost[pos, j]
                key = (mask | (1 << j), j)
                if key not in expanded or value > expanded[key][0]:
                    expanded[key] = (value, path + [j], key[0])
        beam = sorted(expanded.values(), key=lambda s: (-s[0], s[1]))[:width]
    return beam[0][1]
