"""Catalog ingest: good files stored, bad ones reported with reasons, re-adding is a no-op."""

from __future__ import annotations

import subprocess
from pathlib import Path

import asyncpg
import numpy as np
import pytest
import soundfile as sf

from db.queries.tracks import list_tracks
from engine.camelot import Key
from workers.catalog import add_paths, discover, read_tags
from workers.settings import Settings


def _mp3(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), "-b:a", "128k", str(dst)], check=True)
    return dst


@pytest.fixture
def library(tmp_path: Path, write_track) -> Path:
    """A folder with two good tracks and every kind of bad file."""
    lib = tmp_path / "Music"
    write_track("Mara Voss - Night Drive.wav", bpm=124, key=Key(9, "minor"), folder=lib / "house")
    good_mp3 = _mp3(write_track("tmp.wav", style="drum & bass", bpm=172, key=Key(2, "major")), lib / "dnb" / "roller.mp3")
    (lib / "bad").mkdir()
    (lib / "bad" / "empty.mp3").write_bytes(b"")
    data = good_mp3.read_bytes()
    (lib / "bad" / "truncated.mp3").write_bytes(data[: len(data) // 3])
    (lib / "bad" / "notes.mp3").write_text("this is a shopping list, not a song\n" * 20)
    sf.write(lib / "bad" / "silence.wav", np.zeros(22050 * 5, dtype=np.float32), 22050)
    sf.write(lib / "bad" / "blip.wav", (0.5 * np.sin(np.arange(6615) * 0.1)).astype(np.float32), 22050)
    (lib / "cover.jpg").write_bytes(b"\xff\xd8\xff")  # not audio by extension: ignored in folders
    return lib


async def test_good_files_stored_bad_files_reported(pool: asyncpg.Pool, settings: Settings, library: Path) -> None:
    """Two tracks land in the catalog; each bad file comes back with its own reason."""
    report = await add_paths(pool, [library], audio=settings.audio)
    assert len(report.added) == 2
    reasons = {Path(f.path).name: f.reason for f in report.failed}
    assert set(reasons) == {"empty.mp3", "truncated.mp3", "notes.mp3", "silence.wav", "blip.wav"}
    assert "empty" in reasons["empty.mp3"]
    assert "truncated" in reasons["truncated.mp3"]
    assert "not audio" in reasons["notes.mp3"]
    assert "silent" in reasons["silence.wav"]
    assert "too short" in reasons["blip.wav"]
    async with pool.acquire() as conn:
        rows = await list_tracks(conn)
    by_title = {r.title: r for r in rows}
    assert by_title["Night Drive"].artist == "Mara Voss"  # from the file name, no tags
    assert by_title["Night Drive"].camelot is not None
    assert by_title["roller"].bpm is not None


async def test_readding_changes_nothing(pool: asyncpg.Pool, settings: Settings, library: Path) -> None:
    """A second add of the same folder stores nothing new and rewrites nothing."""
    first = await add_paths(pool, [library], audio=settings.audio)
    async with pool.acquire() as conn:
        before = [(r.id, r.title, r.bpm) for r in await list_tracks(conn)]
    second = await add_paths(pool, [library], audio=settings.audio)
    async with pool.acquire() as conn:
        after = [(r.id, r.title, r.bpm) for r in await list_tracks(conn)]
    assert second.added == ()
    assert second.already_present == len(first.added)
    assert before == after


async def test_same_audio_under_two_names_is_one_track(pool: asyncpg.Pool, settings: Settings, tmp_path: Path, write_track) -> None:
    """Duplicates by content are stored once."""
    a = write_track("a.wav")
    b = tmp_path / "copy of a.wav"
    b.write_bytes(a.read_bytes())
    report = await add_paths(pool, [a, b], audio=settings.audio)
    assert len(report.added) == 1 and report.already_present == 1


def test_discover_reports_missing_paths(tmp_path: Path) -> None:
    """A path that does not exist is reported, not fatal."""
    files, missing = discover([tmp_path / "nope"])
    assert files == [] and missing[0].reason == "no such file or folder"


def test_tags_win_over_file_name(tmp_path: Path, write_track) -> None:
    """Title and artist come from tags when present."""
    from mutagen.flac import FLAC

    p = write_track("01 whatever.flac")
    f = FLAC(p)
    f["title"], f["artist"] = "Real Title", "Real Artist"
    f.save()
    assert read_tags(p)["title"] == "Real Title" and read_tags(p)["artist"] == "Real Artist"


def test_one_decode_gives_what_three_decodes_gave(write_track, tmp_path: Path) -> None:
    """Fingerprints and sound vectors taken from the analysis' decode match those of decoding the file again."""
    from workers.catalog import FileWork, process_file
    from workers.embedding import embed_file, open_embedder
    from workers.identify import fingerprint_file
    from workers.settings import AudioSettings, EmbedSettings

    path = _mp3(write_track("a.wav", style="techno", bpm=130, key=Key(4, "minor"), duration_s=20.0, seed=7),
                tmp_path / "a.mp3")
    audio, embed = AudioSettings(), EmbedSettings(threads=1)
    once = process_file(str(path), audio, FileWork(fingerprint=True, embed=embed))
    assert once.error is None and once.fingerprint_error is None and once.embed_error is None
    assert once.analysis == process_file(str(path), audio).analysis

    again = fingerprint_file(path, audio)
    assert once.fingerprints is not None and abs(once.fingerprints.duration_s - again.duration_s) < 0.05
    shared = np.isin(again.hashes, once.fingerprints.hashes).mean()
    assert shared > 0.95, shared  # two resamplers, the same peaks

    embedder, version = open_embedder(embed)
    ref = embed_file(path, embedder=embedder, model_version=version)
    assert once.embedding is not None and once.embedding.model_version == version
    assert once.embedding.windows.shape == ref.windows.shape
    assert float(once.embedding.vector @ ref.vector) > 0.99
