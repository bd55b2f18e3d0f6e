"""Identification wired through the catalog: ingest fingerprints, `identify`, `recommend`, removal."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import asyncpg
import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from bot.cli import cli
from db.queries import models as models_q
from engine.camelot import Key
from engine.degrade import phone_memo, write_aac
from engine.fingerprint import DEFAULT_CALIBRATION
from engine.fpindex import FingerprintIndex
from workers.settings import Settings

MATCH_FIELDS = {"track_id", "title", "artist", "path", "offset", "score", "confidence", "verified", "dense_verified"}


@pytest.fixture
def env(tmp_path: Path, pg_dsn: str) -> dict[str, str]:
    return {"MIXWITH_HOME": str(tmp_path / "home"), "DATABASE_URL": pg_dsn, "MIXWITH_PROCESSES": "1",
            "MIXWITH_LOG_LEVEL": "WARNING"}


def _run(env: dict[str, str], *args: str) -> dict:
    res = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _memo(track: Path, out: Path, *, start_s: float, seconds: float, seed: int) -> Path:
    """A phone memo of part of ``track``: room, crowd at 10 dB, phone band, AAC 64 kbps."""
    y, sr = sf.read(track, dtype="float32")
    clip = y[int(start_s * sr) : int((start_s + seconds) * sr)]
    memo = phone_memo(clip, sr=sr, rng=np.random.default_rng(seed), snr_db=10.0, rt60_s=0.4)
    return write_aac(memo, sr=sr, path=out, bitrate_kbps=64)


@pytest.fixture
def library(tmp_path: Path, write_track) -> tuple[Path, list[Path], Path]:
    """Three catalog tracks in a folder, and one track kept outside the catalog."""
    lib = tmp_path / "lib"
    styles = [("house", 124, Key(9, "minor")), ("techno", 132, Key(4, "minor")), ("disco", 116, Key(0, "major"))]
    files = [write_track(f"Artist {i} - Song {i}.wav", style=st, bpm=bpm, key=k, seed=10 + i, duration_s=24.0, folder=lib)
             for i, (st, bpm, k) in enumerate(styles)]
    outside = write_track("outside.wav", style="trance", bpm=138, key=Key(7, "major"), seed=99, duration_s=24.0,
                          folder=tmp_path / "elsewhere")
    return lib, files, outside


def test_ingest_identify_remove_end_to_end(pool, env: dict[str, str], library, tmp_path: Path) -> None:
    """`catalog add` fingerprints; `identify --json` names the track in a memo, not an outsider; removal unindexes."""
    lib, files, outside = library
    added = _run(env, "catalog", "add", str(lib), "--json")
    ids = {Path(a["path"]).name: a["track_id"] for a in added["added"]}
    assert sorted(added["fingerprinted"]) == sorted(ids.values())

    memo = _memo(files[1], tmp_path / "memo.m4a", start_s=6.0, seconds=8.0, seed=1)
    out = _run(env, "identify", str(memo), "--json")
    assert out["match"] is not None and MATCH_FIELDS <= set(out["match"])
    assert out["match"]["track_id"] == ids[files[1].name]
    assert out["match"]["title"] == "Song 1" and out["match"]["artist"] == "Artist 1"
    assert 0.5 <= out["match"]["confidence"] <= 1.0
    assert out["candidates"][0]["track_id"] == out["match"]["track_id"]

    stranger = _memo(outside, tmp_path / "stranger.m4a", start_s=6.0, seconds=8.0, seed=2)
    assert _run(env, "identify", str(stranger), "--json")["match"] is None

    _run(env, "catalog", "remove", str(ids[files[1].name]), "--json")
    after = _run(env, "identify", str(memo), "--json")
    assert after["match"] is None or after["match"]["track_id"] != ids[files[1].name]


def test_index_version_is_registered(pool, env: dict[str, str], library, pg_dsn: str) -> None:
    """The fingerprint index's version and size are recorded in model_versions, and it lives in the data home."""
    lib, _files, _ = library
    _run(env, "catalog", "add", str(lib), "--json")
    index = FingerprintIndex.open(Path(env["MIXWITH_HOME"]) / "fingerprints")

    async def fetch() -> models_q.ModelVersion | None:
        conn = await asyncpg.connect(pg_dsn)
        try:
            return await models_q.active(conn, "fingerprints")
        finally:
            await conn.close()

    active = asyncio.run(fetch())
    assert active is not None and active.version == str(index.version)
    assert active.artifact_path == str(index.path)
    metrics = json.loads(active.metrics) if isinstance(active.metrics, str) else active.metrics
    assert metrics["n_tracks"] == 3 and metrics["bytes"] > 0


