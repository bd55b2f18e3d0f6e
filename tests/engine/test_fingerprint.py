"""Landmark fingerprints and clip identification on synthesized tracks with known answers."""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import resample_poly

from engine.camelot import Key
from engine.degrade import phone_memo
from engine.errors import ParameterError
from engine.fingerprint import (
    BIN_HZ,
    CALIBRATION_FEATURES,
    DEFAULT_CALIBRATION,
    FRAME_RATE,
    QUERY_PARAMS,
    REFERENCE_PARAMS,
    VERIFY_NULL_SHIFTS,
    Calibration,
    FingerprintParams,
    Fingerprints,
    Hits,
    candidate_features,
    dense_bits,
    fingerprint,
    hash_pairs,
    hash_peaks,
    identify,
    match,
    pair_peaks,
    peak_offsets,
    radix_sorted,
    stable_order,
    verify,
    verify_dense,
)
from engine.fpindex import FingerprintIndex
from engine.synth import TrackSpec, render

SR = 16000


def _spec(i: int, duration_s: float = 30.0) -> TrackSpec:
    styles = ("house", "techno", "drum & bass", "hip-hop", "disco", "trance")
    bpms = (122.0, 131.0, 172.0, 92.0, 116.0, 136.0)
    return TrackSpec(style=styles[i % 6], bpm=bpms[i % 6], key=Key(i % 12, "minor" if i % 2 else "major"),
                     duration_s=duration_s, seed=100 + i)


def _track(i: int, duration_s: float = 30.0) -> np.ndarray:
    """A synthesized loop with a non-repeating lead of random notes, so every offset is unique."""
    y = render(_spec(i, duration_s), sr=SR).astype(np.float64)
    rng = np.random.default_rng(1000 + i)
    t0 = 0.0
    while t0 < duration_s - 0.5:
        dur = rng.uniform(0.12, 0.5)
        n0, n = int(t0 * SR), int(dur * SR)
        tt = np.arange(n) / SR
        f0 = 220.0 * 2 ** (rng.integers(0, 36) / 12)
        note = sum(0.5**k * np.sin(2 * np.pi * f0 * (k + 1) * tt) for k in range(3)) * np.exp(-tt / (0.6 * dur))
        y[n0 : n0 + n] += 0.25 * note[: len(y) - n0]
        t0 += dur + rng.uniform(0.0, 0.2)
    return (y / np.max(np.abs(y)) * 0.9).astype(np.float32)


@pytest.fixture(scope="module")
def catalog() -> dict[int, np.ndarray]:
    """Five synthesized 30 s tracks keyed by catalog id."""
    return {10 + i: _track(i) for i in range(5)}


