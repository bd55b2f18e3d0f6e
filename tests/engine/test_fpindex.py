"""The on-disk fingerprint index: add, remove, reload, compaction and concurrent readers."""

from __future__ import annotations

import json
import multiprocessing as mp
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from engine.errors import ParameterError
from engine.fingerprint import DENSE_BYTES, Fingerprints, hash_peaks
from engine.fpindex import FingerprintIndex, IndexError_

N_PEAKS = 600


def _fake_fp(seed: int, duration_s: float = 60.0) -> Fingerprints:
    """Fingerprints of random peaks: distinct per seed, cheap to make."""
    rng = np.random.default_rng(seed)
    frames = np.sort(rng.integers(0, int(duration_s * 31.25), N_PEAKS)).astype(np.int32)
    bins = rng.uniform(5, 249, N_PEAKS).astype(np.float32)
    h, t = hash_peaks(frames, bins)
    return Fingerprints(frames, bins, h, t, duration_s)


def _excerpt(fp: Fingerprints, start: int, length: int = 300) -> Fingerprints:
    """The peaks of frames [start, start + length) shifted to start at 0, as a query."""
    sel = (fp.peak_frames >= start) & (fp.peak_frames < start + length)
    frames, bins = fp.peak_frames[sel] - start, fp.peak_bins[sel]
    h, t = hash_peaks(frames, bins)
    return Fingerprints(frames, bins, h, t, length / 31.25)


def _best(index: FingerprintIndex, q: Fingerprints) -> int | None:
    m = index.query(q, speeds=(1.0,))
    return m[0].track_id if m and m[0].score >= 20 else None


def test_add_then_query_finds_track_and_offset(tmp_path: Path) -> None:
    """An excerpt of an added track is found at its frame offset."""
    idx = FingerprintIndex.open(tmp_path / "ix", create=True)
    fps = {i: _fake_fp(i) for i in (1, 2, 3)}
    idx.add_many(fps.items())
    m = idx.query(_excerpt(fps[2], 400), speeds=(1.0,))
    assert m[0].track_id == 2
    assert m[0].offset_s == pytest.approx(400 / 31.25, abs=1 / 31.25 + 1e-6)  # within one frame
    assert len(idx) == 3 and set(idx.tracks()) == {1, 2, 3}


def test_open_without_index_fails(tmp_path: Path) -> None:
    """Opening a directory with no index is a clear error unless create=True."""
    with pytest.raises(IndexError_):
        FingerprintIndex.open(tmp_path / "nothing")


def test_remove_hides_track_and_reload_sees_it(tmp_path: Path) -> None:
    """A removed track stops matching, in this object and in another opened earlier after reload."""
    writer = FingerprintIndex.open(tmp_path / "ix", create=True)
    fps = {i: _fake_fp(i) for i in (1, 2)}
    writer.add_many(fps.items())
    reader = FingerprintIndex.open(tmp_path / "ix")
    v = writer.remove(1)
    assert _best(writer, _excerpt(fps[1], 100)) is None
    assert _best(reader, _excerpt(fps[1], 100)) == 1  # still on its version
    assert reader.reload() and reader.version == v
    assert _best(reader, _excerpt(fps[1], 100)) is None
    assert _best(reader, _excerpt(fps[2], 100)) == 2
    assert 1 not in reader and 2 in reader


def test_add_existing_id_replaces_it(tmp_path: Path) -> None:
    """Adding a track id again replaces its fingerprints."""
    idx = FingerprintIndex.open(tmp_path / "ix", create=True)
    old, new = _fake_fp(1), _fake_fp(99)
    idx.add(7, old)
    idx.add(7, new)
    assert len(idx) == 1
    assert _best(idx, _excerpt(new, 200)) == 7
    assert _best(idx, _excerpt(old, 200)) is None


