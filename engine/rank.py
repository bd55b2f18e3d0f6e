"""Scoring candidate tracks for how well they mix with a query track.

A score is a sum of named, weighted parts: ``key`` (harmonic compatibility
under configurable Camelot rules), ``tempo`` (beat-matchable within a pitch
range, half/double time allowed), ``energy`` (flow in the asked direction),
``sound`` (sounds-like similarity) and ``coplay`` (collaborative filtering:
played together by DJs). Each result keeps its parts, the reasons a DJ reads
("8A → 9A (+1)", "+2.1 BPM", "played together in 14 mixes") and the
candidate sources that proposed it.

The hybrid ranker (:func:`rank_candidates`) scores in numpy (1k candidates
in a few milliseconds of CPU), filters (BPM range, key lock, same artist), then
walks the ordered list keeping it diverse (no run of near-duplicates).
``score_candidates`` is the earlier, filter-free interface, kept as a thin
wrapper.
"""

from __future__ import annotations

import functools
import heapq
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from engine.camelot import ALL_KEYS, Key, harmonic_relation
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
COMPONENTS: tuple[str, ...] = ("key", "tempo", "energy", "sound", "coplay")
# Least sounds-like similarity (0-1) that earns the "sounds like it" reason.
SOUND_REASON_MIN = 0.5
# Source names a candidate can come from.
SOURCE_HARMONIC, SOURCE_SOUND, SOURCE_CF = "harmonic", "sounds-like", "co-play"

EnergyDirection = Literal["up", "down", "steady"]
_ENERGY_TARGET = {"up": 1.0, "down": -1.0, "steady": 0.0, None: 0.0}


@dataclass(frozen=True)
class TrackFeatures:
    """What the ranker knows about one track.

    Attributes
    ----------
    track_id : int
    bpm : float
        <= 0 when unknown (then the tempo part is 0).
    key : Key or None
    energy : int
        1–10.
    artist : str
    title : str
        Used only to spot near-duplicates (edits and remixes of one song).
    """

    track_id: int
    bpm: float
    key: Key | None
    energy: int
    artist: str = ""
    title: str = ""


@dataclass(frozen=True)
class Weights:
    """Weights of the score's parts and the harmonic rules in force.

    Attributes
    ----------
    key, tempo, energy, sound, coplay : float >= 0
    pitch_range_pct : float > 0
        Largest tempo change a DJ makes with the pitch fader.
    camelot_rules : tuple of str
        Allowed moves (see ``engine.camelot.harmonic_relation``).
    relation_scores : tuple of (str, float), optional
        Overrides of :data:`RELATION_SCORES`.
    half_double_factor : float in [0, 1]
        Multiplier for a half/double-time match (works, changes the feel).
    tempo_clash : float >= 0
        Subtracted when both tempi are known and no pitch-fader move (even at
        half/double time) brings them together: such a track cannot be
        beatmatched, so a perfect key should not lift it above one that can.
    """

    key: float = 0.35
    tempo: float = 0.30
    energy: float = 0.10
    sound: float = 0.15
    coplay: float = 0.10
    pitch_range_pct: float = 6.0
    camelot_rules: tuple[str, ...] = DEFAULT_RULES
    relation_scores: tuple[tuple[str, float], ...] = ()
    half_double_factor: float = 0.85
    tempo_clash: float = 0.3

    def __post_init__(self) -> None:
        for name in (*COMPONENTS, "tempo_clash"):
            if getattr(self, name) < 0:
                raise ParameterError(f"weight {name} must be >= 0")
        if self.pitch_range_pct <= 0:
            raise ParameterError("pitch_range_pct must be > 0")
        known = set(RELATION_SCORES)
        for rule in self.camelot_rules:
            if rule not in known:
                raise ParameterError(f"unknown Camelot rule {rule!r}; known: {', '.join(sorted(known))}")
        if not 0 <= self.half_double_factor <= 1:
            raise ParameterError("half_double_factor must be in [0, 1]")


