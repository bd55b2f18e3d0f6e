"""Scoring candidate tracks for how well they mix with a query track.

A score is a sum of named, weighted parts (key, tempo, energy, sound, co-play).
Each result keeps its parts and the reasons a DJ reads ("8A → 9A",
"+2.1 BPM"), which are the "why it fits" of every reply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from engine.camelot import Key, harmonic_relation
from engine.errors import ParameterError

# How much each Camelot move is worth (DJs disagree: the caller picks which are allowed).
RELATION_SCORES: dict[str, float] = {
    "same": 1.0,
    "+1": 0.9,
    "-1": 0.9,
    "relative": 0.85,
    "diagonal": 0.7,
    "+2": 0.6,
    "-2": 0.5,
    "+7": 0.5,
}
DEFAULT_RULES: tuple[str, ...] = ("same", "+1", "-1", "relative", "diagonal", "+2")


@dataclass(frozen=True)
class TrackFeatures:
    """What the ranker knows about one track.

    Attributes
    ----------
    track_id : int
    bpm : float
    key : Key or None
    energy : int
        1–10.
    artist : str
    """

    track_id: int
    bpm: float
    key: Key | None
    energy: int
    artist: str = ""


@dataclass(frozen=True)
class Weights:
    """Weights of the score's parts and the harmonic rules in force."""

    key: float = 0.35
    tempo: float = 0.30
    energy: float = 0.10
    sound: float = 0.15
    coplay: float = 0.10
    pitch_range_pct: float = 6.0
    camelot_rules: tuple[str, ...] = DEFAULT_RULES


@dataclass(frozen=True)
class Scored:
    """A candidate with its score and the parts that make it up."""

    track_id: int
    score: float
    components: Mapping[str, float]
    reasons: tuple[str, ...]
    sources: tuple[str, ...] = field(default=())


def tempo_match(query_bpm: float, bpm: float, *, pitch_range_pct: float) -> tuple[float, float, str]:
    """How easily ``bpm`` beat-matches ``query_bpm`` with a pitch fader.

    Half and double time count (a 87 BPM track mixes with 174).

    Parameters
    ----------
    query_bpm, bpm : float > 0
    pitch_range_pct : float > 0
        Largest tempo change, in percent, a DJ would make.

    Returns
    -------
    score : float
        1 at equal tempo, falling linearly to 0 at the pitch range's edge.
    delta_bpm : float
        Signed difference after the best ratio, ``bpm * ratio - query_bpm``.
    ratio : str
        ``"1:1"``, ``"2:1"`` or ``"1:2"``.
    """
    if query_bpm <= 0 or bpm <= 0:
        raise ParameterError("tempi must be positive")
    best = (float("inf"), 0.0, "1:1")
    for factor, label in ((1.0, "1:1"), (2.0, "1:2"), (0.5, "2:1")):
        adjusted = bpm * factor
        pct = abs(adjusted - query_bpm) / query_bpm * 100.0
        if pct < best[0]:
            best = (pct, adjusted - query_bpm, label)
    pct, delta, label = best
    score = max(0.0, 1.0 - pct / pitch_range_pct)
    if label != "1:1":
        score *= 0.85  # half/double time works but changes the feel
    return score, delta, label


def key_match(query: Key | None, key: Key | None, *, rules: Sequence[str]) -> tuple[float, str | None]:
    """Score of the harmonic move from ``query`` to ``key`` under the allowed ``rules``."""
    if query is None or key is None:
        return 0.0, None
    relation = harmonic_relation(query, key)
    if relation is None or relation not in rules:
        return 0.0, relation
    return RELATION_SCORES.get(relation, 0.0), relation


def score_candidates(
    query: TrackFeatures,
    candidates: Sequence[TrackFeatures],
    *,
    weights: Weights = Weights(),
    sound: Mapping[int, float] | None = None,
    coplay: Mapping[int, float] | None = None,
    coplay_counts: Mapping[int, int] | None = None,
) -> list[Scored]:
    """Score every candidate against the query, best first.

    Parameters
    ----------
    query : TrackFeatures
    candidates : sequence of TrackFeatures
        The query's own id, if present, is skipped.
    weights : Weights
    sound : mapping track_id -> similarity in [0, 1], optional
        Sounds-like similarity (embedding cosine).
    coplay : mapping track_id -> affinity in [0, 1], optional
        Collaborative-filtering affinity (played together by DJs).
    coplay_counts : mapping track_id -> int, optional
        Number of mixes with both tracks, for the reason text.

    Returns
    -------
    list of Scored, sorted by descending score.
    """
    sound = sound or {}
    coplay = coplay or {}
    coplay_counts = coplay_counts or {}
    out: list[Scored] = []
    for c in candidates:
        if c.track_id == query.track_id:
            continue
        parts: dict[str, float] = {}
        reasons: list[str] = []
        sources = ["harmonic"]
        k, relation = key_match(query.key, c.key, rules=weights.camelot_rules)
        parts["key"] = k
        if query.key is not None and c.key is not None:
            arrow = f"{query.key.camelot} → {c.key.camelot}"
            reasons.append(f"{arrow} ({relation})" if k > 0 else f"{arrow} (clashes)")
        t, delta, ratio = tempo_match(query.bpm, c.bpm, pitch_range_pct=weights.pitch_range_pct)
        parts["tempo"] = t
        tempo_text = f"{delta:+.1f} BPM"
        reasons.append(tempo_text if ratio == "1:1" else f"{tempo_text} at {ratio} time")
        e_diff = c.energy - query.energy
        parts["energy"] = max(0.0, 1.0 - abs(e_diff) / 4.0)
        if e_diff:
            reasons.append(f"energy {query.energy} → {c.energy}")
        if c.track_id in sound:
            parts["sound"] = float(sound[c.track_id])
            sources.append("sounds-like")
            if parts["sound"] >= 0.5:
                reasons.append("sounds like it")
        if c.track_id in coplay:
            parts["coplay"] = float(coplay[c.track_id])
            sources.append("co-play")
            n = coplay_counts.get(c.track_id, 0)
            if n:
                reasons.append(f"played together in {n} mix{'es' if n != 1 else ''}")
        total = (
            weights.key * parts["key"]
            + weights.tempo * parts["tempo"]
            + weights.energy * parts["energy"]
            + weights.sound * parts.get("sound", 0.0)
            + weights.coplay * parts.get("coplay", 0.0)
        )
        out.append(Scored(c.track_id, round(total, 4), parts, tuple(reasons), tuple(sources)))
    out.sort(key=lambda s: (-s.score, s.track_id))
    return out
