"""A track without a beat (bpm 0.0 from the engine) reads "no clear tempo" everywhere, never "0.0 BPM"."""

from __future__ import annotations

from pathlib import Path

import soundfile as sf
from click.testing import CliRunner

from bot.cli import cli
from bot.core import QuerySummary, Reply, TrackLine
from engine.camelot import Key
from engine.synth import render_drone


def _reply(bpm: float) -> Reply:
    q = QuerySummary(title="Drone", artist="Someone", identified=False, bpm=bpm, key="A minor", camelot="8A", energy=2)
    t = TrackLine(rank=1, title="Pad", artist="Other", bpm=bpm, key="A minor", camelot="8A", energy=2, score=0.5,
                  compat="good", reasons=())
    return Reply(request_id="r-1", query=q, tracks=(t,))


def test_slack_blocks_say_no_clear_tempo() -> None:
    from bot.slack.blocks import reply_blocks

    text = str(reply_blocks(_reply(0.0)))
    assert "no clear tempo" in text and "0 BPM" not in text and "0.0 BPM" not in text
    assert "124.0 BPM" in str(reply_blocks(_reply(124.0)))


def test_discord_embed_says_no_clear_tempo() -> None:
    from bot.discord.mixwith._render import _query_line, track_lines

    _, facts = _query_line(_reply(0.0))
    lines = "\n".join(track_lines(_reply(0.0)))
    assert "no clear tempo" in facts and "no clear tempo" in lines and " 0 BPM" not in lines


def test_cli_analyze_says_no_clear_tempo(tmp_path: Path) -> None:
    path = tmp_path / "drone.wav"
    sf.write(path, render_drone(Key(9, "minor"), duration_s=12.0), 22050)
    env = {"MIXWITH_HOME": str(tmp_path / "home"), "MIXWITH_LOG_LEVEL": "WARNING"}
    res = CliRunner().invoke(cli, ["analyze", str(path)], env=env, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "no clear tempo" in res.stdout and "0.0 BPM" not in res.stdout and "A minor" in res.stdout


def test_terminal_query_line_says_no_clear_tempo() -> None:
    from bot.terminal import _fmt_query

    assert _fmt_query({"bpm": 0.0, "key": "A minor", "camelot": "8A", "energy": 2}).startswith("no clear tempo")
    assert _fmt_query({"bpm": 124.0, "key": "A minor", "camelot": "8A", "energy": 2}).startswith("124.0 BPM")
