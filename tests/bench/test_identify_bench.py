"""The identification bench's ground truth: held-out tracks that contain catalog audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.identify.__main__ import GEN_SR, Track, shared_audio
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
