"""Hybrid ranker: harmonic/tempo/energy parts, knobs, filters, diversity, reasons."""

from __future__ import annotations

import numpy as np
import pytest

from engine.camelot import ALL_KEYS, Key, from_camelot, parse_key
from engine.errors import ParameterError
from engine.rank import (
    RELATION_SCORES,
    Diversity,
    Filters,
    Knobs,
    TrackFeatures,
    Weights,
    harmonic_neighbours,
    key_score_table,
    key_index,
    merge_sources,
    rank_candidates,
    score_candidates,
    tempo_match,
    transition_matrix,
)


def _t(tid: int, bpm: float = 124.0, camelot: str | None = "8A", energy: int = 5, artist: str = "", title: str = "") -> TrackFeatures:
    return TrackFeatures(tid, bpm, parse_key(camelot) if camelot else None, energy, artist or f"a{tid}", title)


Q = _t(0)


def test_tempo_half_time_matches_double():
    """An 87 BPM track beat-matches 174 at double time, scored below an equal tempo."""
    score, delta, ratio = tempo_match(174.0, 87.0, pitch_range_pct=6.0)
    assert ratio == "1:2" and delta == pytest.approx(0.0)
    assert 0 < score < tempo_match(174.0, 174.0, pitch_range_pct=6.0)[0]


def test_tempo_double_time_candidate():
    """A 248 BPM reading of a 124 BPM track matches at half time."""
    assert tempo_match(124.0, 248.0, pitch_range_pct=6.0)[2] == "2:1"


def test_tempo_outside_pitch_range_scores_zero():
    """A 10% tempo gap is out of reach of a ±6% fader."""
    assert tempo_match(120.0, 132.0, pitch_range_pct=6.0)[0] == 0.0
    assert tempo_match(120.0, 132.0, pitch_range_pct=12.0)[0] > 0.0


def test_tempo_rejects_non_positive():
    """Zero BPM is a caller bug."""
    with pytest.raises(ParameterError):
        tempo_match(0.0, 120.0, pitch_range_pct=6.0)


def test_key_table_wraps_twelve_to_one_for_all_keys():
    """For all 24 keys one step up the wheel (12 wraps to 1) scores as +1 and relative as relative."""
    table = key_score_table(("same", "+1", "-1", "relative"))
    for k in ALL_KEYS:
        letter = "B" if k.mode == "major" else "A"
        up = from_camelot(k.camelot_number % 12 + 1, letter)
        other = from_camelot(k.camelot_number, "A" if letter == "B" else "B")
        assert table[key_index(k), key_index(up)] == RELATION_SCORES["+1"]
        assert table[key_index(up), key_index(k)] == RELATION_SCORES["-1"]
        assert table[key_index(k), key_index(other)] == RELATION_SCORES["relative"]
        assert table[key_index(k), key_index(k)] == RELATION_SCORES["same"]


def test_energy_boost_rule_is_configurable():
    """+2 scores only when the rule is allowed (DJs disagree)."""
    cands = [_t(1, camelot="10A")]
    with_boost = rank_candidates(Q, cands, weights=Weights(camelot_rules=("same", "+1", "+2")))
    without = rank_candidates(Q, cands, weights=Weights(camelot_rules=("same", "+1")))
    assert with_boost[0].components["key"] == RELATION_SCORES["+2"]
    assert without[0].components["key"] == 0.0


def test_unknown_rule_rejected():
    """A typo in the rules is reported, not silently ignored."""
    with pytest.raises(ParameterError):
        Weights(camelot_rules=("same", "+3"))


def test_compatible_beats_clashing():
    """Same tempo: the harmonic neighbour outranks the clashing key."""
    out = rank_candidates(Q, [_t(1, camelot="3B"), _t(2, camelot="9A")])
    assert [s.track_id for s in out] == [2, 1]


def test_a_tempo_out_of_fader_range_is_called_a_clash():
    """A candidate the pitch fader cannot reach says so instead of just printing the BPM gap."""
    out = rank_candidates(Q, [_t(3, bpm=150.0, camelot="8A")])
    assert any(r.endswith("(tempo clash)") for r in out[0].reasons)
    near = rank_candidates(Q, [_t(4, bpm=125.0, camelot="8A")])
    assert not any("clash" in r for r in near[0].reasons)


