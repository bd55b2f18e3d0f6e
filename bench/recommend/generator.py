"""A planted mix history: simulated DJs with style preferences mixing by key and tempo.

Each track has a style (which sets its tempo range and its sound), a key, an
energy, a popularity and a *scene* — a latent crate no audio feature shows
(who has the record). A DJ likes one or two styles and digs in one or two
scenes; a mix walks through the DJ's crate, each next track drawn with
probability ∝ popularity × harmonic fit × tempo fit × energy flow. So
co-play carries what content cannot see (scenes) and content carries what
sparse co-play misses (key and tempo rules): a hybrid should beat both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.camelot import ALL_KEYS, Key, harmonic_relation

STYLE_BPM = (122.0, 126.0, 132.0, 138.0, 174.0, 90.0, 110.0, 145.0)
# the generator's own notion of a good move (close to, but not the ranker's table)
_MOVE_WEIGHT = {"same": 1.0, "+1": 0.8, "-1": 0.8, "relative": 0.7, "diagonal": 0.3, "+2": 0.3}


@dataclass(frozen=True)
class Catalog:
    """The simulated catalog, arrays indexed by track index."""

    style: np.ndarray  # (n,) int
    scene: np.ndarray  # (n,) int
    bpm: np.ndarray  # (n,) float
    key: tuple[Key, ...]
    energy: np.ndarray  # (n,) int 1..10
    popularity: np.ndarray  # (n,) float, sums to 1
    vectors: np.ndarray  # (n, d) float32, unit "sounds-like" embeddings
    artist: tuple[str, ...]

    @property
    def n(self) -> int:
        return len(self.bpm)


def make_catalog(n_tracks: int, *, n_scenes: int, dim: int = 32, seed: int = 0) -> Catalog:
    rng = np.random.default_rng(seed)
    n_styles = len(STYLE_BPM)
    style = rng.integers(0, n_styles, n_tracks)
    scene = rng.integers(0, n_scenes, n_tracks)
    bpm = np.array(STYLE_BPM)[style] * (1.0 + rng.normal(0, 0.025, n_tracks))
    key_idx = rng.integers(0, 24, n_tracks)
    keys = tuple(ALL_KEYS[i] for i in key_idx)
    energy = np.clip(np.round(rng.normal(4 + style % 4, 1.5, n_tracks)), 1, 10).astype(int)
    pop = rng.pareto(1.2, n_tracks) + 1.0
    pop /= pop.sum()
    centroids = rng.normal(size=(n_styles, dim))
    # sound = style + track character + noise; scene does not show in the sound
    vec = centroids[style] + rng.normal(0, 1.1, (n_tracks, dim))
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    n_artists = max(1, n_tracks // 4)
    artist = tuple(f"artist{a}" for a in rng.integers(0, n_artists, n_tracks))
    return Catalog(style, scene, bpm, keys, energy, pop, vec.astype(np.float32), artist)


def _move_matrix() -> np.ndarray:
    keys = ALL_KEYS
    m = np.full((24, 24), 0.02)
    for i, a in enumerate(keys):
        for j, b in enumerate(keys):
            r = harmonic_relation(a, b)
            if r in _MOVE_WEIGHT:
                m[i, j] = _MOVE_WEIGHT[r]
    return m


def make_mixes(
    cat: Catalog,
    *,
    n_djs: int,
    n_mixes: int,
    mean_length: int = 12,
    seed: int = 1,
) -> tuple[list[list[int]], np.ndarray]:
    """Generate mixes; returns (mixes as track-index lists, the DJ of each mix)."""
    rng = np.random.default_rng(seed)
    moves = _move_matrix()
    key_idx = np.array([ALL_KEYS.index(k) for k in cat.key])
    n_styles = int(cat.style.max()) + 1
    n_scenes = int(cat.scene.max()) + 1
    crates = []
    for _ in range(n_djs):
        styles = rng.choice(n_styles, size=rng.integers(1, 3), replace=False)
        scenes = rng.choice(n_scenes, size=rng.integers(1, 3), replace=False)
        crate = np.flatnonzero(np.isin(cat.style, styles) & np.isin(cat.scene, scenes))
        if len(crate) < mean_length * 2:
            crate = np.flatnonzero(np.isin(cat.style, styles))
        crates.append(crate)
    mixes, djs = [], []
    for _ in range(n_mixes):
        d = int(rng.integers(n_djs))
        crate = crates[d]
        length = int(np.clip(rng.poisson(mean_length), 4, len(crate)))
        p = cat.popularity[crate] ** 0.6
        cur = int(rng.choice(len(crate), p=p / p.sum()))
        used = np.zeros(len(crate), bool)
        used[cur] = True
        mix = [int(crate[cur])]
        for _step in range(length - 1):
            t = crate[cur]
            ratio = cat.bpm[crate] / cat.bpm[t]
            ratio = np.minimum.reduce([np.abs(ratio - 1), np.abs(ratio * 2 - 1), np.abs(ratio / 2 - 1)])
            tempo = np.exp(-((ratio / 0.03) ** 2))
            harm = moves[key_idx[t], key_idx[crate]]
            de = cat.energy[crate] - cat.energy[t]
            flow = np.exp(-((de - 0.3) ** 2) / 4.0)
            w = p * harm * (tempo + 0.02) * flow
            w[used] = 0.0
            if w.sum() <= 0:
                break
            cur = int(rng.choice(len(crate), p=w / w.sum()))
            used[cur] = True
            mix.append(int(crate[cur]))
        mixes.append(mix)
        djs.append(d)
    return mixes, np.array(djs)


def random_interactions(n_interactions: int, *, n_tracks: int, mix_length: int = 12, seed: int = 2):
    """A mix × track matrix of ``n_interactions`` plays with popularity skew (for timing)."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    n_mixes = n_interactions // mix_length
    pop = rng.pareto(1.2, n_tracks) + 1.0
    pop /= pop.sum()
    cols = rng.choice(n_tracks, size=n_mixes * mix_length, p=pop)
    rows = np.repeat(np.arange(n_mixes), mix_length)
    m = sp.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)), shape=(n_mixes, n_tracks))
    m.sum_duplicates()
    return m
