"""Key notation and harmonic-mixing arithmetic."""

import pytest

from engine.camelot import (
    ALL_KEYS,
    Key,
    camelot_distance,
    camelot_step,
    compatible_keys,
    from_camelot,
    harmonic_relation,
    parse_key,
)
from engine.errors import ParameterError

# The wheel as DJs print it: Camelot code, key, Open Key code.
WHEEL = [
    ("1A", "Ab minor", "6m"), ("1B", "B major", "6d"), ("2A", "Eb minor", "7m"), ("2B", "F# major", "7d"),
    ("3A", "Bb minor", "8m"), ("3B", "Db major", "8d"), ("4A", "F minor", "9m"), ("4B", "Ab major", "9d"),
    ("5A", "C minor", "10m"), ("5B", "Eb major", "10d"), ("6A", "G minor", "11m"), ("6B", "Bb major", "11d"),
    ("7A", "D minor", "12m"), ("7B", "F major", "12d"), ("8A", "A minor", "1m"), ("8B", "C major", "1d"),
    ("9A", "E minor", "2m"), ("9B", "G major", "2d"), ("10A", "B minor", "3m"), ("10B", "D major", "3d"),
    ("11A", "F# minor", "4m"), ("11B", "A major", "4d"), ("12A", "C# minor", "5m"), ("12B", "E major", "5d"),
]


@pytest.mark.parametrize(("camelot", "name", "open_key"), WHEEL)
def test_wheel_codes(camelot: str, name: str, open_key: str) -> None:
    """Every key maps to the Camelot and Open Key codes on the published wheel."""
    key = parse_key(name.replace("Ab minor", "G# minor"))
    assert key.camelot == camelot
    assert key.open_key == open_key
    assert parse_key(camelot) == key
    assert parse_key(open_key) == key


def test_all_keys_distinct_codes() -> None:
    """The 24 keys have 24 distinct Camelot codes."""
    assert len({k.camelot for k in ALL_KEYS}) == 24
    assert len({k.open_key for k in ALL_KEYS}) == 24


def test_from_camelot_round_trip() -> None:
    """from_camelot inverts Key.camelot for all 24 codes."""
    for k in ALL_KEYS:
        assert from_camelot(k.camelot_number, k.camelot[-1]) == k


def test_wrap_around_12_to_1() -> None:
    """12 to 1 is one step clockwise, not eleven back."""
    assert camelot_step(parse_key("12A"), parse_key("1A")) == 1
    assert camelot_step(parse_key("1B"), parse_key("12B")) == -1
    assert camelot_distance(parse_key("12A"), parse_key("1A")) == 1
    assert harmonic_relation(parse_key("12A"), parse_key("1A")) == "+1"


def test_fifth_up_is_plus_one() -> None:
    """A fifth up (C major to G major) is +1 on the wheel."""
    assert camelot_step(parse_key("C major"), parse_key("G major")) == 1


def test_harmonic_relations() -> None:
    """Relative, diagonal, energy boost and semitone moves are named."""
    am = parse_key("8A")
    assert harmonic_relation(am, parse_key("8A")) == "same"
    assert harmonic_relation(am, parse_key("8B")) == "relative"
    assert harmonic_relation(am, parse_key("9B")) == "diagonal"
    assert harmonic_relation(am, parse_key("10A")) == "+2"
    assert harmonic_relation(am, am.transpose(1)) == "+7"
    assert harmonic_relation(am, parse_key("2B")) is None


def test_transpose_wraps() -> None:
    """Transposing B up a semitone gives C."""
    assert Key(11, "major").transpose(1) == Key(0, "major")
    assert Key(0, "minor").transpose(-1) == Key(11, "minor")


@pytest.mark.parametrize("text", ["H minor", "13A", "0B", "", "C lydian"])
def test_parse_rejects_junk(text: str) -> None:
    """Text that names no key raises ParameterError."""
    with pytest.raises(ParameterError):
        parse_key(text)


def test_parse_spellings() -> None:
    """Sharps, flats, unicode accidentals and short forms parse alike."""
    assert parse_key("Am") == parse_key("A minor") == parse_key("8a")
    assert parse_key("C#m") == parse_key("Db minor") == parse_key("C♯ min")
    assert parse_key("Bb") == parse_key("A# major") == parse_key("B♭ maj")


def test_compatible_keys_follow_the_rules() -> None:
    """8A mixes into 8A, 9A, 7A, 8B, 9B and 10A under the default rules; without "+2", 10A drops out."""
    key = parse_key("8A")
    codes = {k.camelot for k in compatible_keys(key, rules=("same", "+1", "-1", "relative", "diagonal", "+2"))}
    assert codes == {"8A", "9A", "7A", "8B", "9B", "10A"}
    assert "10A" not in {k.camelot for k in compatible_keys(key, rules=("same", "+1", "-1"))}
    assert {k.camelot for k in compatible_keys(parse_key("12B"), rules=("+1",))} == {"1B"}