def test_sounds_like_is_said_only_of_the_closest_neighbours():
    """When every candidate scores as similar, only the closest fifth is said to sound like the query."""
    cands = [_t(i, camelot="8A") for i in range(1, 11)]
    sound = {i: 0.80 + 0.01 * i for i in range(1, 11)}
    out = rank_candidates(Q, cands, sound=sound)
    said = {s.track_id for s in out if "sounds like it" in s.reasons}
    assert said == {9, 10}


def test_reasons_read_like_a_dj():
    """Reasons name the Camelot move, the BPM change, the sound and the co-play count."""
    out = rank_candidates(
        Q, [_t(7, bpm=126.1, camelot="9A", energy=6)],
        sound={7: 0.8}, coplay={7: 0.9}, coplay_counts={7: 14},
    )
    r = out[0].reasons
    assert "8A → 9A (+1)" in r
    assert "+2.1 BPM" in r
    assert "energy 5 → 6" in r
    assert "sounds like it" in r
    assert "played together in 14 mixes" in r
    assert set(out[0].sources) == {"harmonic", "sounds-like", "co-play"}


def test_given_sources_are_kept():
    """Candidate generators passed in are reported as the sources."""
    src = merge_sources(**{"co-play": [3], "sounds-like": [3, 4]})
    out = rank_candidates(Q, [_t(3), _t(4)], sources=src)
    assert {s.track_id: s.sources for s in out} == {3: ("co-play", "sounds-like"), 4: ("sounds-like",)}


def test_key_lock_drops_clashes():
    """Key lock keeps only allowed harmonic moves."""
    out = rank_candidates(Q, [_t(1, camelot="3B"), _t(2, camelot="8B")], filters=Filters(key_lock=True))
    assert [s.track_id for s in out] == [2]


def test_bpm_range_filter():
    """Candidates outside the BPM range are dropped."""
    cands = [_t(1, bpm=118), _t(2, bpm=124), _t(3, bpm=130)]
    out = rank_candidates(Q, cands, filters=Filters(bpm_min=120, bpm_max=128))
    assert [s.track_id for s in out] == [2]


def test_exclude_same_artist_ignores_case_and_feat():
    """The query's artist is left out however it is spelled."""
    q = _t(0, artist="Kerri Chandler")
    out = rank_candidates(q, [_t(1, artist="KERRI CHANDLER feat. Someone"), _t(2, artist="Moodymann")],
                          filters=Filters(exclude_same_artist=True))
    assert [s.track_id for s in out] == [2]


def test_energy_direction_up_prefers_a_lift():
    """Asked to go up, energy 6 beats energy 4 from a 5."""
    cands = [_t(1, energy=4), _t(2, energy=6)]
    assert rank_candidates(Q, cands, filters=Filters(energy="up"))[0].track_id == 2
    assert rank_candidates(Q, cands, filters=Filters(energy="down"))[0].track_id == 1


def test_knobs_trade_key_against_tempo():
    """Sweetness favours the key match, smoothness the tempo match."""
    key_fit = _t(1, bpm=130.0, camelot="8A")  # same key, +4.8%
    tempo_fit = _t(2, bpm=124.0, camelot="10B")  # same tempo, clash
    sweet = rank_candidates(Q, [key_fit, tempo_fit], knobs=Knobs(sweetness=3.0, smoothness=0.5))
    smooth = rank_candidates(Q, [key_fit, tempo_fit], knobs=Knobs(sweetness=0.5, smoothness=3.0))
    assert sweet[0].track_id == 1 and smooth[0].track_id == 2


def test_diversity_caps_artist():
    """Ten tracks by one artist do not fill a top ten."""
    cands = [_t(i, artist="same") for i in range(1, 11)] + [_t(20 + i, bpm=127.0, artist=f"x{i}") for i in range(5)]
    out = rank_candidates(Q, cands, diversity=Diversity(max_per_artist=2), limit=7)
    assert sum(s.track_id <= 10 for s in out) == 2
    assert len(out) == 7