@dataclass(frozen=True)
class Knobs:
    """Three user-facing dials, multipliers of the weights (1 = the defaults).

    Attributes
    ----------
    flow : float >= 0
        How much the energy should move the asked way (``energy`` part).
    sweetness : float >= 0
        How much harmonic agreement matters (``key`` part).
    smoothness : float >= 0
        How close the tempo must be (``tempo`` part).
    """

    flow: float = 1.0
    sweetness: float = 1.0
    smoothness: float = 1.0

    def __post_init__(self) -> None:
        if min(self.flow, self.sweetness, self.smoothness) < 0:
            raise ParameterError("knobs must be >= 0")


@dataclass(frozen=True)
class Filters:
    """Hard constraints from the request.

    Attributes
    ----------
    bpm_min, bpm_max : float, optional
        On the candidate's own tempo.
    key_lock : bool
        Keep only candidates whose key is an allowed harmonic move.
    exclude_same_artist : bool
        Drop candidates by the query's artist.
    energy : {"up", "down", "steady"} or None
        Direction the energy part rewards (None behaves as "steady").
    """

    bpm_min: float | None = None
    bpm_max: float | None = None
    key_lock: bool = False
    exclude_same_artist: bool = False
    energy: EnergyDirection | None = None

    def __post_init__(self) -> None:
        if self.energy not in _ENERGY_TARGET:
            raise ParameterError(f"energy must be 'up', 'down', 'steady' or None, got {self.energy!r}")
        if self.bpm_min is not None and self.bpm_max is not None and self.bpm_min > self.bpm_max:
            raise ParameterError("bpm_min is above bpm_max")


@dataclass(frozen=True)
class Diversity:
    """Keep a result list from being ten versions of the same thing.

    Attributes
    ----------
    max_per_artist : int >= 1
        Tracks of one artist kept at full score; each further one is judged
        with its score lowered by ``artist_repeat_penalty`` per track over
        the cap, so a third track of an artist still beats a much worse fit.
    artist_repeat_penalty : float >= 0
        ``inf`` makes the cap hard (over-cap tracks only fill up the end).
    duplicate_similarity : float in (0, 1]
        Cosine of item vectors at or above which two candidates count as
        near-duplicates (only the better one is kept).
    """

    max_per_artist: int = 2
    artist_repeat_penalty: float = 0.15
    duplicate_similarity: float = 0.97

    def __post_init__(self) -> None:
        if self.max_per_artist < 1:
            raise ParameterError("max_per_artist must be at least 1")
        if not self.artist_repeat_penalty >= 0:
            raise ParameterError("artist_repeat_penalty must be >= 0")
        if not 0 < self.duplicate_similarity <= 1:
            raise ParameterError("duplicate_similarity must be in (0, 1]")


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
        1 at equal tempo, falling linearly to 0 at the pitch range's edge;
        times 0.85 for half/double time.
    delta_bpm : float
        Signed difference after the best ratio, ``bpm * ratio - query_bpm``.
    ratio : str
        ``"1:1"``, ``"2:1"`` (candidate played at half) or ``"1:2"`` (at double).
    """
    if query_bpm <= 0 or bpm <= 0:
        raise ParameterError("tempi must be positive")
    if pitch_range_pct <= 0:
        raise ParameterError("pitch_range_pct must be > 0")
    score, delta, ratio, _ = _tempo_arrays(np.array([query_bpm]), np.array([bpm]), pitch_range_pct, 0.85)
    return float(score[0]), float(delta[0]), _RATIO_LABELS[int(ratio[0])]


_RATIO_FACTORS = np.array([1.0, 2.0, 0.5])
_RATIO_LABELS = ("1:1", "1:2", "2:1")


def _tempo_arrays(
    query_bpm: np.ndarray, bpm: np.ndarray, pitch_range_pct: float, half_double_factor: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised :func:`tempo_match`; unknown tempi (<= 0, NaN) score 0.

    The fourth array is the clash flag: 1.0 where both tempi are known and out
    of fader range even at half/double time (an unknown tempo is no clash).
    """
    q = np.asarray(query_bpm, dtype=np.float64)
    b = np.asarray(bpm, dtype=np.float64)
    valid = (q > 0) & (b > 0) & np.isfinite(q) & np.isfinite(b)
    qs = np.where(valid, q, 1.0)
    bs = np.where(valid, b, 1.0)
    adjusted = bs[..., None] * _RATIO_FACTORS  # (..., 3)
    pct = np.abs(adjusted - qs[..., None]) / qs[..., None] * 100.0
    ratio = np.argmin(pct, axis=-1)
    best = np.take_along_axis(pct, ratio[..., None], axis=-1)[..., 0]
    delta = np.take_along_axis(adjusted, ratio[..., None], axis=-1)[..., 0] - qs
    score = np.clip(1.0 - best / pitch_range_pct, 0.0, 1.0)
    score = np.where(ratio == 0, score, score * half_double_factor)
    clash = (valid & (score <= 0)).astype(np.float64)
    return np.where(valid, score, 0.0), np.where(valid, delta, 0.0), ratio, clash


