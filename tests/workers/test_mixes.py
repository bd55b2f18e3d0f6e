"""Mix-history parsing (every format, broken rows reported) and catalog matching."""

from __future__ import annotations

from pathlib import Path

import pytest

from db.queries.mixes import CatalogEntry
from workers.errors import InputError
from workers.mixes import CatalogMatcher, TrackRef, parse_csv_text, parse_file, parse_m3u_text, parse_rekordbox_text

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_example_tracklist_csv():
    """The shipped CSV gives two mixes in position order and reports its two broken rows."""
    pf = parse_file(EXAMPLES / "mixes.csv")
    assert pf.format == "tracklist-csv"
    mixes = {m.external_id: m for m in pf.mixes}
    assert [t.title for t in mixes["warmup-01"].tracks] == ["Rain", "Shades of Jae", "Falling Up (Carl Craig Remix)", "Can You Feel It"]
    assert mixes["warmup-01"].dj == "DJ Example" and mixes["peak-02"].title == "Peak time"
    assert [(e.line, e.reason) for e in pf.errors] == [(9, "position is not a number: 'not-a-number'"), (10, "no title")]


def test_example_sample_relations_csv():
    """The sample CSV gives who-samples-whom pairs and reports the row without a title."""
    pf = parse_file(EXAMPLES / "samples.csv")
    assert pf.format == "relations-csv"
    assert [(r.track.title, r.sampled.artist) for r in pf.relations] == [("One More Time", "Eddie Johns"), ("Shades of Jae", "Bill Withers")]
    assert len(pf.errors) == 1 and pf.errors[0].line == 4


def test_example_m3u8():
    """EXTINF labels and bare file names both give artist and title; a bad duration is reported, the entry kept."""
    pf = parse_file(EXAMPLES / "set.m3u8")
    tracks = pf.mixes[0].tracks
    assert pf.mixes[0].title == "Friday set"
    assert [(t.artist, t.title) for t in tracks][:3] == [
        ("Kerri Chandler", "Rain"), ("Larry Heard", "Can You Feel It"), ("Moodymann", "Shades of Jae")]
    assert tracks[0].duration_s == 412 and tracks[0].path == "/music/house/Kerri Chandler - Rain.flac"
    assert len(tracks) == 4 and "bad #EXTINF duration" in pf.errors[0].reason


def test_example_rekordbox_xml():
    """A rekordbox playlist becomes a mix; a dangling track key is reported."""
    pf = parse_file(EXAMPLES / "rekordbox.xml")
    mix = pf.mixes[0]
    assert mix.external_id == "Techno/Peak time"
    assert [(t.artist, t.bpm, t.key) for t in mix.tracks] == [("Jeff Mills", 138.0, "Fm"), ("Robert Hood", 136.0, "Cm"), ("Surgeon", 140.0, "Gm")]
    assert mix.tracks[0].path == "/Users/dj/Music/Jeff Mills - The Bells.mp3"
    assert "'999' is not in the collection" in pf.errors[0].reason


def test_csv_bad_ids_and_duplicate_positions_reported():
    """A malformed ISRC or a repeated position skips that row only; Spotify links are reduced to ids."""
    text = (
        "mix_id;position;artist;title;spotify_id;isrc\n"
        "m;1;A;One;https://open.spotify.com/track/4uLU6hMCjMI75M1A2tKUQC?si=x;\n"
        "m;2;B;Two;;NOT-AN-ISRC\n"
        "m;1;C;Three;;\n"
        "m;3;D;Four;;us-rc1-76-07839\n"
    )
    pf = parse_csv_text(text, source="t.csv")
    tracks = pf.mixes[0].tracks
    assert [t.title for t in tracks] == ["One", "Four"]
    assert tracks[0].spotify_id == "4uLU6hMCjMI75M1A2tKUQC" and tracks[1].isrc == "USRC17607839"
    assert sorted(e.line for e in pf.errors) == [3, 4]


def test_csv_without_needed_columns_is_an_input_error():
    """A CSV of neither layout names the columns it needs."""
    with pytest.raises(InputError, match="mix_id, position, artist, title"):
        parse_csv_text("foo,bar\n1,2\n", source="x.csv")


def test_not_xml_is_an_input_error():
    """Broken XML is reported as such."""
    with pytest.raises(InputError, match="not valid XML"):
        parse_rekordbox_text("<DJ_PLAYLISTS>", source="x.xml")


def test_other_xml_root_rejected():
    """XML that is not rekordbox's is refused."""
    with pytest.raises(InputError, match="not a rekordbox"):
        parse_rekordbox_text("<plist/>", source="x.xml")


def test_unknown_extension_and_size_limit(tmp_path):
    """Unsupported types and oversized files are refused before parsing."""
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(InputError, match="unsupported"):
        parse_file(tmp_path / "a.txt")
    big = tmp_path / "big.csv"
    big.write_text("mix_id,title\n" + "m,t\n" * 100)
    with pytest.raises(InputError, match="limit"):
        parse_file(big, max_bytes=100)


