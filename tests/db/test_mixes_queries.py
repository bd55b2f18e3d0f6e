"""Importing mix histories into PostgreSQL and reading what CF trains on."""

from __future__ import annotations

import uuid
from pathlib import Path

from db.queries import mixes as mixes_q
from db.queries import tracks as tracks_q
from workers.mixes import import_files

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _analysis(bpm: float) -> dict:
    return {
        "duration": 300.0, "version": "test", "bpm": bpm, "bpm_alternates": [], "bpm_confidence": 1.0,
        "key": "A minor", "camelot": "8A", "open_key": "1m", "key_confidence": 1.0, "key_changes": False,
        "energy": 5, "loudness_lufs": -9.0,
    }


async def _add(conn, title: str, artist: str, bpm: float = 124.0) -> int:
    tid, _ = await tracks_q.add_analyzed_track(
        conn, content_hash=uuid.uuid4().hex, title=title, artist=artist, album="", genre="",
        path=f"/music/{title}.wav", source="library", analysis=_analysis(bpm),
    )
    return tid


async def test_import_examples_matches_and_creates_stubs(pool):
    """All four example formats import; known tracks match, the rest become stubs; problems are counted."""
    async with pool.acquire() as conn:
        rain = await _add(conn, "Rain", "Kerri Chandler")
        await _add(conn, "Shades Of Jae", "MOODYMANN")
        await _add(conn, "The Belsl", "Jeff Mills")  # a typo fuzzy matching forgives
    files = sorted(EXAMPLES.iterdir())
    report = await import_files(pool, files)
    assert report.files == 4 and report.mixes == 4 and report.relations == 2
    assert report.entries == 4 + 3 + 4 + 3
    assert report.matched_by_name >= 3 and report.matched_fuzzy == 2  # The Bells, in the CSV and in rekordbox
    assert len(report.errors) == 5  # 2 CSV rows, 1 sample row, 1 M3U duration, 1 rekordbox key
    async with pool.acquire() as conn:
        stats = await mixes_q.stats(conn)
        seqs = await mixes_q.mix_sequences(conn)
        stub = await conn.fetchrow("SELECT content_hash, source FROM tracks WHERE title = 'Minus'")
    assert stats.mixes == 4 and stats.relations == 2 and stats.stubs == report.stubs_created
    assert stub["content_hash"] is None and stub["source"] == "mix-history"
    assert any(s[0] == rain for s in seqs)  # warm-up and the M3U set both open with Rain


async def test_reimport_replaces_instead_of_doubling(pool):
    """Importing the same file twice keeps one copy of each mix and reuses the stubs."""
    first = await import_files(pool, [EXAMPLES / "mixes.csv"])
    second = await import_files(pool, [EXAMPLES / "mixes.csv"])
    async with pool.acquire() as conn:
        stats = await mixes_q.stats(conn)
    assert first.stubs_created == 7 and second.stubs_created == 0
    assert stats.mixes == 2 and stats.entries == 7


async def test_bad_file_is_reported_not_fatal(pool, tmp_path):
    """A file we cannot read is one error line; the other files still import."""
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    report = await import_files(pool, [bad, EXAMPLES / "set.m3u8"])
    assert report.mixes == 1 and any("unsupported" in e for e in report.errors)


async def test_coplay_counts_and_feedback_pairs(pool):
    """Co-play counts mixes with both tracks; feedback pairs sum reactions per (query, track)."""
    await import_files(pool, [EXAMPLES / "mixes.csv", EXAMPLES / "set.m3u8"])
    async with pool.acquire() as conn:
        ids = {r["title"]: r["id"] for r in await conn.fetch("SELECT id, title FROM tracks")}
        counts = await mixes_q.coplay_counts(conn, ids["Rain"], [ids["Can You Feel It"], ids["Minus"]])
        req = uuid.uuid4()
        await conn.execute(
            "INSERT INTO requests (id, platform, input_kind, input_ref, identified_track_id) VALUES ($1, 'cli', 'file', 'x', $2)",
            req, ids["Rain"],
        )
        for user, value in (("u1", 1), ("u2", 1), ("u3", -1)):
            await conn.execute(
                "INSERT INTO feedback (request_id, track_id, user_id, platform, reaction, value) VALUES ($1, $2, $3, 'cli', 'x', $4)",
                req, ids["Minus"], user, value,
            )
        pairs = await mixes_q.feedback_pairs(conn)
    assert counts == {ids["Can You Feel It"]: 2}
    assert pairs == [(ids["Rain"], ids["Minus"], 1)]


async def test_train_als_from_history_registers_a_model(pool, tmp_path):
    """Training on imported mixes saves a versioned model, activates it and serves neighbours."""
    from engine import als
    from workers.mixes import coplay_signals, load_active_model, train_from_history

    await import_files(pool, sorted(EXAMPLES.iterdir()))
    report = await train_from_history(pool, models_dir=tmp_path, params=als.AlsParams(factors=4, iterations=3))
    assert Path(report.path).is_file() and report.view == "item" and report.relations == 2
    async with pool.acquire() as conn:
        model = await load_active_model(conn)
        rain = await conn.fetchval("SELECT id FROM tracks WHERE title = 'Rain'")
        coplay, counts = await coplay_signals(conn, model, rain, n=5)
    assert model is not None and model.version == report.version
    assert len(coplay) == 5 and max(coplay.values()) == 1.0
    assert sum(counts.values()) >= 1  # Rain shares mixes with some of its neighbours


async def test_train_without_history_is_a_user_error(pool, tmp_path):
    """No mixes yet: a one-sentence error, not a crash."""
    import pytest

    from workers.errors import InputError
    from workers.mixes import train_from_history

    with pytest.raises(InputError, match="no mix history"):
        await train_from_history(pool, models_dir=tmp_path)


async def test_rank_rows_adds_cf_candidates_and_reasons(pool, tmp_path):
    """ALS neighbours outside the given rows join the candidates, with co-play reasons and sources."""
    from engine import als
    from engine.camelot import parse_key
    from engine.rank import TrackFeatures, Weights
    from workers.messages import MixOptions
    from workers.mixes import load_active_model, rank_rows, train_from_history
    from workers.settings import MixSettings

    async with pool.acquire() as conn:
        q = await _add(conn, "Rain", "Kerri Chandler")
        partner = await _add(conn, "Can You Feel It", "Larry Heard", bpm=123.0)
        other = await _add(conn, "Elsewhere", "Nobody", bpm=124.0)
    await import_files(pool, [EXAMPLES / "mixes.csv", EXAMPLES / "set.m3u8"])
    await train_from_history(pool, models_dir=tmp_path, params=als.AlsParams(factors=4, iterations=3))
    async with pool.acquire() as conn:
        model = await load_active_model(conn)
        rows = [r for r in await tracks_q.list_tracks(conn, analysed_only=True) if r.id == other]
        out = await rank_rows(
            conn, TrackFeatures(q, 124.0, parse_key("8A"), 5, "Kerri Chandler"), rows,
            weights=Weights(), options=MixOptions(count=5), mix_settings=MixSettings(), model=model,
        )
    by_id = {s.track_id: s for s, _ in out}
    assert set(by_id) == {partner, other}  # stubs have no analysis and are left out
    assert "co-play" in by_id[partner].sources and "played together in 2 mixes" in by_id[partner].reasons
    assert by_id[other].sources == ("harmonic",)