def key_match(query: Key | None, key: Key | None, *, rules: Sequence[str]) -> tuple[float, str | None]:
    """Score of the harmonic move from ``query`` to ``key`` under the allowed ``rules``."""
    if query is None or key is None:
        return 0.0, None
    relation = harmonic_relation(query, key)
    if relation is None or relation not in rules:
        return 0.0, relation
    return RELATION_SCORES.get(relation, 0.0), relation


def key_index(key: Key | None) -> int:
    """0–23 (tonic + 12 for minor), -1 for an unknown key."""
    if key is None:
        return -1
    return key.tonic + (12 if key.mode == "minor" else 0)


_KEYS_BY_INDEX: tuple[Key, ...] = tuple(sorted(ALL_KEYS, key=key_index))


@functools.lru_cache(maxsize=64)
def _relation_table() -> tuple[tuple[str | None, ...], ...]:
    return tuple(tuple(harmonic_relation(a, b) for b in _KEYS_BY_INDEX) for a in _KEYS_BY_INDEX)


@functools.lru_cache(maxsize=64)
def key_score_table(rules: tuple[str, ...], relation_scores: tuple[tuple[str, float], ...] = ()) -> np.ndarray:
    """Harmonic score of every key pair, shape (25, 25); row/column 24 is the unknown key.

    Cached: the same rules are asked for on every request.
    """
    scores = dict(RELATION_SCORES)
    scores.update(dict(relation_scores))
    table = np.zeros((25, 25), dtype=np.float64)
    rel = _relation_table()
    for i in range(24):
        for j in range(24):
            r = rel[i][j]
            if r is not None and r in rules:
                table[i, j] = scores.get(r, 0.0)
    table.setflags(write=False)
    return table


def energy_flow(query_energy: np.ndarray | float, energy: np.ndarray | float, *, direction: EnergyDirection | None) -> np.ndarray:
    """1 when the energy moves one step the asked way (0 steps for steady), falling by 1/4 per step off."""
    target = _ENERGY_TARGET[direction]
    diff = np.asarray(energy, dtype=np.float64) - np.asarray(query_energy, dtype=np.float64)
    return np.clip(1.0 - np.abs(diff - target) / 4.0, 0.0, 1.0)


# Bracketed parts that name the same recording (a remix is another track: kept)
_SAME_SONG_RE = re.compile(
    r"\s*[\(\[][^\)\]]*\b(original|radio|extended|edit|feat|ft|remaster(ed)?|album version|clean|explicit|mono|stereo)\b[^\)\]]*[\)\]]",
    re.IGNORECASE,
)
_FEAT_RE = re.compile(r"\s+(feat\.?|ft\.?|featuring)\s.*$", re.IGNORECASE)


