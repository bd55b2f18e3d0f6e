"""Catalog candidate lookups: tempo window and harmonic neighbours."""

from __future__ import annotations

import uuid

from db.queries import tracks as tracks_q
from engine.camelot import parse_key


async def _add(conn, title: str, *, bpm: float, camelot: str = "8A", energy: int = 5) -> int:
    key = parse_key(camelot)
    analysis = {
        "duration": 300.0, "version": "test", "bpm": bpm, "bpm_alternates": [], "bpm_confidence": 1.0,
        "key": key.name, "camelot": key.camelot, "open_key": key.open_key, "key_confidence": 1.0,
        "key_changes": False, "energy": energy, "loudness_lufs": -9.0,
    }
    tid, _ = await tracks_q.add_analyzed_track(
        conn, content_hash=uuid.uuid4().hex, title=title, artist="A", album="", genre="",
        path=f"/music/{title}.wav", source="library", analysis=analysis,
    )
    return tid


async def test_tempo_window_cut_keeps_the_closest_tempi(pool):
    """With more matches than the limit, the tracks nearest the query tempo are kept, not the oldest."""
    async with pool.acquire() as conn:
        far = [await _add(conn, f"far{i}", bpm=130.0 + i) for i in range(3)]  # added first
        near = await _add(conn, "near", bpm=124.5)
        half = await _add(conn, "half", bpm=62.0)  # exactly half of 124
        await _add(conn, "out", bpm=150.0)
        ranges = [(124 * 0.88, 124 * 1.12), (62 * 0.88, 62 * 1.12), (248 * 0.88, 248 * 1.12)]
        rows = await tracks_q.candidates_by_tempo(conn, bpm_ranges=ranges, limit=2)
        everything = await tracks_q.candidates_by_tempo(conn, bpm_ranges=ranges)
    assert [r.id for r in rows] == [half, near]
    assert {r.id for r in everything} == {half, near, *far}


async def test_key_neighbours_only_in_the_given_keys_closest_energy_first(pool):
    """Harmonic neighbours come from the given Camelot keys only, nearest energy first, any tempo."""
    async with pool.acquire() as conn:
        loud = await _add(conn, "loud", bpm=174.0, camelot="9A", energy=9)
        calm = await _add(conn, "calm", bpm=90.0, camelot="8A", energy=4)
        await _add(conn, "clash", bpm=124.0, camelot="3B", energy=4)
        rows = await tracks_q.candidates_by_key(conn, camelots=["8A", "9A"], energy=5)
        unordered = await tracks_q.candidates_by_key(conn, camelots=["9A"])
    assert [r.id for r in rows] == [calm, loud]
    assert [r.id for r in unordered] == [loud]
