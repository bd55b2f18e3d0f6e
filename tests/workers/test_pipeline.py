"""Ranking the catalog for a query: where the candidates come from."""

from __future__ import annotations

import dataclasses
import uuid

from db.queries import tracks as tracks_q
from engine.camelot import parse_key
from workers.messages import MixOptions
from workers.pipeline import Query, rank_catalog


async def _add(conn, title: str, *, bpm: float, camelot: str) -> int:
    key = parse_key(camelot)
    analysis = {
        "duration": 300.0, "version": "test", "bpm": bpm, "bpm_alternates": [], "bpm_confidence": 1.0,
        "key": key.name, "camelot": key.camelot, "open_key": key.open_key, "key_confidence": 1.0,
        "key_changes": False, "energy": 5, "loudness_lufs": -9.0,
    }
    tid, _ = await tracks_q.add_analyzed_track(
        conn, content_hash=uuid.uuid4().hex, title=title, artist=title, album="", genre="",
        path=f"/music/{title}.wav", source="library", analysis=analysis,
    )
    return tid


async def test_a_beatless_clip_gets_key_compatible_tracks_from_a_big_catalog(pool, settings):
    """No tempo in the clip: candidates are its harmonic neighbours, not the first tracks the catalog lists."""
    async with pool.acquire() as conn:
        for i in range(30):  # older tracks, all clashing with 8A
            await _add(conn, f"clash{i}", bpm=120.0 + i, camelot="3B")
        fitting = {await _add(conn, f"fit{i}", bpm=90.0 + 5 * i, camelot=("8A", "9A", "7A", "8B")[i % 4]) for i in range(12)}
        small = dataclasses.replace(settings, rank=dataclasses.replace(settings.rank, max_candidates=12))
        query = Query(analysis={"bpm": 0.0, "camelot": "8A", "key": "A minor", "energy": 5})
        ranked = await rank_catalog(conn, query, settings=small, options=MixOptions(count=10))
    assert len(ranked) >= 10
    assert all(row.id in fitting for _, row in ranked[:10])
    assert not any("tempo clash" in reason for s, _ in ranked for reason in s.reasons)


async def test_an_identified_track_gets_as_many_others_as_asked(pool, settings):
    """Asking for 3 mixes with a catalog track gives 3 other tracks, even when its tempo window holds only 2."""
    async with pool.acquire() as conn:
        own = await _add(conn, "own", bpm=124.0, camelot="8A")
        near = {await _add(conn, f"near{i}", bpm=125.0 + i, camelot="8A") for i in range(2)}
        far = {await _add(conn, f"far{i}", bpm=90.0 + i, camelot="9A") for i in range(3)}
        query = Query(analysis={"bpm": 124.0, "camelot": "8A", "key": "A minor", "energy": 5}, track_id=own)
        ranked = await rank_catalog(conn, query, settings=settings, options=MixOptions(count=3))
    ids = [row.id for _, row in ranked]
    assert own not in ids and len(ids) >= 3
    assert set(ids[:2]) == near and ids[2] in far
