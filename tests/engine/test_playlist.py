"""Playlist export: M3U and rekordbox XML that DJ software (and our importer) reads back."""

from __future__ import annotations

import pytest

from engine.errors import ParameterError
from engine.playlist import PlaylistTrack, file_location, to_m3u, to_rekordbox_xml
from workers.mixes import parse_m3u_text, parse_rekordbox_text

SET = [
    PlaylistTrack("Rain", "Kerri Chandler", "/music/Kerri Chandler - Rain.flac", 412.4, 122.0, "Am"),
    PlaylistTrack("Missing One", "Nobody", None),
    PlaylistTrack("Shades\nof Jae", "Moodymann", "/music/Shades of Jae.mp3", 388.0, 118.0, "8A"),
]


def test_m3u_lists_tracks_in_order():
    """Extended M3U: header, one #EXTINF per track with a path, missing ones as comments."""
    text = to_m3u(SET, name="Friday")
    lines = text.splitlines()
    assert lines[:4] == ["#EXTM3U", "#PLAYLIST:Friday", "#EXTINF:412,Kerri Chandler - Rain", "/music/Kerri Chandler - Rain.flac"]
    assert "# missing: Nobody - Missing One" in lines
    assert "#EXTINF:388,Moodymann - Shades of Jae" in lines  # a newline cannot split an entry


def test_m3u_round_trips_through_the_importer():
    """Our own M3U parser reads the export back as the same set."""
    parsed = parse_m3u_text(to_m3u(SET), source="set.m3u8", mix_id="set")
    assert [(t.artist, t.title) for t in parsed.mixes[0].tracks] == [("Kerri Chandler", "Rain"), ("Moodymann", "Shades of Jae")]
    assert parsed.errors == ()


def test_rekordbox_xml_round_trips():
    """rekordbox XML carries BPM, key and encoded locations; the importer reads it back."""
    xml = to_rekordbox_xml(SET, name="Friday")
    assert 'Location="file://localhost/music/Kerri%20Chandler%20-%20Rain.flac"' in xml
    assert 'AverageBpm="122.00"' in xml and 'Tonality="Am"' in xml
    parsed = parse_rekordbox_text(xml, source="x.xml")
    mix = parsed.mixes[0]
    assert mix.external_id == "Friday"
    assert [(t.title, t.path, t.bpm) for t in mix.tracks] == [
        ("Rain", "/music/Kerri Chandler - Rain.flac", 122.0),
        ("Shades of Jae", "/music/Shades of Jae.mp3", 118.0),
    ]


def test_file_location_needs_absolute_path():
    """rekordbox cannot resolve relative paths."""
    with pytest.raises(ParameterError):
        file_location("music/a.mp3")
