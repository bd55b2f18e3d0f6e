"""The `mixwith` command: JSON contracts other tools read, and the demo end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from engine.camelot import Key

ANALYSIS_FIELDS = {"duration", "bpm", "bpm_alternates", "key", "camelot", "energy"}
RESULT_FIELDS = {"rank", "track_id", "title", "artist", "path", "bpm", "key", "camelot", "score", "reasons"}


@pytest.fixture
def env(tmp_path: Path, pg_dsn: str) -> dict[str, str]:
    return {"MIXWITH_HOME": str(tmp_path / "home"), "DATABASE_URL": pg_dsn, "MIXWITH_PROCESSES": "1",
            "MIXWITH_LOG_LEVEL": "WARNING"}


def _run(env: dict[str, str], *args: str) -> dict | list:
    res = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_analyze_json_contract(env: dict[str, str], write_track) -> None:
    """`analyze --json` gives duration, bpm, alternates, key name and Camelot code."""
    out = _run(env, "analyze", str(write_track(bpm=124, key=Key(9, "minor"))), "--json")
    assert ANALYSIS_FIELDS <= set(out)
    assert out["key"].endswith(("major", "minor")) and out["camelot"][-1] in "AB"
    assert isinstance(out["bpm_alternates"], list)


def test_analyze_bad_file_is_one_sentence(env: dict[str, str], tmp_path: Path) -> None:
    """A non-audio file exits 1 with the reason, not a traceback."""
    bad = tmp_path / "readme.mp3"
    bad.write_text("hello")
    res = CliRunner().invoke(cli, ["analyze", str(bad)], env=env)
    assert res.exit_code == 1
    assert "not audio" in res.stderr and "Traceback" not in res.stderr


def test_training_refuses_to_overwrite_a_version(env: dict[str, str], tmp_path: Path) -> None:
    """New weights under a taken version name would silently reuse its index: refused in one sentence."""
    taken = Path(env["MIXWITH_HOME"]) / "models" / "mine.pt"
    taken.parent.mkdir(parents=True)
    taken.write_bytes(b"weights")
    manifest = tmp_path / "manifest.tsv"
    manifest.write_text("")
    res = CliRunner().invoke(cli, ["train", "embedder", "--manifest", str(manifest), "--version", "mine", "--no-resume"], env=env)
    assert res.exit_code == 1
    assert "version 'mine' is taken" in res.stderr and "Traceback" not in res.stderr
    assert taken.read_bytes() == b"weights"


def test_training_with_an_extra_manifest_records_it(pool, env: dict[str, str], tmp_path: Path, write_track) -> None:
    """`--extra-manifest` (repeatable) trains on those tracks too and names them in the weights' sidecar."""
    def manifest(name: str, package: str, n: int) -> Path:
        rows = [f"{name}{i}\t{write_track(f'{name}{i}.wav', bpm=120 + 3 * i, key=Key(i, 'minor'), seed=i, duration_s=6.0)}"
                f"\t{package}\t6" for i in range(n)]
        path = tmp_path / f"{name}.tsv"
        path.write_text("\n".join(rows) + "\n")
        return path

    main, extra = manifest("d", "pkg-a", 3), manifest("x", "pkg-x", 2)
    out = _run(env, "train", "embedder", "--manifest", str(main), "--extra-manifest", str(extra), "--steps", "1",
               "--batch", "2", "--holdout", "0.34", "--version", "tiny", "--json")
    sidecar = json.loads(Path(out["weights"] + ".json").read_text())
    assert sidecar["trained_on"]["tracks"] == 2 + 2 and sidecar["trained_on"]["held_out_ids"][0].startswith("d")
    assert [x["manifest"] for x in sidecar["trained_on"]["extra"]] == [str(extra)]
    assert sidecar["train_config"]["extra_manifests"] == [str(extra)]


def test_catalog_add_then_recommend_json_contract(pool, env: dict[str, str], tmp_path: Path, write_track) -> None:
    """After `catalog add`, `recommend --json` returns the query analysis and ranked results with reasons."""
    lib = tmp_path / "lib"
    for i, (bpm, key) in enumerate([(124, Key(9, "minor")), (125, Key(4, "minor")), (126, Key(0, "major"))]):
        write_track(f"t{i}.wav", bpm=bpm, key=key, seed=i, folder=lib)
    added = _run(env, "catalog", "add", str(lib), "--json")
    assert len(added["added"]) == 3 and added["failed"] == []
    out = _run(env, "recommend", str(write_track("q.wav", bpm=124, key=Key(9, "minor"), seed=9)), "--json", "-n", "2")
    assert ANALYSIS_FIELDS <= set(out["query"])
    assert [r["rank"] for r in out["results"]] == [1, 2]
    assert all(RESULT_FIELDS <= set(r) for r in out["results"])
    assert out["results"][0]["score"] >= out["results"][1]["score"]
    listed = _run(env, "catalog", "list", "--json")
    assert len(listed) == 3
    removed = _run(env, "catalog", "remove", str(listed[0]["track_id"]), "--json")
    assert removed["removed"] == [listed[0]["track_id"]]


def test_demo_runs_small(pool, env: dict[str, str]) -> None:
    """`mixwith demo` builds a small catalog and answers the memo with a ranked list."""
    out = _run(env, "demo", "--tracks", "6", "--seconds", "10", "--json")
    assert len(out["ingest"]["added"]) == 6
    assert out["memo"]["path"].endswith(".m4a")
    assert len(out["results"]) >= 5