def test_state_survives_reopen(tmp_path: Path) -> None:
    """A fresh open sees the same tracks, version and answers."""
    idx = FingerprintIndex.open(tmp_path / "ix", create=True)
    fps = {i: _fake_fp(i) for i in range(1, 6)}
    for tid, fp in fps.items():
        idx.add(tid, fp)
    idx.remove([2, 4])
    again = FingerprintIndex.open(tmp_path / "ix")
    assert again.version == idx.version
    assert set(again.tracks()) == {1, 3, 5}
    assert _best(again, _excerpt(fps[5], 700)) == 5


def test_many_adds_stay_few_segments_and_compaction_drops_removed(tmp_path: Path) -> None:
    """Small adds are merged beyond max_segments; compaction frees removed tracks' bytes."""
    idx = FingerprintIndex.open(tmp_path / "ix", create=True, max_segments=3)
    fps = {i: _fake_fp(i) for i in range(1, 9)}
    for tid, fp in fps.items():
        idx.add(tid, fp)
    assert idx.stats().n_segments <= 3
    idx.remove([1, 2, 3, 4])
    before = idx.stats()
    idx.compact()
    after = idx.stats()
    assert after.n_segments == 1 and after.n_tracks == 4
    assert after.bytes < 0.6 * before.bytes
    for tid in (5, 8):
        assert _best(idx, _excerpt(fps[tid], 300)) == tid
    assert _best(idx, _excerpt(fps[1], 300)) is None
    # old versions beyond keep_versions are garbage-collected
    assert len(list((tmp_path / "ix" / "versions").glob("v*.json"))) <= 4
    assert not list((tmp_path / "ix").rglob("*.tmp"))


def test_bad_adds_are_rejected(tmp_path: Path) -> None:
    """Negative ids, duplicate ids in one add and over-long tracks are parameter errors."""
    idx = FingerprintIndex.open(tmp_path / "ix", create=True)
    fp = _fake_fp(1)
    with pytest.raises(ParameterError):
        idx.add(-1, fp)
    with pytest.raises(ParameterError):
        idx.add_many([(1, fp), (1, fp)])
    long = Fingerprints(fp.peak_frames, fp.peak_bins, fp.hashes, fp.hash_frames + 70000, 3000.0)
    with pytest.raises(ParameterError):
        idx.add(2, long)
    assert len(idx) == 0


def _reader(path: str, seeds: list[int], rounds: int, out: mp.Queue) -> None:
    """Query repeatedly while a writer changes the index; report what was seen."""
    try:
        idx = FingerprintIndex.open(path)
        fps = {s: _fake_fp(s) for s in seeds}
        seen = []
        for r in range(rounds):
            idx.reload()
            for s in seeds:
                got = _best(idx, _excerpt(fps[s], 50 + 37 * r % 1000))
                # a track is either found as itself or absent, never confused
                if got not in (None, s):
                    out.put(("error", f"track {s} answered as {got}"))
                    return
            seen.append(idx.version)
        out.put(("ok", seen))
    except Exception as exc:  # report to the parent, which asserts
        out.put(("error", repr(exc)))


def test_concurrent_readers_never_see_half_an_index(tmp_path: Path) -> None:
    """Reader processes keep answering correctly while another process adds, removes and compacts."""
    path = tmp_path / "ix"
    idx = FingerprintIndex.open(path, create=True, keep_versions=1, max_segments=3)
    seeds = [1, 2, 3, 4]
    idx.add_many((s, _fake_fp(s)) for s in seeds)
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()
    procs = [ctx.Process(target=_reader, args=(str(path), seeds, 40, out)) for _ in range(2)]
    for p in procs:
        p.start()
    for k in range(30):
        idx.add(100 + k, _fake_fp(100 + k))
        if k % 3 == 0:
            idx.remove(seeds[k % 4])
            idx.add(seeds[k % 4], _fake_fp(seeds[k % 4]))
        if k % 10 == 9:
            idx.compact()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert all(kind == "ok" for kind, _ in results), results
    assert all(len(seen) == 40 for _, seen in results)


