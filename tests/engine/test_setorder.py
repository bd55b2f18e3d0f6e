"""Set ordering: exact/beam search beats greedy, energy arcs, constraints."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from engine.errors import ParameterError
from engine.setorder import energy_targets, greedy_order, order_set, set_score


def test_beats_greedy_on_a_trap():
    """Greedy takes the best first step into a dead end; the search does not."""
    t = np.zeros((4, 4))
    t[0, 1], t[0, 2] = 1.0, 0.9
    t[1, 3] = 0.1
    t[2, 3], t[3, 1] = 1.0, 1.0
    greedy = greedy_order(t, start=0)
    best = order_set(t, start=0)
    assert greedy.order == (0, 1, 3, 2) and greedy.score == pytest.approx(1.1)
    assert best.order == (0, 2, 3, 1) and best.score == pytest.approx(2.9)
    assert best.transitions == (0.9, 1.0, 1.0)


def test_exact_matches_brute_force(rng):
    """On 7 random tracks the DP finds the best of all 5040 orders."""
    t = rng.random((7, 7))
    e = rng.integers(1, 11, 7)
    best = max(set_score(p, t, energies=e, arc="peak") for p in itertools.permutations(range(7)))
    res = order_set(t, energies=e, arc="peak")
    assert res.method == "exact" and res.score == pytest.approx(best)


def test_beam_finds_the_optimum_on_small_sets(rng):
    """A wide beam agrees with the exact search."""
    t = rng.random((9, 9))
    assert order_set(t, start=0, exact_up_to=0, beam_width=512).score == pytest.approx(order_set(t, start=0).score)


def test_large_set_uses_beam_and_beats_greedy(rng):
    """On 25 tracks beam search is used and is never worse than greedy."""
    t = rng.random((25, 25))
    res = order_set(t, start=0, beam_width=32)
    assert res.method == "beam" and sorted(res.order) == list(range(25))
    assert res.score >= greedy_order(t, start=0).score


def test_build_arc_orders_energy_upwards():
    """With flat transitions a build arc plays the energies in rising order."""
    e = np.array([7, 2, 9, 4, 5])
    res = order_set(np.ones((5, 5)), energies=e, arc="build", arc_weight=5.0)
    assert [int(e[i]) for i in res.order] == [2, 4, 5, 7, 9]


def test_cooldown_arc_orders_energy_downwards():
    """A cool-down arc plays the energies falling."""
    e = np.array([3, 8, 5])
    res = order_set(np.ones((3, 3)), energies=e, arc="cooldown", arc_weight=5.0)
    assert [int(e[i]) for i in res.order] == [8, 5, 3]


def test_start_is_respected(rng):
    """The query track opens the set."""
    assert order_set(rng.random((6, 6)), start=4).order[0] == 4


def test_peak_targets_peak_two_thirds_in():
    """The peak arc tops out two thirds of the way and ends at the middle."""
    x = energy_targets(7, arc="peak", low=2.0, high=8.0)
    assert int(np.argmax(x)) == 4 and x[0] == 2.0 and x[-1] == pytest.approx(5.0)


def test_trivial_sets():
    """Zero or one track needs no search."""
    assert order_set(np.zeros((1, 1))).order == (0,)
    assert order_set(np.zeros((0, 0))).order == ()


def test_bad_inputs_rejected():
    """Non-square matrices, unknown arcs and arcs without energies are caller bugs."""
    with pytest.raises(ParameterError):
        order_set(np.zeros((2, 3)))
    with pytest.raises(ParameterError):
        order_set(np.zeros((3, 3)), energies=np.ones(3), arc="zigzag")
    with pytest.raises(ParameterError):
        order_set(np.zeros((3, 3)), arc="build")