def test_m3u_windows_paths_and_file_urls():
    """Windows paths and file:// URLs without EXTINF still give artist and title."""
    pf = parse_m3u_text("C:\\Music\\01 - Artist - Song.mp3\nfile:///x/Other%20One%20-%20Tune.flac\n", source="s.m3u", mix_id="s")
    assert [(t.artist, t.title) for t in pf.mixes[0].tracks] == [("Artist", "Song"), ("Other One", "Tune")]


def test_empty_playlist_reported():
    """A playlist without entries is an error row, not a crash."""
    pf = parse_m3u_text("#EXTM3U\n", source="e.m3u", mix_id="e")
    assert pf.mixes == () and pf.errors[0].reason == "the playlist has no entries"


CATALOG = [
    CatalogEntry(1, "Kerri Chandler", "Rain", spotify_id="4uLU6hMCjMI75M1A2tKUQC"),
    CatalogEntry(2, "Moodymann", "Shades of Jae", isrc="USRC17607839"),
    CatalogEntry(3, "Larry Heard", "Can You Feel It"),
    CatalogEntry(4, "Theo Parrish", "Falling Up"),
]


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        (TrackRef("Whoever", "Whatever", spotify_id="4uLU6hMCjMI75M1A2tKUQC"), (1, "spotify_id")),
        (TrackRef("", "", isrc="usrc17607839"), (2, "isrc")),
        (TrackRef("LARRY HEARD feat. Someone", "Can You Feel It!"), (3, "exact")),
        (TrackRef("Theo Parish", "Falling Up"), (4, "fuzzy")),
        (TrackRef("Jeff Mills", "The Bells"), None),
    ],
)
def test_matcher_order_of_evidence(ref, expected):
    """Ids first, then the normalised name, then a fuzzy name; strangers stay unmatched."""
    assert CatalogMatcher(CATALOG).match(ref) == expected


def test_remix_is_not_the_original():
    """"(Carl Craig Remix)" is another track; "(Original Mix)" is the same one."""
    m = CatalogMatcher(CATALOG, fuzzy_cutoff=95)
    assert m.match(TrackRef("Theo Parrish", "Falling Up (Carl Craig Remix)")) is None
    assert m.match(TrackRef("Theo Parrish", "Falling Up (Original Mix)")) == (4, "exact")


def _cand(tid: int, camelot: str, bpm: float, energy: int, path: str | None = None):
    from workers.messages import Candidate

    return Candidate(rank=tid, track_id=tid, title=f"T{tid}", artist=f"A{tid}", path=path, bpm=bpm, key="",
                     camelot=camelot, energy=energy, score=0.5)


def test_order_candidates_walks_the_wheel():
    """Ordered after an 8A query, 9A → 10A → 11A play in wheel order, ranks renumbered."""
    from engine.camelot import parse_key
    from engine.rank import TrackFeatures, Weights
    from workers.mixes import order_candidates

    query = TrackFeatures(-1, 124.0, parse_key("8A"), 5)
    cands = [_cand(3, "11A", 124.0, 5), _cand(1, "9A", 124.0, 5), _cand(2, "10A", 124.0, 5)]
    out = order_candidates(query, cands, weights=Weights(camelot_rules=("same", "+1", "-1")))
    assert [c.track_id for c in out] == [1, 2, 3] and [c.rank for c in out] == [1, 2, 3]


def test_order_candidates_energy_arc():
    """A build arc plays rising energies when transitions tie."""
    from engine.camelot import parse_key
    from engine.rank import TrackFeatures, Weights
    from workers.mixes import order_candidates

    query = TrackFeatures(-1, 124.0, parse_key("8A"), 3)
    cands = [_cand(1, "8A", 124.0, 9), _cand(2, "8A", 124.0, 4), _cand(3, "8A", 124.0, 6)]
    out = order_candidates(query, cands, weights=Weights(energy=0.0), arc="build")
    assert [c.energy for c in out] == [4, 6, 9]


def test_export_playlist_by_extension(tmp_path):
    """A set exports as M3U8 or rekordbox XML; other extensions are refused."""
    from workers.mixes import export_playlist

    cands = [_cand(1, "8A", 124.0, 5, "/music/a.mp3"), _cand(2, "9A", 125.0, 6, "/music/b c.mp3")]
    m3u = export_playlist(cands, tmp_path / "set.m3u8").read_text()
    assert m3u.splitlines()[-1] == "/music/b c.mp3"
    xml = export_playlist(cands, tmp_path / "set.xml").read_text()
    assert "file://localhost/music/b%20c.mp3" in xml and 'Tonality="9A"' in xml
    with pytest.raises(InputError):
        export_playlist(cands, tmp_path / "set.pls")