@pytest.mark.parametrize("old_format", ["mixwith-fpindex-1", "mixwith-fpindex-2", "mixwith-fpindex-3"])
def test_old_format_index_is_refused_with_a_way_out(tmp_path: Path, old_format: str) -> None:
    """An index of the 8 kHz fingerprinter (format 1), without reference peaks (2) or without dense bits (3)
    is refused, telling the user to re-index."""
    root = tmp_path / "ix"
    (root / "versions").mkdir(parents=True)
    (root / "segments").mkdir()
    (root / "versions" / "v00000000.json").write_text(
        json.dumps({"format": old_format, "version": 0, "hash_bits": 21, "segments": []})
    )
    (root / "CURRENT").write_text("0\n")
    for create in (False, True):
        with pytest.raises(IndexError_, match="re-index"):
            FingerprintIndex.open(root, create=create)


def test_overly_common_hashes_are_skipped(tmp_path: Path) -> None:
    """A hash stored more often than max_postings gives no hits; rarer ones still do."""
    common = np.full(300, 12345, np.uint32)
    rare = np.array([777], np.uint32)
    fp = Fingerprints(np.zeros(1, np.int32), np.zeros(1, np.float32), np.concatenate([common, rare]),
                      np.arange(301, dtype=np.int32), 10.0)
    idx = FingerprintIndex.open(tmp_path / "ix", create=True, max_postings=200)
    idx.add(1, fp)
    hits = idx.lookup(np.array([12345, 777], np.uint32))
    assert hits.query_index.tolist() == [1]
    loose = FingerprintIndex.open(tmp_path / "ix", max_postings=1000)
    assert loose.lookup(np.array([12345], np.uint32)).track_ids.size == 300


def test_skipped_share_counts_entries_of_common_hashes(tmp_path: Path) -> None:
    """The share of entries in hashes above max_postings is reported (300 of 301 here)."""
    fp = Fingerprints(np.zeros(1, np.int32), np.zeros(1, np.float32),
                      np.concatenate([np.full(300, 5, np.uint32), np.array([6], np.uint32)]),
                      np.arange(301, dtype=np.int32), 10.0)
    idx = FingerprintIndex.open(tmp_path / "ix", create=True, max_postings=200)
    idx.add(1, fp)
    assert idx.skipped_share() == pytest.approx(300 / 301)


def test_answers_do_not_depend_on_the_dense_track_positions(tmp_path: Path) -> None:
    """Matching with the index's dense track positions ranks exactly as matching by sparse track ids."""
    from engine.fingerprint import match

    idx = FingerprintIndex.open(tmp_path / "ix", create=True)
    ids = [7, 10**12, 3, 2**40 + 5]  # sparse ids over several segments, one replaced and one removed
    for i, tid in enumerate(ids):
        idx.add(tid, _fake_fp(i))
    idx.add(3, _fake_fp(9))
    idx.remove([7])
    sparse = lambda h: replace(idx.lookup(h), track_index=None, track_table=None)  # noqa: E731
    for seed, start in ((1, 200), (9, 50), (0, 900)):
        q = _excerpt(_fake_fp(seed), start)
        dense_answer = [(m.track_id, m.offset_s, m.score) for m in match(q, idx.lookup, speeds=(1.0,))]
        assert dense_answer == [(m.track_id, m.offset_s, m.score) for m in match(q, sparse, speeds=(1.0,))]
        assert 7 not in [a[0] for a in dense_answer]  # removed
    assert [m.track_id for m in match(_excerpt(_fake_fp(9), 50), idx.lookup, speeds=(1.0,))][:1] == [3]
    assert [m.track_id for m in match(_excerpt(_fake_fp(1), 200), idx.lookup, speeds=(1.0,))][:1] == [10**12]


