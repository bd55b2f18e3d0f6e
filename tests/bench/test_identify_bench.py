"""The identification bench's ground truth: held-out tracks that contain catalog audio; repeatable inputs."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from bench.identify.__main__ import GEN_SR, Track, load_tracks, peer_equal_far_threshold, shared_audio
from engine.camelot import Key
from engine.fingerprint import fingerprint
from engine.fpindex import FingerprintIndex
from engine.synth import TrackSpec, render


def _track(track_id: int, y: np.ndarray) -> Track:
    return Track(key=f"t{track_id}", track_id=track_id, path=Path(f"/dev/null/t{track_id}.wav"), y=y.astype(np.float32))


def test_held_out_remaster_of_a_catalog_track_is_flagged(tmp_path: Path, rng: np.random.Generator) -> None:
    """A held-out 'enhanced' version (new intro, catalog audio quieter after it) counts as catalog audio; others do not."""
    a = render(TrackSpec(style="house", bpm=124.0, key=Key(9, "minor"), duration_s=30.0, seed=1), sr=GEN_SR)
    b = render(TrackSpec(style="techno", bpm=131.0, key=Key(2, "minor"), duration_s=30.0, seed=2), sr=GEN_SR)
    other = render(TrackSpec(style="disco", bpm=118.0, key=Key(11, "major"), duration_s=30.0, seed=3), sr=GEN_SR)
    index = FingerprintIndex.open(tmp_path / "idx", create=True)
    index.add_many([(1, fingerprint(a, sr=GEN_SR)), (2, fingerprint(b, sr=GEN_SR))])
    intro = 0.05 * rng.standard_normal(7 * GEN_SR)
    remaster = np.concatenate([intro, 0.6 * a])
    found = shared_audio(index, [_track(10, remaster), _track(11, other)])
    assert found == {10: 1}


def test_a_refused_dev_file_is_reported_once_not_every_run(tmp_path: Path, rng: np.random.Generator,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """A dev file too short to decode is skipped with a warning on the first run only; good files still load."""
    sf.write(tmp_path / "blip.wav", (0.3 * rng.standard_normal(GEN_SR // 50)).astype(np.float32), GEN_SR)  # 20 ms
    sf.write(tmp_path / "a.wav", (0.3 * rng.standard_normal(2 * GEN_SR)).astype(np.float32), GEN_SR)
    manifest = tmp_path / "manifest.tsv"
    manifest.write_text(f"d001\t{tmp_path / 'blip.wav'}\tpkg\tNA\nd002\t{tmp_path / 'a.wav'}\tpkg\tNA\n")
    with caplog.at_level(logging.WARNING, logger="bench.identify"):
        first = load_tracks(manifest, min_track_s=1.0, limit=None, out=tmp_path / "out")
    assert [t.key for t in first] == ["d002"]
    assert "blip.wav" in caplog.text and "too short" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="bench.identify"):
        later = load_tracks(manifest, min_track_s=1.0, limit=None, out=tmp_path / "out")
    assert [t.key for t in later] == ["d002"]
    assert "blip.wav" not in caplog.text


def test_first_and_later_runs_index_the_same_audio(tmp_path: Path, rng: np.random.Generator) -> None:
    """The run that decodes a dev track gets exactly the audio later runs read from the bench's cache."""
    y = (0.3 * rng.standard_normal(2 * GEN_SR)).astype(np.float32)
    sf.write(tmp_path / "a.flac", y, GEN_SR, subtype="PCM_24")  # finer than the cache's 16 bits
    manifest = tmp_path / "manifest.tsv"
    manifest.write_text(f"d001\t{tmp_path / 'a.flac'}\tpkg\tNA\n")
    first = load_tracks(manifest, min_track_s=1.0, limit=None, out=tmp_path / "out")
    later = load_tracks(manifest, min_track_s=1.0, limit=None, out=tmp_path / "out")
    assert (tmp_path / "out" / "cache" / "d001.npy").is_file()
    assert np.array_equal(first[0].y, later[0].y)


def test_peer_compared_at_equal_false_accepts() -> None:
    """The peer's threshold for ≤ 1 % false accepts sits just above the outside clips it must reject."""
    # 300 outside clips: 1 % allows 3 through. The peer named 5 of them, with 40, 12, 9, 7 and 5 aligned hashes.
    per = {"a": {"out": 200, "fa_scores": [5, 12, 40]}, "b": {"out": 100, "fa_scores": [7, 9]}}
    thr = peer_equal_far_threshold(per)
    assert thr == 8  # 40, 12 and 9 pass (3 = 1 %); the clip with 7 must not
    assert sum(a >= thr for d in per.values() for a in d["fa_scores"]) <= 3
    # few enough named: its own rule stands
    assert peer_equal_far_threshold({"a": {"out": 300, "fa_scores": [6, 30]}}) == 0
