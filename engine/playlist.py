"""Writing a set as a playlist DJ software loads: extended M3U and rekordbox XML.

Pure text in, text out; the caller writes the file. Tracks without a local
path are still listed (as comments in M3U) so the DJ sees what to look for.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath
from urllib.parse import quote

from engine.errors import ParameterError


@dataclass(frozen=True)
class PlaylistTrack:
    """One entry of an exported set.

    Attributes
    ----------
    title, artist : str
    path : str or None
        Local file path (absolute is best); None for a track the DJ lacks.
    duration_s : float or None
    bpm : float or None
    key : str or None
        Any notation rekordbox shows as is (``"Am"``, ``"8A"``).
    """

    title: str
    artist: str = ""
    path: str | None = None
    duration_s: float | None = None
    bpm: float | None = None
    key: str | None = None


def _one_line(text: str) -> str:
    # a newline inside a tag would start a new (bogus) entry
    return " ".join(str(text).split())


def to_m3u(tracks: Sequence[PlaylistTrack], *, name: str = "mixwith set") -> str:
    """Extended M3U (UTF-8, i.e. ``.m3u8``) text for the set, in order.

    Tracks without a path appear as ``# missing: Artist - Title`` comments,
    which players skip.
    """
    lines = ["#EXTM3U", f"#PLAYLIST:{_one_line(name)}"]
    for t in tracks:
        label = _one_line(f"{t.artist} - {t.title}" if t.artist else t.title)
        if not t.path:
            lines.append(f"# missing: {label}")
            continue
        seconds = int(round(t.duration_s)) if t.duration_s else -1
        lines.append(f"#EXTINF:{seconds},{label}")
        lines.append(_one_line(t.path))
    return "\n".join(lines) + "\n"


def file_location(path: str) -> str:
    """rekordbox's ``Location``: ``file://localhost/`` plus the percent-encoded absolute path."""
    p = PurePath(path)
    if not p.is_absolute():
        raise ParameterError(f"rekordbox needs absolute paths, got {path!r}")
    posix = p.as_posix()
    if not posix.startswith("/"):  # Windows drive paths: file://localhost/C:/...
        posix = "/" + posix
    return "file://localhost" + quote(posix, safe="/:")


def to_rekordbox_xml(tracks: Sequence[PlaylistTrack], *, name: str = "mixwith set") -> str:
    """rekordbox XML (``DJ_PLAYLISTS`` version 1.0.0): a collection and one playlist.

    Only tracks with an absolute path are included (rekordbox cannot load
    the others). ``TrackID`` values are 1..n in set order.
    """
    root = ET.Element("DJ_PLAYLISTS", Version="1.0.0")
    ET.SubElement(root, "PRODUCT", Name="mixwith", Version="0.1.0", Company="mixwith")
    usable = [t for t in tracks if t.path and PurePath(t.path).is_absolute()]
    collection = ET.SubElement(root, "COLLECTION", Entries=str(len(usable)))
    for i, t in enumerate(usable, start=1):
        attrs = {"TrackID": str(i), "Name": _one_line(t.title), "Artist": _one_line(t.artist)}
        if t.duration_s:
            attrs["TotalTime"] = str(int(round(t.duration_s)))
        if t.bpm:
            attrs["AverageBpm"] = f"{t.bpm:.2f}"
        if t.key:
            attrs["Tonality"] = t.key
        attrs["Location"] = file_location(t.path or "")
        ET.SubElement(collection, "TRACK", attrs)
    playlists = ET.SubElement(root, "PLAYLISTS")
    top = ET.SubElement(playlists, "NODE", Type="0", Name="ROOT", Count="1")
    node = ET.SubElement(top, "NODE", Name=_one_line(name), Type="1", KeyType="0", Entries=str(len(usable)))
    for i in range(1, len(usable) + 1):
        ET.SubElement(node, "TRACK", Key=str(i))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