def test_recommend_says_what_it_identified(pool, env: dict[str, str], library, tmp_path: Path) -> None:
    """`recommend` on a memo of a catalog track reports the match; on an unknown clip, it falls back to the audio."""
    lib, files, outside = library
    added = _run(env, "catalog", "add", str(lib), "--json")
    ids = {Path(a["path"]).name: a["track_id"] for a in added["added"]}
    memo = _memo(files[0], tmp_path / "memo.m4a", start_s=4.0, seconds=10.0, seed=3)
    out = _run(env, "recommend", str(memo), "--json", "-n", "2")
    assert out["query"]["identified"]["track_id"] == ids[files[0].name]
    assert out["query"]["track_id"] == ids[files[0].name]
    assert any("identified as" in n for n in out["notes"])

    stranger = _memo(outside, tmp_path / "stranger.m4a", start_s=4.0, seconds=10.0, seed=4)
    out = _run(env, "recommend", str(stranger), "--json", "-n", "2")
    assert out["query"]["identified"] is None
    assert "bpm" in out["query"] and out["results"]
    assert any("not in the catalog" in n for n in out["notes"])


def test_identify_missing_file_is_one_sentence(env: dict[str, str], tmp_path: Path) -> None:
    """`identify` on a missing file exits 1 with one line."""
    res = CliRunner().invoke(cli, ["identify", str(tmp_path / "nope.m4a")], env=env)
    assert res.exit_code == 1 and "no such file" in res.stderr


def test_settings_read_identification_keys(tmp_path: Path) -> None:
    """The index directory and acceptance threshold come from the environment."""
    s = Settings.from_env({"MIXWITH_HOME": str(tmp_path), "MIXWITH_FP_INDEX_DIR": str(tmp_path / "fp"),
                           "MIXWITH_IDENTIFY_ACCEPT_CONFIDENCE": "0.9"})
    assert s.fingerprint_dir == tmp_path / "fp" and s.identify.accept_confidence == 0.9
    assert Settings.from_env({"MIXWITH_HOME": str(tmp_path)}).fingerprint_dir == tmp_path / "fingerprints"


def test_default_threshold_is_the_calibrations(tmp_path: Path) -> None:
    """Unset, the acceptance threshold is the shipped calibration's."""
    s = Settings.from_env({"MIXWITH_HOME": str(tmp_path)})
    assert s.identify.accept_confidence == DEFAULT_CALIBRATION.accept_confidence


def test_old_index_is_refused_until_reindexed(pool, env: dict[str, str], library, tmp_path: Path) -> None:
    """An index of an older format makes `identify` ask for a re-index; `catalog reindex` rebuilds it."""
    lib, files, _ = library
    added = _run(env, "catalog", "add", str(lib), "--json")
    ids = {Path(a["path"]).name: a["track_id"] for a in added["added"]}
    root = Path(env["MIXWITH_HOME"]) / "fingerprints"
    current = root / "versions" / f"v{int((root / 'CURRENT').read_text()):08d}.json"
    current.write_text(json.dumps(json.loads(current.read_text()) | {"format": "mixwith-fpindex-1"}))
    memo = _memo(files[2], tmp_path / "memo.m4a", start_s=5.0, seconds=8.0, seed=4)

    refused = CliRunner().invoke(cli, ["identify", str(memo), "--json"], env=env)
    assert refused.exit_code != 0 and "catalog reindex" in refused.output

    before = int((root / "CURRENT").read_text())
    rebuilt = _run(env, "catalog", "reindex", "--json")
    assert sorted(rebuilt["fingerprinted"]) == sorted(ids.values())
    assert rebuilt["index_version"] > before  # a rebuild gets a new version number, not a reused one
    out = _run(env, "identify", str(memo), "--json")
    assert out["candidates"][0]["track_id"] == ids[files[2].name]


def test_catalog_add_after_an_upgrade_rebuilds_stale_indexes(pool, env: dict[str, str], library, tmp_path: Path) -> None:
    """After an upgrade (old fingerprint format, new embedder with no index), `catalog add` alone repairs both."""
    lib, files, _ = library
    added = _run(env, "catalog", "add", str(lib), "--json")
    ids = {Path(a["path"]).name: a["track_id"] for a in added["added"]}
    home = Path(env["MIXWITH_HOME"])
    root = home / "fingerprints"
    current = root / "versions" / f"v{int((root / 'CURRENT').read_text()):08d}.json"
    current.write_text(json.dumps(json.loads(current.read_text()) | {"format": "mixwith-fpindex-1"}))
    shutil.rmtree(Settings.from_env({"MIXWITH_HOME": str(home)}).index_dir)

    again = _run(env, "catalog", "add", str(lib), "--json")
    assert again["added"] == [] and again["already_present"] == len(files)
    assert sorted(again["fingerprinted"]) == sorted(ids.values())
    assert again["sounds_like_indexed"] == len(files)
    memo = _memo(files[0], tmp_path / "memo.m4a", start_s=4.0, seconds=8.0, seed=5)
    assert _run(env, "identify", str(memo), "--json")["match"]["track_id"] == ids[files[0].name]

    unchanged = _run(env, "catalog", "add", str(lib), "--json")
    assert unchanged["fingerprinted"] == [] and unchanged["sounds_like_indexed"] == 0
