"""What every source returns: a local audio file and what we learnt about it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class FetchedAudio:
    """Audio fetched from a link or an upload, ready for the pipeline.

    Attributes
    ----------
    path : Path
        Local file holding (the first seconds of) the audio.
    title, artist : str
        As the source names them; empty when unknown.
    isrc, spotify_id : str or None
        Identifiers for a catalog match without listening.
    source_key : str
        Normalised cache key (``youtube:<id>``, ``spotify:<id>``, ``upload:<sha256>``).
    duration_s : float or None
        Length of the whole song when the source says so.
    track_id : int or None
        The catalog track this is, when known without listening (Spotify id/ISRC match).
    """

    path: Path
    title: str = ""
    artist: str = ""
    isrc: str | None = None
    spotify_id: str | None = None
    source_key: str = ""
    duration_s: float | None = None
    track_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


@dataclass(frozen=True)
class TrackMeta:
    """Metadata of a song known before any audio is fetched (from Spotify)."""

    title: str
    artists: tuple[str, ...]
    isrc: str | None
    duration_s: float | None
    spotify_id: str

    @property
    def artist(self) -> str:
        return ", ".join(self.artists)