def test_posting_table_finds_exactly_what_a_search_of_the_keys_finds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Large segments look postings up in a table of hash values: the hits are the same, entry for entry."""
    import engine.fpindex as fpindex

    idx = FingerprintIndex.open(tmp_path / "ix", create=True, max_postings=40)
    fps = {i: _fake_fp(i) for i in range(6)}
    idx.add_many(list(fps.items())[:3])
    idx.add_many(list(fps.items())[3:])
    idx.add(2, _fake_fp(12))  # replaced: its old entries are tombstoned
    idx.remove([4])
    common = Fingerprints(np.zeros(1, np.int32), np.zeros(1, np.float32), np.full(50, 4321, np.uint32),
                          np.arange(50, dtype=np.int32), 5.0)  # above max_postings
    idx.add(9, common)
    rng = np.random.default_rng(3)
    queries = np.concatenate([fps[1].hashes[::3], fps[4].hashes[:50], _fake_fp(12).hashes[:80], [4321, 0],
                              rng.integers(0, 1 << 21, 300), [(1 << 21) - 1, 1 << 21, (1 << 32) - 1]]).astype(np.uint32)
    rng.shuffle(queries)
    searched = idx.lookup(queries)
    monkeypatch.setattr(fpindex, "_DIRECTORY_MIN_KEYS", 1)
    tabled = FingerprintIndex.open(tmp_path / "ix", max_postings=40)
    hits = tabled.lookup(queries)
    assert len(tabled._directories) == len(tabled._segments) > 1  # every segment went through its table
    assert searched.track_ids.size > 500
    for name in ("track_ids", "ref_frames", "query_index", "track_index"):
        assert np.array_equal(getattr(hits, name), getattr(searched, name)), name
    assert 4 not in hits.track_ids and 4321 not in queries[hits.query_index]


@pytest.mark.parametrize("chunk", [7, 1 << 22])
def test_an_entry_stored_twice_counts_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    """An index that holds a (hash, frame) entry twice says so to the matcher, which counts it once:
    the track scores what the repeat-free index gives (the check reads the segment in chunks)."""
    import engine.fpindex as fpindex

    monkeypatch.setattr(fpindex, "_CHECK_CHUNK", chunk)
    fp = _fake_fp(5)
    twice = np.arange(0, fp.hashes.size, 3)
    doubled = Fingerprints(fp.peak_frames, fp.peak_bins, np.r_[fp.hashes, fp.hashes[twice]],
                           np.r_[fp.hash_frames, fp.hash_frames[twice]], fp.duration_s)
    plain = FingerprintIndex.open(tmp_path / "plain", create=True)
    plain.add_many([(5, fp), (3, _fake_fp(3))])  # random peaks that happen to repeat no entry
    doubled_ix = FingerprintIndex.open(tmp_path / "doubled", create=True)
    doubled_ix.add_many([(5, doubled), (3, _fake_fp(3))])
    q = _excerpt(fp, 700)
    assert plain.lookup(q.hashes).distinct and not doubled_ix.lookup(q.hashes).distinct
    a, b = plain.query(q, speeds=(1.0,))[0], doubled_ix.query(q, speeds=(1.0,))[0]
    assert (a.track_id, a.offset_s, a.score) == (b.track_id, b.offset_s, b.score) == (5, 700 / 31.25, a.score)
    assert a.score >= 20 and b.n_hits > a.n_hits  # raw hits still count every stored entry


def _same_peaks(index: FingerprintIndex, track_id: int, fp: Fingerprints) -> bool:
    frames, bins = index.reference_peaks(track_id)
    order = np.lexsort((fp.peak_bins, fp.peak_frames))
    return (np.array_equal(frames, fp.peak_frames[order])
            and bool(np.all(np.abs(bins - fp.peak_bins[order]) <= 1 / 128 + 1e-6)))


def test_reference_peaks_survive_add_remove_compact_and_reopen(tmp_path: Path) -> None:
    """Each track's own peaks come back (to 1/64 bin) through every index operation; removed ones do not."""
    idx = FingerprintIndex.open(tmp_path / "ix", create=True, max_segments=2)
    fps = {i: _fake_fp(i) for i in range(1, 6)}
    for tid, fp in fps.items():  # one segment per add, merged beyond two
        idx.add(tid, fp)
    assert all(_same_peaks(idx, tid, fp) for tid, fp in fps.items())
    idx.remove([2])
    idx.add(4, _fake_fp(44))
    assert idx.reference_peaks(2)[0].size == 0
    assert _same_peaks(idx, 4, _fake_fp(44))
    idx.compact()
    again = FingerprintIndex.open(tmp_path / "ix")
    for tid in (1, 3, 5):
        assert _same_peaks(again, tid, fps[tid])
    assert _same_peaks(again, 4, _fake_fp(44))
    assert again.reference_peaks(2)[0].size == 0 and again.reference_peaks(12345)[0].size == 0
    # a window holds exactly the peaks of its frames
    frames, _ = again.reference_peaks(3, 100, 400)
    expected = fps[3].peak_frames[(fps[3].peak_frames >= 100) & (fps[3].peak_frames < 400)]
    assert np.array_equal(frames, np.sort(expected))
    assert 0 < again.stats().peak_bytes < again.stats().bytes