def test_a_third_track_by_an_artist_beats_a_much_worse_fit():
    """The artist cap is soft: a third beatmatchable track by one artist comes before tempo clashes."""
    cands = [_t(i, artist="same") for i in range(1, 4)] + [_t(10 + i, bpm=90.0, camelot="8A", artist=f"x{i}") for i in range(3)]
    out = rank_candidates(Q, cands, diversity=Diversity(max_per_artist=2), limit=4)
    assert [s.track_id for s in out][:3] == [1, 2, 3]
    hard = rank_candidates(Q, cands, diversity=Diversity(max_per_artist=2, artist_repeat_penalty=float("inf")), limit=4)
    assert [s.track_id for s in hard] == [1, 2, 10, 11]
    everything = rank_candidates(Q, cands, diversity=Diversity(max_per_artist=1, artist_repeat_penalty=float("inf")))
    assert sorted(s.track_id for s in everything) == sorted(c.track_id for c in cands)


def test_diversity_drops_near_duplicates_by_vector_and_title():
    """Edits of one song and near-identical vectors count once in the top."""
    cands = [
        _t(1, artist="A", title="Rain (Original Mix)"), _t(2, artist="A", title="Rain (Radio Edit)"),
        _t(3, artist="B"), _t(4, artist="C"), _t(5, bpm=125.5, artist="D"),
    ]
    v = np.array([1.0, 0.0])
    vectors = {3: v, 4: v * 2, 5: np.array([0.0, 1.0])}
    out = rank_candidates(Q, cands, vectors=vectors, limit=3)
    ids = [s.track_id for s in out]
    assert not {1, 2} <= set(ids) and not {3, 4} <= set(ids)
    assert 5 in ids


def test_score_candidates_keeps_old_contract():
    """The first ranker's interface still scores everyone (query skipped), best first."""
    cands = [Q, _t(1, camelot="3B"), _t(2), _t(3, artist=Q.artist)]
    out = score_candidates(Q, cands)
    assert [s.track_id for s in out][0] in (2, 3) and len(out) == 3
    assert all(set(s.components) >= {"key", "tempo", "energy"} for s in out)
    assert out[-1].track_id == 1


def test_a_beatmatchable_track_outranks_a_tempo_clash_in_the_same_key():
    """Same key at 150 BPM cannot be beatmatched with 124; 125 BPM in a clashing key can, so it comes first."""
    out = rank_candidates(Q, [_t(1, bpm=150.0, camelot="8A"), _t(2, bpm=125.0, camelot="3B")])
    assert [s.track_id for s in out] == [2, 1]
    lenient = rank_candidates(Q, [_t(1, bpm=150.0, camelot="8A"), _t(2, bpm=125.0, camelot="3B")], weights=Weights(tempo_clash=0.0))
    assert [s.track_id for s in lenient] == [1, 2]


def test_unknown_tempo_is_not_a_clash():
    """A beatless track (bpm 0) is not pushed down like a tempo clash: it can play over anything."""
    out = rank_candidates(Q, [_t(1, bpm=0.0, camelot="8A"), _t(2, bpm=150.0, camelot="8A")])
    assert [s.track_id for s in out] == [1, 2]
    assert out[0].score > out[1].score


def test_unknown_key_and_tempo_score_zero():
    """A candidate without key or tempo gets 0 for those parts, not an error."""
    out = rank_candidates(Q, [_t(1, bpm=0.0, camelot=None)])
    assert out[0].components["key"] == 0.0 and out[0].components["tempo"] == 0.0


def test_harmonic_neighbours_only_fitting():
    """Catalog neighbours fit on both key and tempo, best first."""
    cat = [_t(1, camelot="8A"), _t(2, camelot="9A", bpm=125), _t(3, camelot="2B"), _t(4, bpm=150)]
    out = harmonic_neighbours(Q, cat, n=10)
    assert [t for t, _ in out] == [1, 2]


def test_transition_matrix_prefers_compatible_pairs():
    """Compatible pairs score above clashing ones; the diagonal is zero."""
    tracks = [_t(0), _t(1, camelot="9A"), _t(2, camelot="3B", bpm=140)]
    m = transition_matrix(tracks)
    assert m.shape == (3, 3) and np.all(np.diag(m) == 0)
    assert m[0, 1] > m[0, 2] and m[1, 0] > m[2, 0]


def test_transition_matrix_penalises_a_tempo_clash_in_the_same_key():
    """In a set, a same-key jump the fader cannot bridge scores below a beatmatchable key clash."""
    tracks = [_t(0), _t(1, bpm=150.0), _t(2, camelot="3B", bpm=125.0)]
    m = transition_matrix(tracks)
    assert m[0, 2] > m[0, 1]