def normalise_text(text: str) -> str:
    """Lower case; accents, "feat." tails and same-recording brackets ("Original Mix") removed.

    Remix and version names in brackets stay: a remix is a different track.
    """
    s = unicodedata.normalize("NFKD", text)
    s = "".join(ch for ch in s if not unicodedata.combining(ch))
    s = _SAME_SONG_RE.sub("", s)
    s = _FEAT_RE.sub("", s).lower()
    s = re.sub(r"[^\w]+", " ", s)
    return " ".join(s.split())


@dataclass(frozen=True)
class _Arrays:
    ids: np.ndarray
    bpm: np.ndarray
    key: np.ndarray
    energy: np.ndarray


def _arrays(candidates: Sequence[TrackFeatures]) -> _Arrays:
    n = len(candidates)
    return _Arrays(
        ids=np.fromiter((c.track_id for c in candidates), dtype=np.int64, count=n),
        bpm=np.fromiter((c.bpm for c in candidates), dtype=np.float64, count=n),
        key=np.fromiter((key_index(c.key) for c in candidates), dtype=np.int64, count=n),
        energy=np.fromiter((c.energy for c in candidates), dtype=np.float64, count=n),
    )


def _lookup(ids: list[int], mapping: Mapping[int, float] | None) -> tuple[np.ndarray, np.ndarray]:
    """Values for ``ids`` (0 where missing) and a mask of presence."""
    if not mapping:
        return np.zeros(len(ids)), np.zeros(len(ids), dtype=bool)
    nan = float("nan")
    vals = np.array([mapping.get(t, nan) for t in ids], dtype=np.float64)
    present = ~np.isnan(vals)
    return np.where(present, vals, 0.0), present


def component_scores(
    query: TrackFeatures,
    candidates: Sequence[TrackFeatures],
    *,
    weights: Weights = Weights(),
    direction: EnergyDirection | None = None,
) -> dict[str, np.ndarray]:
    """The content parts (key, tempo, energy) for every candidate, vectorised.

    Returns
    -------
    dict with ``key``, ``tempo``, ``energy``, ``delta_bpm``, ``ratio`` and
    ``clash`` (1.0 where both tempi are known and out of fader range) arrays
    of shape (len(candidates),).
    """
    return _components(query, _arrays(candidates), weights=weights, direction=direction)


def _components(
    query: TrackFeatures, a: _Arrays, *, weights: Weights, direction: EnergyDirection | None
) -> dict[str, np.ndarray]:
    table = key_score_table(tuple(weights.camelot_rules), tuple(weights.relation_scores))
    qk = key_index(query.key)
    key = table[qk if qk >= 0 else 24, np.where(a.key >= 0, a.key, 24)]
    tempo, delta, ratio, clash = _tempo_arrays(
        np.full(len(a.bpm), float(query.bpm)), a.bpm, weights.pitch_range_pct, weights.half_double_factor
    )
    energy = energy_flow(float(query.energy), a.energy, direction=direction)
    return {"key": key, "tempo": tempo, "energy": energy, "delta_bpm": delta, "ratio": ratio, "clash": clash}



def _reasons(
    query: TrackFeatures,
    c: TrackFeatures,
    parts: Mapping[str, float],
    *,
    delta_bpm: float,
    ratio: int,
    has_sound: bool,
    sound_cut: float,
    has_cf: bool,
    coplay_count: int,
) -> tuple[str, ...]:
    reasons: list[str] = []
    if query.key is not None and c.key is not None:
        arrow = f"{query.key.camelot} → {c.key.camelot}"
        relation = harmonic_relation(query.key, c.key)
        if parts["key"] > 0:
            reasons.append(f"{arrow} ({relation})")
        else:
            reasons.append(f"{arrow} (clashes)")
    if query.bpm > 0 and c.bpm > 0:
        tempo_text = f"{delta_bpm:+.1f} BPM"
        if ratio != 0:
            tempo_text = f"{tempo_text} at {_RATIO_LABELS[ratio]} time"
        # past the pitch-fader range the number alone would read like advice
        reasons.append(tempo_text if parts["tempo"] > 0 else f"{tempo_text} (tempo clash)")
    if c.energy != query.energy:
        reasons.append(f"energy {query.energy} → {c.energy}")
    if has_sound and parts["sound"] >= sound_cut:
        reasons.append("sounds like it")
    if coplay_count > 0:
        reasons.append(f"played together in {coplay_count} mix{'es' if coplay_count != 1 else ''}")
    elif has_cf and parts["coplay"] >= 0.5:
        reasons.append("DJs who play it play this")
    return tuple(reasons)


