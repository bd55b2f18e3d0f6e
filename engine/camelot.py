"""Key notation (names, Camelot, Open Key) and harmonic-mixing arithmetic.

A key is a pitch class of its tonic (0 = C … 11 = B) and a mode. Camelot puts
the 24 keys on a 12-hour wheel: numbers step by a fifth, ``B`` is major and
``A`` minor (8B = C major, 8A = A minor). Open Key is the same wheel turned
so that C major is ``1d`` and A minor ``1m``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from engine.errors import ParameterError

Mode = Literal["major", "minor"]

_MAJOR_NAMES = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_MINOR_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B")
_ALIASES = {
    "C#": 1, "DB": 1, "D#": 3, "EB": 3, "FB": 4, "E#": 5, "GB": 6, "F#": 6,
    "G#": 8, "AB": 8, "A#": 10, "BB": 10, "CB": 11, "B#": 0,
    "C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11,
}
_CAMELOT_RE = re.compile(r"^\s*(1[0-2]|[1-9])\s*([AaBb])\s*$")


@dataclass(frozen=True, order=True)
class Key:
    """A musical key.

    Attributes
    ----------
    tonic : int
        Pitch class of the tonic, 0 (C) to 11 (B).
    mode : {"major", "minor"}
    """

    tonic: int
    mode: Mode

    def __post_init__(self) -> None:
        if not 0 <= self.tonic < 12:
            raise ParameterError(f"tonic must be 0..11, got {self.tonic}")
        if self.mode not in ("major", "minor"):
            raise ParameterError(f"mode must be 'major' or 'minor', got {self.mode!r}")

    @property
    def name(self) -> str:
        """Human name such as ``"A minor"``."""
        names = _MAJOR_NAMES if self.mode == "major" else _MINOR_NAMES
        return f"{names[self.tonic]} {self.mode}"

    @property
    def camelot_number(self) -> int:
        major_tonic = self.tonic if self.mode == "major" else (self.tonic + 3) % 12
        fifths = (major_tonic * 7) % 12  # steps round the circle of fifths from C
        return (fifths + 7) % 12 + 1

    @property
    def camelot(self) -> str:
        """Camelot code such as ``"8A"``."""
        return f"{self.camelot_number}{'B' if self.mode == 'major' else 'A'}"

    @property
    def open_key(self) -> str:
        """Open Key code such as ``"1m"``."""
        return f"{(self.camelot_number + 4) % 12 + 1}{'d' if self.mode == 'major' else 'm'}"

    def transpose(self, semitones: int) -> "Key":
        """The key ``semitones`` higher (negative: lower)."""
        return Key((self.tonic + semitones) % 12, self.mode)


ALL_KEYS: tuple[Key, ...] = tuple(Key(t, m) for m in ("major", "minor") for t in range(12))


def parse_key(text: str) -> Key:
    """Parse ``"A minor"``, ``"Am"``, ``"F# major"``, ``"8A"`` or ``"1m"``.

    Raises
    ------
    ParameterError
        When the text names no key.
    """
    s = text.strip()
    m = _CAMELOT_RE.match(s)
    if m:
        return from_camelot(int(m.group(1)), m.group(2).upper())
    m = re.match(r"^\s*(1[0-2]|[1-9])\s*([dDmM])\s*$", s)
    if m:
        number = (int(m.group(1)) + 6) % 12 + 1  # Open Key back to Camelot
        return from_camelot(number, "B" if m.group(2).lower() == "d" else "A")
    m = re.match(r"^\s*([A-Ga-g])([#b♯♭]?)\s*(major|maj|minor|min|m)?\s*$", s)
    if not m:
        raise ParameterError(f"not a key: {text!r}")
    acc = {"♯": "#", "♭": "b"}.get(m.group(2), m.group(2))
    tonic = _ALIASES[(m.group(1) + acc).upper()]
    mode: Mode = "minor" if (m.group(3) or "major").lower() in ("minor", "min", "m") else "major"
    return Key(tonic, mode)


def from_camelot(number: int, letter: str) -> Key:
    """The key for Camelot ``number`` (1–12) and ``letter`` ("A" minor, "B" major)."""
    if not 1 <= number <= 12 or letter not in ("A", "B"):
        raise ParameterError(f"not a Camelot code: {number}{letter}")
    fifths = (number - 8) % 12
    major_tonic = (fifths * 7) % 12  # 7 is its own inverse mod 12
    if letter == "B":
        return Key(major_tonic, "major")
    return Key((major_tonic - 3) % 12, "minor")


def camelot_distance(a: Key, b: Key) -> int:
    """Steps round the wheel between the two numbers, 0–6, ignoring the letter."""
    d = abs(a.camelot_number - b.camelot_number) % 12
    return min(d, 12 - d)


def camelot_step(a: Key, b: Key) -> int:
    """Signed steps from ``a`` to ``b`` round the wheel, in -5..6 (wraps 12 → 1)."""
    d = (b.camelot_number - a.camelot_number) % 12
    return d - 12 if d > 6 else d


def harmonic_relation(a: Key, b: Key) -> str | None:
    """Name the DJ mixing rule that links ``a`` to ``b``, or None.

    Returns one of ``"same"``, ``"+1"``, ``"-1"``, ``"relative"``,
    ``"diagonal"`` (±1 and switch letter), ``"+2"`` (energy boost),
    ``"-2"``, ``"+7"`` (semitone up: same letter, +7 on the wheel).
    """
    step = camelot_step(a, b)
    same_letter = a.mode == b.mode
    if same_letter:
        return {0: "same", 1: "+1", -1: "-1", 2: "+2", -2: "-2", -5: "+7"}.get(step)
    if step == 0:
        return "relative"
    # diagonal moves DJs use: 8A -> 9B, 8B -> 7A (mood shifts)
    if (a.mode == "minor" and step == 1) or (a.mode == "major" and step == -1):
        return "diagonal"
    return None


def compatible_keys(key: Key, *, rules: Sequence[str]) -> tuple[Key, ...]:
    """Every key reached from ``key`` by one of the mixing ``rules`` (names as in :func:`harmonic_relation`).

    ``key`` itself is included when ``"same"`` is among the rules.
    """
    allowed = set(rules)
    return tuple(k for k in ALL_KEYS if harmonic_relation(key, k) in allowed)