def _with_dense(fp: Fingerprints, seed: int) -> Fingerprints:
    """The fingerprints with random dense bits, a row per frame of the track."""
    rows = np.random.default_rng(seed).integers(0, 256, (int(fp.duration_s * 31.25), DENSE_BYTES), dtype=np.uint8)
    return replace(fp, dense_bits=rows)


def test_dense_bits_survive_add_remove_compact_and_reopen(tmp_path: Path) -> None:
    """Each track's dense bits come back row for row through every index operation; removed tracks' do not,
    and a window starts where it was asked to (cut where the track ends)."""
    idx = FingerprintIndex.open(tmp_path / "ix", create=True, max_segments=2)
    fps = {i: _with_dense(_fake_fp(i, duration_s=40.0 + i), i) for i in range(1, 6)}
    for tid, fp in fps.items():  # one segment per add, merged beyond two
        idx.add(tid, fp)
    assert all(np.array_equal(idx.reference_dense(tid)[1], fp.dense_bits) for tid, fp in fps.items())
    idx.remove([2])
    replaced = _with_dense(_fake_fp(44), 44)
    idx.add(4, replaced)
    idx.compact()
    again = FingerprintIndex.open(tmp_path / "ix")
    for tid in (1, 3, 5):
        assert np.array_equal(again.reference_dense(tid)[1], fps[tid].dense_bits)
    assert np.array_equal(again.reference_dense(4)[1], replaced.dense_bits)
    assert again.reference_dense(2)[1].shape == (0, DENSE_BYTES) and again.reference_dense(999)[1].size == 0
    first, rows = again.reference_dense(3, -20, 400)
    assert first == 0 and np.array_equal(rows, fps[3].dense_bits[:400])
    n3 = fps[3].dense_bits.shape[0]
    first, rows = again.reference_dense(3, n3 - 10, n3 + 50)
    assert first == n3 - 10 and np.array_equal(rows, fps[3].dense_bits[-10:])
    assert again.stats().dense_bytes >= sum(fps[t].dense_bits.nbytes for t in (1, 3, 5)) + replaced.dense_bits.nbytes


def test_dense_bits_of_another_width_are_rejected(tmp_path: Path) -> None:
    """Dense bits that are not DENSE_BYTES wide (another descriptor) are refused before anything is written."""
    idx = FingerprintIndex.open(tmp_path / "ix", create=True)
    fp = _fake_fp(1)
    with pytest.raises(ParameterError, match="dense_bits"):
        idx.add(1, replace(fp, dense_bits=np.zeros((100, DENSE_BYTES + 1), np.uint8)))
    assert len(idx) == 0