def rank_candidates(
    query: TrackFeatures,
    candidates: Sequence[TrackFeatures],
    *,
    weights: Weights = Weights(),
    knobs: Knobs = Knobs(),
    filters: Filters = Filters(),
    sound: Mapping[int, float] | None = None,
    coplay: Mapping[int, float] | None = None,
    coplay_counts: Mapping[int, int] | None = None,
    sources: Mapping[int, Iterable[str]] | None = None,
    vectors: Mapping[int, np.ndarray] | None = None,
    diversity: Diversity | None = Diversity(),
    limit: int | None = None,
) -> list[Scored]:
    """Hybrid ranking: score, filter, diversify, explain.

    Parameters
    ----------
    query : TrackFeatures
    candidates : sequence of TrackFeatures
        The query's own id, if present, is skipped.
    weights : Weights
    knobs : Knobs
        Multipliers: ``sweetness`` × key, ``smoothness`` × tempo, ``flow`` × energy.
    filters : Filters
    sound : mapping track_id -> similarity in [0, 1], optional
        Sounds-like similarity (embedding cosine).
    coplay : mapping track_id -> affinity in [0, 1], optional
        Collaborative-filtering affinity (ALS or co-occurrence).
    coplay_counts : mapping track_id -> int, optional
        Number of mixes with both tracks, for the reason text.
    sources : mapping track_id -> iterable of str, optional
        Which candidate generators proposed each track; by default inferred
        (``harmonic`` when key and tempo fit, ``sounds-like``, ``co-play``).
    vectors : mapping track_id -> ndarray, shape (d,), optional
        Item vectors to spot near-duplicates (embeddings or CF factors).
    diversity : Diversity or None
        None keeps the plain score order.
    limit : int, optional
        Return at most this many (explanations are built only for these).

    Returns
    -------
    list of Scored, best first (ties by track id).
    """
    if limit is not None and limit < 0:
        raise ParameterError("limit must be >= 0")
    cands = [c for c in candidates if c.track_id != query.track_id]
    if not cands:
        return []
    arrays = _arrays(cands)
    parts = _components(query, arrays, weights=weights, direction=filters.energy)
    ids = arrays.ids
    id_list = ids.tolist()
    sound_v, has_sound = _lookup(id_list, sound)
    cf_v, has_cf = _lookup(id_list, coplay)
    total = (
        weights.key * knobs.sweetness * parts["key"]
        + weights.tempo * knobs.smoothness * parts["tempo"]
        + weights.energy * knobs.flow * parts["energy"]
        + weights.sound * sound_v
        + weights.coplay * cf_v
        - weights.tempo_clash * parts["clash"]
    )
    keep = np.ones(len(cands), dtype=bool)
    bpm = arrays.bpm
    if filters.bpm_min is not None:
        keep &= bpm >= filters.bpm_min
    if filters.bpm_max is not None:
        keep &= bpm <= filters.bpm_max
    if filters.key_lock:
        keep &= parts["key"] > 0
    if filters.exclude_same_artist and query.artist:
        qa = normalise_text(query.artist)
        keep &= np.array([normalise_text(c.artist) != qa for c in cands])
    idx = np.flatnonzero(keep)
    # best first, ties broken by track id so results are reproducible
    order = idx[np.lexsort((ids[idx], -np.round(total[idx], 9)))]
    chosen = _diversify(order, total, cands, diversity, vectors, limit) if diversity is not None else order
    if limit is not None:
        chosen = chosen[:limit]
    out: list[Scored] = []
    counts = coplay_counts or {}
    # "sounds like it" only for the closest fifth of the sounds-like neighbours: when a
    # model finds everything similar, an absolute threshold would say it of every track
    present = sound_v[has_sound]
    sound_cut = max(SOUND_REASON_MIN, float(np.quantile(present, 0.8))) if present.size else SOUND_REASON_MIN
    for i in chosen:
        c = cands[i]
        comp = {
            "key": float(parts["key"][i]),
            "tempo": float(parts["tempo"][i]),
            "energy": float(parts["energy"][i]),
            "sound": float(sound_v[i]),
            "coplay": float(cf_v[i]),
        }
        reasons = _reasons(
            query, c, comp, delta_bpm=float(parts["delta_bpm"][i]), ratio=int(parts["ratio"][i]),
            has_sound=bool(has_sound[i]), sound_cut=sound_cut, has_cf=bool(has_cf[i]), coplay_count=int(counts.get(c.track_id, 0)),
        )
        if sources is not None and c.track_id in sources:
            src = tuple(dict.fromkeys(sources[c.track_id]))
        else:
            src = tuple(
                s for s, on in (
                    (SOURCE_HARMONIC, comp["key"] > 0 and comp["tempo"] > 0),
                    (SOURCE_SOUND, bool(has_sound[i])),
                    (SOURCE_CF, bool(has_cf[i])),
                ) if on
            )
        out.append(Scored(c.track_id, round(float(total[i]), 4), comp, reasons, src))
    return out