@pytest.fixture(scope="module")
def index(catalog: dict[int, np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> FingerprintIndex:
    idx = FingerprintIndex.open(tmp_path_factory.mktemp("fp") / "index", create=True)
    idx.add_many((tid, fingerprint(y, sr=SR)) for tid, y in catalog.items())
    return idx


def _noisy(y: np.ndarray, *, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    noise = rng.standard_normal(y.size)
    noise *= np.sqrt(np.mean(y**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return (y + noise).astype(np.float32)


def test_fingerprint_is_deterministic_and_dense(catalog: dict[int, np.ndarray]) -> None:
    """The same audio gives the same hashes, tens per second."""
    y = catalog[10]
    a, b = fingerprint(y, sr=SR), fingerprint(y.copy(), sr=SR)
    assert np.array_equal(a.hashes, b.hashes) and np.array_equal(a.hash_frames, b.hash_frames)
    assert 30 < a.n_hashes / a.duration_s < 200
    assert np.all(np.diff(a.peak_frames) >= 0)


def test_fingerprint_of_silence_is_empty() -> None:
    """Digital silence yields no peaks and no hashes."""
    fp = fingerprint(np.zeros(SR * 5, np.float32), sr=SR)
    assert fp.n_hashes == 0 and fp.peak_frames.size == 0


def test_fingerprint_rejects_bad_input() -> None:
    """Stereo arrays, NaNs and bad rates are parameter errors."""
    with pytest.raises(ParameterError):
        fingerprint(np.zeros((2, 8000), np.float32), sr=SR)
    with pytest.raises(ParameterError):
        fingerprint(np.full(8000, np.nan, np.float32), sr=SR)
    with pytest.raises(ParameterError):
        fingerprint(np.zeros(8000, np.float32), sr=0)
    with pytest.raises(ParameterError):
        FingerprintParams(fanout=0)


def test_speed_hypothesis_undoes_resampling(catalog: dict[int, np.ndarray]) -> None:
    """Hashing a 3 % fast copy at speed 1.03 recovers most original hashes; at 1.0 almost none."""
    y = catalog[11][: SR * 20]
    ref = fingerprint(y, sr=SR)
    fast = fingerprint(resample_poly(y, 100, 103).astype(np.float32), sr=SR)
    ref_set = set(ref.hashes.tolist())
    plain = hash_peaks(fast.peak_frames, fast.peak_bins)[0]
    mapped = hash_peaks(fast.peak_frames, fast.peak_bins, speed=1.03)[0]
    share_plain = np.isin(plain, list(ref_set)).mean()
    share_mapped = np.isin(mapped, list(ref_set)).mean()
    assert share_mapped > 0.2
    assert share_mapped > 3 * share_plain


@pytest.mark.parametrize("track_id,start_s", [(10, 3.0), (12, 11.52), (14, 17.3)])
def test_identify_recovers_track_and_offset(
    catalog: dict[int, np.ndarray], index: FingerprintIndex, track_id: int, start_s: float, rng: np.random.Generator
) -> None:
    """A noisy 5 s excerpt is matched to its track at its offset (within one frame)."""
    y = catalog[track_id]
    start = int(start_s * SR)
    clip = _noisy(y[start : start + 5 * SR], snr_db=5.0, rng=rng)
    res = identify(clip, sr=SR, lookup=index.lookup)
    assert res.match is not None
    assert res.match.track_id == track_id
    assert abs(res.match.offset_s - start_s) <= 1.0 / FRAME_RATE + 1e-6
    assert res.match.confidence >= 0.5
    assert res.candidates[0] == res.match


@pytest.mark.parametrize("speed", [0.97, 1.03])
def test_identify_handles_pitch_fader(
    catalog: dict[int, np.ndarray], index: FingerprintIndex, speed: float, rng: np.random.Generator
) -> None:
    """A clip played 3 % slow or fast (tempo and pitch together) is found, with its speed and offset."""
    y = catalog[13]
    start_s = 8.0
    src = y[int(start_s * SR) : int((start_s + 6 * speed) * SR)]
    up, down = (100, 97) if speed == 0.97 else (100, 103)
    clip = _noisy(resample_poly(src, up, down).astype(np.float32), snr_db=5.0, rng=rng)
    res = identify(clip, sr=SR, lookup=index.lookup, peaks=index.reference_peaks)
    assert res.match is not None and res.match.track_id == 13
    assert abs(res.match.speed - speed) <= 0.008
    assert abs(res.match.offset_s - start_s) <= 0.1


@pytest.mark.parametrize("with_peaks", [False, True])
def test_identify_rejects_unknown_audio(index: FingerprintIndex, rng: np.random.Generator, with_peaks: bool) -> None:
    """Tracks not in the index and plain noise come back as no match, with or without the index's peaks."""
    peaks = index.reference_peaks if with_peaks else None
    for i in range(5, 9):  # same synthesizer, styles and drum sounds, other tracks
        y = _track(i, duration_s=12.0)
        res = identify(_noisy(y[SR : 11 * SR], snr_db=10.0, rng=rng), sr=SR, lookup=index.lookup, peaks=peaks)
        assert res.match is None, res.candidates[:1]
    noise = rng.standard_normal(SR * 10).astype(np.float32) * 0.1
    assert identify(noise, sr=SR, lookup=index.lookup, peaks=peaks).match is None


def test_calibration_weighs_every_feature() -> None:
    """Every feature the candidates are described by has a weight, and nothing else is weighed."""
    feats = candidate_features(np.array([40.0, 6.0]), np.array([9.0, 2.0]), np.array([12.0, 4.0]), np.array([10.0, 1.0]),
                               n_query_hashes=900)
    assert tuple(feats) == CALIBRATION_FEATURES
    weights = {f.name[2:] for f in fields(Calibration) if f.name.startswith("w_")}
    assert weights == set(CALIBRATION_FEATURES)
    conf = DEFAULT_CALIBRATION.confidence(feats)
    assert conf[0] > DEFAULT_CALIBRATION.accept_confidence > conf[1]


def test_identify_silence_is_no_match(index: FingerprintIndex) -> None:
    """A silent clip is answered with no match and no candidates."""
    res = identify(np.zeros(SR * 5, np.float32), sr=SR, lookup=index.lookup)
    assert res.match is None and res.candidates == () and res.n_query_hashes == 0


def test_query_params_are_denser(catalog: dict[int, np.ndarray]) -> None:
    """Queries keep more peaks than references, so surviving reference peaks are found."""
    y = catalog[10]
    assert fingerprint(y, sr=SR, params=QUERY_PARAMS).peak_frames.size > 1.5 * fingerprint(y, sr=SR).peak_frames.size


def test_fingerprint_accepts_any_rate(catalog: dict[int, np.ndarray], index: FingerprintIndex, tmp_path: Path) -> None:
    """A clip at 22050 Hz is resampled internally and still identified."""
    y = resample_poly(catalog[14][SR * 5 : SR * 15], 441, 320).astype(np.float32)
    res = identify(y, sr=22050, lookup=index.lookup)
    assert res.match is not None and res.match.track_id == 14


def test_peaks_spread_over_the_phone_band(catalog: dict[int, np.ndarray]) -> None:
    """Each log-spaced quarter of 150 Hz–6.8 kHz holds peaks, none more than about its quota."""
    fp = fingerprint(catalog[12], sr=SR)
    edges = np.geomspace(REFERENCE_PARAMS.min_hz, REFERENCE_PARAMS.max_hz, 5)
    share = np.histogram(fp.peak_bins * BIN_HZ, bins=edges)[0] / fp.peak_bins.size
    assert np.all(share > 0.08) and np.all(share < 0.35), share


def test_precheck_keeps_the_true_speed(catalog: dict[int, np.ndarray], index: FingerprintIndex,
                                       rng: np.random.Generator) -> None:
    """Keeping only the pre-check's best speed still finds a 3 % fast clip at its speed and offset."""
    y = catalog[12]
    start_s = 4.0
    clip = _noisy(resample_poly(y[int(start_s * SR) : int((start_s + 6 * 1.03) * SR)], 100, 103).astype(np.float32),
                  snr_db=5.0, rng=rng)
    fp = fingerprint(clip, sr=SR, params=QUERY_PARAMS)
    best = match(fp, index.lookup, keep_speeds=1)[0]
    assert best.track_id == 12
    assert abs(best.speed - 1.03) <= 0.006
    assert abs(best.offset_s - start_s) <= 0.1


def test_short_true_track_is_not_crowded_out_by_busy_tracks(catalog: dict[int, np.ndarray]) -> None:
    """A track with few but aligned hits wins over 30 tracks with many scattered chance hits."""
    fp = fingerprint(catalog[10][: SR * 5], sr=SR, params=QUERY_PARAMS)
    gen = np.random.default_rng(5)
    q_frames = hash_peaks(fp.peak_frames, fp.peak_bins, params=QUERY_PARAMS)[1]

    def lookup(hashes: np.ndarray) -> Hits:
        m = hashes.size
        busy_t = np.repeat(np.arange(100, 130), 200)  # 30 busy tracks, 200 hits each, random offsets
        busy_q = gen.integers(0, m, busy_t.size)
        busy_f = gen.integers(0, 60000, busy_t.size)
        true_q = np.arange(0, m, max(1, m // 40))[:40]  # 40 hits, all at offset 500
        return Hits(
            track_ids=np.concatenate([busy_t, np.full(true_q.size, 7)]).astype(np.int64),
            ref_frames=np.concatenate([busy_f, 500 + q_frames[true_q]]).astype(np.int32),
            query_index=np.concatenate([busy_q, true_q]).astype(np.int64),
        )

    best = match(fp, lookup, speeds=(1.0,), max_candidates=3)[0]
    assert best.track_id == 7 and best.score >= 30


def _counted_by_hand(track_ids: np.ndarray, ref_frames: np.ndarray, query_index: np.ndarray, q_frames: np.ndarray,
                     top: int) -> dict[int, tuple[int, int, int]]:
    """track -> (offset, score, raw hits) of the ``top`` best tracks, counted cell by cell: a query hash
    once per (track, offset), a frame of tolerance either way, the earliest offset and lower id on ties."""
    cells: dict[tuple[int, int], set[int]] = {}
    for t, r, qi in zip(track_ids.tolist(), ref_frames.tolist(), query_index.tolist()):
        cells.setdefault((t, r - int(q_frames[qi])), set()).add(qi)
    best: dict[int, tuple[int, int]] = {}
    for (t, o) in sorted(cells):
        score = sum(len(cells.get((t, o + d), ())) for d in (-1, 0, 1))
        if score >= 2 and score > best.get(t, (0, 0))[0]:
            best[t] = (score, o)
    raw = dict(zip(*np.unique(track_ids, return_counts=True)))
    ranked = sorted(best.items(), key=lambda kv: (-kv[1][0], kv[0]))[:top]
    return {int(t): (o, score, int(raw[t])) for t, (score, o) in ranked}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_match_scores_equal_a_cell_by_cell_count(seed: int) -> None:
    """Every reported track, offset, score and hit count is what counting the hits by hand gives,
    whichever way the lookup describes its hits (dense track positions, repeat-free or not)."""
    gen = np.random.default_rng(seed)
    frames = np.sort(gen.integers(0, 300, 240)).astype(np.int32)
    bins = gen.uniform(5, 249, frames.size).astype(np.float32)
    fp = Fingerprints(frames, bins, *hash_peaks(frames, bins, params=QUERY_PARAMS), 10.0)
    q_frames = hash_pairs(frames, bins, *pair_peaks(frames, bins, params=QUERY_PARAMS))[1]
    m = q_frames.size
    table = gen.choice(10**12, 40, replace=False).astype(np.int64)  # sparse ids
    n_chance = 3000
    slot = gen.integers(0, 40, n_chance)
    ref = gen.integers(0, 9000, n_chance)
    qi = gen.integers(0, m, n_chance)
    for k in range(12):  # aligned bursts of several sizes, some spread over two or three frames
        size = int(gen.integers(2, 30))
        q = gen.choice(m, size, replace=False)
        slot = np.r_[slot, np.full(size, gen.integers(0, 40))]
        ref = np.r_[ref, 1000 + 500 * k + q_frames[q] + gen.integers(-1, 2, size) * (k % 3 > 0)]
        qi = np.r_[qi, q]
    # repeat-free hits, then the same with some entries stored twice
    cell = np.unique(np.column_stack([slot, ref, qi]), axis=0)
    twice = np.r_[cell, cell[gen.choice(len(cell), 200, replace=False)]]
    for rows, distinct in ((cell, True), (cell, False), (twice, False)):
        hits = Hits(table[rows[:, 0]], rows[:, 1].astype(np.int32), rows[:, 2].astype(np.int64),
                    track_index=rows[:, 0].astype(np.int64), track_table=table, distinct=distinct)
        expected = _counted_by_hand(hits.track_ids, hits.ref_frames, hits.query_index, q_frames, 10)
        assert len(expected) == 10
        for view in (hits, replace(hits, track_index=None, track_table=None)):
            got = match(fp, lambda h, v=view: v, speeds=(1.0,), top_tracks=10, max_candidates=10)
            assert {c.track_id: (round(c.offset_s * FRAME_RATE), c.score, c.n_hits) for c in got} == expected


def test_verifier_tells_the_true_alignment_from_wrong_ones(catalog: dict[int, np.ndarray], index: FingerprintIndex,
                                                            rng: np.random.Generator) -> None:
    """A track's own peaks stand out in a noisy excerpt at its offset, not 2 s off, not in another track."""
    start = int(9.0 * FRAME_RATE)
    clip = catalog[12][int(start / FRAME_RATE * SR) : int((start / FRAME_RATE + 5) * SR)]
    fp = fingerprint(_noisy(clip, snr_db=0.0, rng=rng), sr=SR, params=QUERY_PARAMS, with_peak_map=True)
    frames, bins = index.reference_peaks(12)

    def z(offset: int, f: np.ndarray = frames, b: np.ndarray = bins) -> float:
        return verify(fp.peak_map, f, b, offset_frames=offset, speed=1.0).z

    assert z(start) > 5.0
    assert z(start + int(2 * FRAME_RATE)) < 3.0
    other_f, other_b = index.reference_peaks(13)
    assert max(z(o, other_f, other_b) for o in range(0, 700, 50)) < 3.0


def test_verifier_sees_a_locked_loop_at_its_offset(rng: np.random.Generator) -> None:
    """A track that is one short loop over and over still verifies in a noisy excerpt at its offset.

    8 of the 10 null time shifts are within a frame of a repeat of the loop; without leaving the
    track's own repetitions out of the null, such an excerpt scored at chance (z < 1).
    """
    loop_frames = 12  # 0.38 s
    for i in (0, 3):
        y = np.tile(_track(i, duration_s=4.0)[SR : SR + loop_frames * 512], 80)
        ref = fingerprint(y, sr=SR)
        start = 4 * loop_frames
        clip = _noisy(y[start * 512 : start * 512 + 6 * SR], snr_db=5.0, rng=rng)
        fp = fingerprint(clip, sr=SR, params=QUERY_PARAMS, with_peak_map=True)
        assert verify(fp.peak_map, ref.verify_frames, ref.verify_bins, offset_frames=start, speed=1.0).z > 3.0


def test_verifier_rejects_unknown_audio(index: FingerprintIndex, rng: np.random.Generator) -> None:
    """A track the index does not hold lines up with no indexed track's peaks, wherever it is put."""
    fp = fingerprint(_noisy(_track(7, duration_s=12.0)[SR : 6 * SR], snr_db=5.0, rng=rng), sr=SR,
                     params=QUERY_PARAMS, with_peak_map=True)
    for tid in index.tracks():
        f, b = index.reference_peaks(tid)
        assert max(verify(fp.peak_map, f, b, offset_frames=o, speed=1.0).z for o in range(0, 700, 50)) < 3.0


def test_identify_verifies_candidates(catalog: dict[int, np.ndarray], index: FingerprintIndex,
                                      rng: np.random.Generator) -> None:
    """With the index's peaks, a degraded excerpt is accepted with a strong verification; unknown audio is not."""
    clip = _noisy(catalog[14][SR * 12 : SR * 17], snr_db=0.0, rng=rng)
    res = identify(clip, sr=SR, lookup=index.lookup, peaks=index.reference_peaks)
    assert res.match is not None and res.match.track_id == 14 and res.match.verified > 5.0
    assert res.match.verified > max(c.verified for c in res.candidates[1:]) + 2.0, res.candidates
    unknown = _noisy(_track(8, duration_s=12.0)[SR : 11 * SR], snr_db=10.0, rng=rng)
    assert identify(unknown, sr=SR, lookup=index.lookup, peaks=index.reference_peaks).match is None


def test_short_loud_room_memos_are_placed_at_their_true_offset(catalog: dict[int, np.ndarray],
                                                               index: FingerprintIndex) -> None:
    """3 s phone memos under crowd noise louder than the music: the best candidate names the track
    and where in it the memo was taken.

    Few landmark pairs survive this much noise, so the hash histogram's best offset is often a chance
    one (13 of these 20 placed right without the single-peak search); single peaks survive far more
    often, and the search over the whole track finds the true place (18 of 20).
    """
    placed = 0
    for snr_db in (-5.0, -10.0):
        rng = np.random.default_rng(5)
        for k in range(10):
            tid = 10 + k % 5
            start_s = float(rng.uniform(2, 22))
            clip = phone_memo(catalog[tid][int(start_s * SR) : int((start_s + 3.0) * SR)], sr=SR, snr_db=snr_db, rng=rng)
            fp = fingerprint(clip, sr=SR, params=QUERY_PARAMS, with_peak_map=True)
            best = match(fp, index.lookup, peaks=index.reference_peaks)[0]
            placed += best.track_id == tid and abs(best.offset_s - start_s) < 0.1
    assert placed >= 16


def test_peak_offsets_finds_the_clip_in_the_whole_track(catalog: dict[int, np.ndarray], index: FingerprintIndex,
                                                        rng: np.random.Generator) -> None:
    """A noisy excerpt's single peaks line up with its own track at its offset, far above the track's other
    offsets; against another track nothing stands out like that."""
    start = int(17.0 * FRAME_RATE)
    clip = _noisy(catalog[11][start * 512 : start * 512 + 4 * SR], snr_db=-3.0, rng=rng)
    fp = fingerprint(clip, sr=SR, params=QUERY_PARAMS)
    n = int(4 * FRAME_RATE)
    own = peak_offsets(fp.peak_frames, fp.peak_bins, *index.reference_peaks(11), speed=1.0, n_clip_frames=n)
    other = peak_offsets(fp.peak_frames, fp.peak_bins, *index.reference_peaks(13), speed=1.0, n_clip_frames=n)
    assert abs(own.offset_frames - start) <= 1 and own.z > 8.0
    assert other.z < own.z / 2


def _dense_z(clip: np.ndarray, index: FingerprintIndex, track_id: int, offset: int, *, speed: float = 1.0) -> float:
    fp = fingerprint(clip, sr=SR, params=QUERY_PARAMS, with_peak_map=True)
    first, bits = index.reference_dense(track_id)
    return verify_dense(dense_bits(fp.spectrum, speed=speed), bits, ref_first_frame=first, offset_frames=offset,
                        speed=speed).z


@pytest.mark.parametrize("snr_db", [5.0, 0.0, -5.0])
def test_dense_verifier_places_a_room_memo_at_its_offset(catalog: dict[int, np.ndarray], index: FingerprintIndex,
                                                         snr_db: float) -> None:
    """A 5 s phone memo (room, band-pass, crowd noise) agrees with its track's band bits best at its own
    offset (give or take the frame of tolerance), far above chance; other tracks agree nowhere like that."""
    rng = np.random.default_rng(3)
    start = int(9.0 * FRAME_RATE)
    clip = phone_memo(catalog[12][start * 512 : start * 512 + 5 * SR], sr=SR, snr_db=snr_db, rng=rng)
    z = {o: _dense_z(clip, index, 12, o) for o in range(start - 60, start + 61, 1)}
    assert abs(max(z, key=z.get) - start) <= 1 and z[start] > 6.0
    assert max(_dense_z(clip, index, t, o) for t in (10, 11, 13) for o in range(0, 780, 50)) < z[start] / 1.5


def test_dense_verifier_maps_the_bands_under_the_speed(catalog: dict[int, np.ndarray], index: FingerprintIndex,
                                                       rng: np.random.Generator) -> None:
    """A clip played 3 % fast (every frequency 3 % up) verifies under its speed, clearly better than if
    its bands were read as if played at the original speed."""
    start = int(9.0 * FRAME_RATE)
    fast = resample_poly(catalog[13][start * 512 : start * 512 + int(5 * 1.03 * SR)], 100, 103).astype(np.float32)
    clip = _noisy(fast, snr_db=5.0, rng=rng)
    right = _dense_z(clip, index, 13, start, speed=1.03)
    assert right > 6.0 and right > _dense_z(clip, index, 13, start, speed=1.0) + 1.5


def test_dense_verifier_rejects_unknown_audio(index: FingerprintIndex, rng: np.random.Generator) -> None:
    """A track the index does not hold agrees with no indexed track's bits beyond chance, wherever it is put."""
    clip = _noisy(_track(7, duration_s=12.0)[SR : 6 * SR], snr_db=5.0, rng=rng)
    for tid in index.tracks():
        assert max(_dense_z(clip, index, tid, o) for o in range(0, 780, 25)) < 3.5


def test_identify_reports_the_dense_verification(catalog: dict[int, np.ndarray], index: FingerprintIndex,
                                                 rng: np.random.Generator) -> None:
    """With the index's dense bits the accepted match carries a strong dense verification, and it counts:
    a calibration that weighs it is more confident in the right track."""
    clip = _noisy(catalog[14][SR * 12 : SR * 17], snr_db=0.0, rng=rng)
    res = identify(clip, sr=SR, lookup=index.lookup, peaks=index.reference_peaks, dense=index.reference_dense)
    assert res.match is not None and res.match.track_id == 14 and res.match.dense_verified > 5.0
    assert all(c.dense_verified < 3.5 for c in res.candidates[1:]), res.candidates
    plain = identify(clip, sr=SR, lookup=index.lookup, peaks=index.reference_peaks)
    assert plain.match is not None and plain.match.dense_verified == 0.0
    # hash score only, far from certain, so the dense feature's weight shows
    doubtful = Calibration(bias=-6.0, w_score=1.0, w_margin=0.0, w_hashes=0.0, w_verified=0.0, w_verified_margin=0.0,
                           w_peak_votes=0.0, w_dense=0.0)

    def best(cal: Calibration) -> tuple[int, float]:
        top = identify(clip, sr=SR, lookup=index.lookup, peaks=index.reference_peaks, dense=index.reference_dense,
                       calibration=cal).candidates[0]
        return top.track_id, top.confidence

    (t0, c0), (t1, c1) = best(doubtful), best(replace(doubtful, w_dense=0.5))
    assert t0 == t1 == 14 and c1 > c0 + 0.2

@pytest.mark.parametrize("speed", [1.0, 0.99125, 1.035, 1.5, 0.6])
def test_peak_offsets_counts_every_pair_at_its_rounded_offset(speed: float, rng: np.random.Generator) -> None:
    """Votes and best offset are those of the definition, pair by pair: each clip peak against each track peak
    within a bin, at rint(track frame - clip frame x speed), a frame either way (1.5 puts half the pairs on a tie;
    0.6 puts clip peaks above the track's highest bin)."""
    q_frames = np.sort(rng.integers(0, 90, 40)).astype(np.int32)
    q_bins = rng.uniform(20, 60, 40).astype(np.float32)
    ref_frames = np.sort(rng.integers(0, 900, 600)).astype(np.int32)
    ref_bins = rng.uniform(20, 60, 600).astype(np.float32)
    votes: dict[int, int] = {}
    for tq, qb in zip(q_frames * speed, np.rint(q_bins / speed)):
        for t, b in zip(ref_frames, np.rint(ref_bins)):
            if abs(b - qb) <= 1:
                votes[int(np.rint(t - tq))] = votes.get(int(np.rint(t - tq)), 0) + 1
    smooth = {o: votes.get(o - 1, 0) + votes.get(o, 0) + votes.get(o + 1, 0) for o in range(min(votes), max(votes) + 1)}
    best = max(sorted(smooth), key=lambda o: smooth[o])  # the earliest on ties
    pv = peak_offsets(q_frames, q_bins, ref_frames, ref_bins, speed=speed, n_clip_frames=90)
    assert (pv.offset_frames, pv.votes) == (best, smooth[best])


@pytest.mark.parametrize("bits", [1, 12, 16, 17, 23, 24, 25, 31, 40])
def test_radix_sorts_are_numpys(bits: int, rng: np.random.Generator) -> None:
    """``stable_order`` is the stable argsort (ties keep their positions) and ``radix_sorted`` the sort, for
    keys of any width (many repeats, and the widest values the width allows)."""
    dtype = np.int64 if bits > 31 else np.int32
    values = rng.integers(0, 1 << bits, 3000).astype(dtype)
    values[::7] = values[3]  # repeats
    values[::11] = (1 << bits) - 1
    assert np.array_equal(stable_order(values, bits=bits), np.argsort(values, kind="stable"))
    assert np.array_equal(radix_sorted(values, bits=bits), np.sort(values))
    hashes = values.astype(np.uint32) if bits <= 32 else None  # the lookup's needles
    if hashes is not None:
        assert np.array_equal(stable_order(hashes, bits=bits), np.argsort(hashes, kind="stable"))


@pytest.mark.parametrize(("speed", "offset"), [(1.0, 40), (0.99125, 0), (1.5, 25), (1.035, 130)])
def test_verify_dense_compares_every_alignment_as_defined(speed: float, offset: int, rng: np.random.Generator) -> None:
    """Shares of agreeing bits at the alignment and the shifted ones, row by row as the docstring defines them:
    clip frame i against track row rint(offset + i x speed + shift + d), d a frame either way, rows outside the
    track left out (1.5 puts every other frame on a tie; offsets 0 and 130 run past the track's ends)."""
    n_q, m, first = 60, 300, 20
    clip = rng.integers(0, 256, (n_q, 8), dtype=np.uint8)
    ref = rng.integers(0, 256, (m, 8), dtype=np.uint8)
    at = max(offset - first, 0)
    ref[at + 5 : at + 45] = clip[5:45]  # the clip's own frames, about where it starts
    bits_c, bits_r = np.unpackbits(clip, axis=1), np.unpackbits(ref, axis=1)
    best = []
    for shift in np.concatenate([[0], -VERIFY_NULL_SHIFTS[::-1], VERIFY_NULL_SHIFTS]):
        shares = []
        for d in (-1, 0, 1):
            rows = np.rint(offset - first + np.arange(n_q) * speed + shift + d).astype(np.int64)
            ok = (rows >= 0) & (rows < m)
            if ok.sum() >= max(int(0.4 * n_q), 8):
                shares.append(1.0 - (bits_c[ok] != bits_r[rows[ok]]).sum() / (ok.sum() * 64))
        best.append(max(shares) if shares else np.nan)
    rest = np.array([b for b in best[1:] if not np.isnan(b)])
    v = verify_dense(clip, ref, ref_first_frame=first, offset_frames=offset, speed=speed)
    assert (v.observed, v.null) == (best[0], float(rest.mean()))
    assert v.z == pytest.approx((best[0] - rest.mean()) / max(rest.std(), 1e-3), rel=1e-12)