def _diversify(
    order: np.ndarray,
    total: np.ndarray,
    cands: Sequence[TrackFeatures],
    diversity: Diversity,
    vectors: Mapping[int, np.ndarray] | None,
    limit: int | None,
) -> np.ndarray:
    """Walk the ranked list, holding back over-represented artists and dropping near-duplicates.

    A track over its artist's cap is deferred with its score lowered by the
    repeat penalty and taken when that lowered score still leads the list.
    Same songs and near-duplicates go to the end rather than vanish, so a
    short catalog still fills the list.
    """
    kept: list[int] = []
    skipped: list[int] = []
    deferred: list[tuple[float, int, int, int]] = []  # (-lowered score, seq, index, times over the cap)
    per_artist: dict[str, int] = {}
    seen_songs: set[tuple[str, str]] = set()
    kept_vecs: list[np.ndarray] = []
    order_list = order.tolist()
    want = limit if limit is not None else len(order_list)
    pos = seq = 0
    while len(kept) < want:
        nxt = order_list[pos] if pos < len(order_list) else None
        if deferred and (nxt is None or -deferred[0][0] > total[nxt]):
            _, _, i, over_before = heapq.heappop(deferred)
        elif nxt is not None:
            i, over_before = nxt, 0
            pos += 1
        else:
            break
        c = cands[i]
        artist = normalise_text(c.artist)
        song = (artist, normalise_text(c.title))
        over = per_artist.get(artist, 0) - diversity.max_per_artist + 1 if artist else 0
        if over > over_before:  # (re)judge it at its lowered score; an infinite penalty sends it to the end
            seq += 1
            heapq.heappush(deferred, (diversity.artist_repeat_penalty * over - float(total[i]), seq, i, over))
            continue
        if song[1] and song in seen_songs:
            skipped.append(i)
            continue
        vec = None
        if vectors is not None and c.track_id in vectors:
            v = np.asarray(vectors[c.track_id], dtype=np.float64)
            norm = np.linalg.norm(v)
            vec = v / norm if norm > 0 else None
        if vec is not None and kept_vecs and max(float(k @ vec) for k in kept_vecs) >= diversity.duplicate_similarity:
            skipped.append(i)
            continue
        kept.append(i)
        if artist:
            per_artist[artist] = per_artist.get(artist, 0) + 1
        if song[1]:
            seen_songs.add(song)
        if vec is not None:
            kept_vecs.append(vec)
    later = [i for *_, i, _ in sorted(deferred)]
    return np.array(kept + order_list[pos:] + later + skipped, dtype=np.int64)


def score_candidates(
    query: TrackFeatures,
    candidates: Sequence[TrackFeatures],
    *,
    weights: Weights = Weights(),
    sound: Mapping[int, float] | None = None,
    coplay: Mapping[int, float] | None = None,
    coplay_counts: Mapping[int, int] | None = None,
) -> list[Scored]:
    """Score every candidate against the query, best first (no filters, no diversity).

    Kept for callers of the first ranker; :func:`rank_candidates` adds knobs,
    filters, diversity and candidate sources.
    """
    return rank_candidates(
        query, candidates, weights=weights, sound=sound, coplay=coplay, coplay_counts=coplay_counts, diversity=None
    )


def harmonic_neighbours(
    query: TrackFeatures,
    catalog: Sequence[TrackFeatures],
    *,
    n: int,
    weights: Weights = Weights(),
) -> list[tuple[int, float]]:
    """The ``n`` catalog tracks whose key and tempo fit the query best, as (id, fit).

    Fit is ``(key_weight * key + tempo_weight * tempo) / (key_weight + tempo_weight)``;
    only tracks fitting on both counts are returned.
    """
    if n < 1:
        raise ParameterError("n must be at least 1")
    cat = [c for c in catalog if c.track_id != query.track_id]
    if not cat:
        return []
    parts = component_scores(query, cat, weights=weights)
    wsum = weights.key + weights.tempo or 1.0
    fit = (weights.key * parts["key"] + weights.tempo * parts["tempo"]) / wsum
    ok = np.flatnonzero((parts["key"] > 0) & (parts["tempo"] > 0))
    if ok.size == 0:
        return []
    ids = np.fromiter((c.track_id for c in cat), dtype=np.int64, count=len(cat))
    top = ok[np.lexsort((ids[ok], -fit[ok]))][:n]
    return [(int(ids[i]), float(fit[i])) for i in top]


def merge_sources(**lists: Iterable[int]) -> dict[int, tuple[str, ...]]:
    """Union of candidate lists, remembering which sources proposed each id.

    Example: ``merge_sources(**{"co-play": als_ids, "sounds-like": annoy_ids, "harmonic": h_ids})``.
    """
    out: dict[int, list[str]] = {}
    for name, ids in lists.items():
        for t in ids:
            out.setdefault(int(t), []).append(name)
    return {t: tuple(s) for t, s in out.items()}


def transition_matrix(
    tracks: Sequence[TrackFeatures],
    *,
    weights: Weights = Weights(),
    knobs: Knobs = Knobs(),
    coplay: np.ndarray | None = None,
) -> np.ndarray:
    """How well each track mixes into each other one, for set ordering.

    Parameters
    ----------
    tracks : sequence of TrackFeatures, length N
    weights, knobs : as for :func:`rank_candidates` (energy is judged as "steady";
        the set's energy arc is the orderer's business)
    coplay : ndarray, shape (N, N), optional
        CF affinity in [0, 1] between the tracks.

    Returns
    -------
    ndarray, shape (N, N): score of playing ``j`` right after ``i``, diagonal 0.
    """
    n = len(tracks)
    if coplay is not None and coplay.shape != (n, n):
        raise ParameterError(f"coplay must have shape ({n}, {n})")
    a = _arrays(tracks)
    table = key_score_table(tuple(weights.camelot_rules), tuple(weights.relation_scores))
    ki = np.where(a.key >= 0, a.key, 24)
    key = table[ki[:, None], ki[None, :]]
    tempo, _, _, clash = _tempo_arrays(
        np.broadcast_to(a.bpm[:, None], (n, n)), np.broadcast_to(a.bpm[None, :], (n, n)),
        weights.pitch_range_pct, weights.half_double_factor,
    )
    energy = energy_flow(a.energy[:, None], a.energy[None, :], direction="steady")
    out = (
        weights.key * knobs.sweetness * key
        + weights.tempo * knobs.smoothness * tempo
        + weights.energy * knobs.flow * energy
        - weights.tempo_clash * clash
    )
    if coplay is not None:
        out = out + weights.coplay * coplay
    np.fill_diagonal(out, 0.0)
    return out
