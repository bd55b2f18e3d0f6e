"""DJ mix history: parse tracklists and playlists, match them to the catalog, import.

Formats (chosen by extension, or by content for ``.csv``):

* tracklist CSV: ``mix_id, position, artist, title`` plus optional
  ``spotify_id``, ``isrc``, ``dj``, ``mix_title``;
* sample-relations CSV: ``artist, title, sampled_artist, sampled_title``
  (+ optional ``spotify_id``/``isrc`` and ``sampled_spotify_id``/``sampled_isrc``):
  track A samples track B;
* M3U / M3U8 playlists (what DJ software exports): ``#EXTINF:secs,Artist - Title``
  then a path; without ``#EXTINF`` the file name is read as ``Artist - Title``;
* rekordbox XML: its ``COLLECTION`` and every playlist under ``PLAYLISTS``.

Parsing is pure (no database): a file becomes mixes, relations and per-row
errors; a bad row is reported, never fatal. Matching goes by Spotify id,
then ISRC, then normalised artist/title, then a fuzzy match (rapidfuzz);
what stays unmatched becomes a stub track known only to collaborative
filtering (``tracks.content_hash`` NULL).
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import logging
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath
from typing import TYPE_CHECKING, Literal
from urllib.parse import unquote, urlsplit

import asyncpg
import numpy as np
from rapidfuzz import fuzz, process

from db.queries import feedback as feedback_q
from db.queries import mixes as mixes_q
from db.queries import models as models_q
from db.queries import tracks as tracks_q
from db.queries.mixes import CatalogEntry
from engine import als
from engine.camelot import parse_key
from engine.errors import EngineError, ParameterError
from engine.playlist import PlaylistTrack, to_m3u, to_rekordbox_xml
from engine.rank import (
    SOURCE_CF,
    SOURCE_HARMONIC,
    SOURCE_SOUND,
    Diversity,
    Filters,
    Knobs,
    Scored,
    TrackFeatures,
    Weights,
    merge_sources,
    normalise_text,
    rank_candidates,
    transition_matrix,
)
from engine.setorder import order_set
from workers.errors import InputError

if TYPE_CHECKING:
    from workers.messages import Candidate, MixOptions
    from workers.settings import MixSettings

logger = logging.getLogger(__name__)

MAX_FILE_BYTES = 50 * 1024 * 1024
Format = Literal["tracklist-csv", "relations-csv", "m3u", "rekordbox-xml"]
_SPOTIFY_ID = re.compile(r"^(?:spotify:track:|https?://open\.spotify\.com/(?:intl-[a-z]+/)?track/)?([A-Za-z0-9]{22})(?:\?.*)?$")
_ISRC = re.compile(r"^[A-Z]{2}[A-Z0-9]{3}\d{7}$")


@dataclass(frozen=True)
class TrackRef:
    """A track as a mix history names it."""

    artist: str
    title: str
    spotify_id: str | None = None
    isrc: str | None = None
    path: str | None = None
    bpm: float | None = None
    key: str | None = None
    duration_s: float | None = None


@dataclass(frozen=True)
class ParsedMix:
    """One mix (or playlist): its id within the file and its tracks in play order."""

    external_id: str
    tracks: tuple[TrackRef, ...]
    title: str = ""
    dj: str = ""


@dataclass(frozen=True)
class ParsedRelation:
    """``track`` samples ``sampled``."""

    track: TrackRef
    sampled: TrackRef
    kind: str = "samples"


@dataclass(frozen=True)
class RowError:
    """A row we skipped, and why (line numbers count from 1)."""

    source: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.reason}"


@dataclass(frozen=True)
class ParsedFile:
    """Everything read from one file."""

    source: str
    format: Format
    mixes: tuple[ParsedMix, ...] = ()
    relations: tuple[ParsedRelation, ...] = ()
    errors: tuple[RowError, ...] = ()


def _clean(value: str | None) -> str:
    return " ".join((value or "").split())


def _spotify_id(value: str | None) -> str | None:
    v = _clean(value)
    if not v:
        return None
    m = _SPOTIFY_ID.match(v)
    if not m:
        raise ValueError(f"not a Spotify track id: {v!r}")
    return m.group(1)


def _isrc(value: str | None) -> str | None:
    v = _clean(value).replace("-", "").upper()
    if not v:
        return None
    if not _ISRC.match(v):
        raise ValueError(f"not an ISRC: {value!r}")
    return v


def _read_text(path: Path, *, max_bytes: int) -> str:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if size > max_bytes:
        raise InputError(f"{path.name} is {size} bytes; the limit is {max_bytes}")
    raw = path.read_bytes()
    for encoding in ("utf-8-sig", "cp1252"):  # old M3U exports are Windows-1252
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")


def _norm_header(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


_HEADER_ALIASES = {
    "mix": "mix_id", "mixid": "mix_id", "set_id": "mix_id", "tracklist_id": "mix_id",
    "pos": "position", "track_no": "position", "track_number": "position", "no": "position", "number": "position",
    "name": "title", "track": "title", "track_title": "title", "song": "title",
    "track_artist": "artist", "artists": "artist",
    "spotify": "spotify_id", "spotify_uri": "spotify_id", "spotify_url": "spotify_id",
    "sample_artist": "sampled_artist", "sample_title": "sampled_title",
    "mix_name": "mix_title", "set_title": "mix_title",
}


def parse_csv_text(text: str, *, source: str) -> ParsedFile:
    """Parse a tracklist or sample-relations CSV (told apart by its header).

    Raises
    ------
    InputError
        When the header has neither layout's required columns.
    """
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    try:
        header = next(reader)
    except StopIteration:
        raise InputError(f"{source}: the file is empty") from None
    cols = [_HEADER_ALIASES.get(_norm_header(h), _norm_header(h)) for h in header]
    if {"sampled_title", "title"} <= set(cols):
        return _parse_relations(reader, cols, source=source)
    if {"mix_id", "title"} <= set(cols):
        return _parse_tracklist(reader, cols, source=source)
    raise InputError(
        f"{source}: a tracklist CSV needs columns mix_id, position, artist, title; "
        f"a sample CSV needs artist, title, sampled_artist, sampled_title (found: {', '.join(header)})"
    )


def _rows(reader: Iterable[list[str]], cols: list[str]) -> Iterable[tuple[int, dict[str, str]]]:
    for line, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue
        yield line, {c: (row[i] if i < len(row) else "") for i, c in enumerate(cols)}


def _parse_tracklist(reader: Iterable[list[str]], cols: list[str], *, source: str) -> ParsedFile:
    mixes: dict[str, dict] = {}
    errors: list[RowError] = []
    for line, r in _rows(reader, cols):
        mix_id = _clean(r.get("mix_id"))
        title = _clean(r.get("title"))
        if not mix_id:
            errors.append(RowError(source, line, "no mix id"))
            continue
        if not title:
            errors.append(RowError(source, line, "no title"))
            continue
        pos_text = _clean(r.get("position"))
        try:
            position = int(float(pos_text)) if pos_text else None
        except ValueError:
            errors.append(RowError(source, line, f"position is not a number: {pos_text!r}"))
            continue
        try:
            ref = TrackRef(
                artist=_clean(r.get("artist")), title=title,
                spotify_id=_spotify_id(r.get("spotify_id")), isrc=_isrc(r.get("isrc")),
            )
        except ValueError as exc:
            errors.append(RowError(source, line, str(exc)))
            continue
        m = mixes.setdefault(mix_id, {"rows": [], "title": "", "dj": ""})
        m["title"] = m["title"] or _clean(r.get("mix_title"))
        m["dj"] = m["dj"] or _clean(r.get("dj"))
        m["rows"].append((position if position is not None else len(m["rows"]) + 1, line, ref))
    out = []
    for mix_id, m in mixes.items():
        seen: dict[int, int] = {}
        refs = []
        for position, line, ref in sorted(m["rows"], key=lambda x: (x[0], x[1])):
            if position in seen:
                errors.append(RowError(source, line, f"mix {mix_id}: position {position} repeats line {seen[position]}"))
                continue
            seen[position] = line
            refs.append(ref)
        out.append(ParsedMix(mix_id, tuple(refs), m["title"], m["dj"]))
    return ParsedFile(source, "tracklist-csv", mixes=tuple(out), errors=tuple(sorted(errors, key=lambda e: e.line)))


def _parse_relations(reader: Iterable[list[str]], cols: list[str], *, source: str) -> ParsedFile:
    rels: list[ParsedRelation] = []
    errors: list[RowError] = []
    for line, r in _rows(reader, cols):
        a_title, b_title = _clean(r.get("title")), _clean(r.get("sampled_title"))
        if not a_title or not b_title:
            errors.append(RowError(source, line, "both title and sampled_title are needed"))
            continue
        try:
            a = TrackRef(_clean(r.get("artist")), a_title, _spotify_id(r.get("spotify_id")), _isrc(r.get("isrc")))
            b = TrackRef(
                _clean(r.get("sampled_artist")), b_title,
                _spotify_id(r.get("sampled_spotify_id")), _isrc(r.get("sampled_isrc")),
            )
        except ValueError as exc:
            errors.append(RowError(source, line, str(exc)))
            continue
        kind = _clean(r.get("kind")) or "samples"
        rels.append(ParsedRelation(a, b, kind))
    return ParsedFile(source, "relations-csv", relations=tuple(rels), errors=tuple(errors))


def _split_artist_title(label: str) -> tuple[str, str]:
    for sep in (" - ", " – ", " — "):
        if sep in label:
            artist, title = label.split(sep, 1)
            return _clean(artist), _clean(title)
    return "", _clean(label)


def _entry_path(entry: str) -> str:
    if entry.lower().startswith("file:"):
        return unquote(urlsplit(entry).path)
    return entry


def parse_m3u_text(text: str, *, source: str, mix_id: str) -> ParsedFile:
    """Parse an (extended) M3U playlist as one mix in file order."""
    refs: list[TrackRef] = []
    errors: list[RowError] = []
    pending: tuple[int, float | None, str] | None = None
    title = ""
    for line_no, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.upper().startswith("#EXTINF:"):
            body = line[len("#EXTINF:"):]
            dur_text, _, label = body.partition(",")
            # attributes such as tvg-id="..." may follow the duration
            dur_text = dur_text.split(" ", 1)[0]
            try:
                duration = float(dur_text)
            except ValueError:
                errors.append(RowError(source, line_no, f"bad #EXTINF duration: {dur_text!r}"))
                duration = None
            if pending is not None:
                errors.append(RowError(source, pending[0], "#EXTINF without a path"))
            pending = (line_no, duration if duration and duration > 0 else None, label.strip())
            continue
        if line.upper().startswith("#PLAYLIST:"):
            title = line.split(":", 1)[1].strip()
            continue
        if line.startswith("#"):
            continue
        path = _entry_path(line)
        if pending is not None and pending[2]:
            artist, name = _split_artist_title(pending[2])
            duration = pending[1]
        else:
            stem = PureWindowsPath(path).stem if "\\" in path else Path(path).stem
            artist, name = _split_artist_title(re.sub(r"^\d+[\s._-]+", "", stem))
            duration = pending[1] if pending else None
        pending = None
        if not name:
            errors.append(RowError(source, line_no, "entry has no title"))
            continue
        refs.append(TrackRef(artist=artist, title=name, path=path, duration_s=duration))
    if pending is not None:
        errors.append(RowError(source, pending[0], "#EXTINF without a path"))
    mixes = (ParsedMix(mix_id, tuple(refs), title or mix_id),) if refs else ()
    if not refs:
        errors.append(RowError(source, 1, "the playlist has no entries"))
    return ParsedFile(source, "m3u", mixes=mixes, errors=tuple(errors))


def _float_attr(value: str | None) -> float | None:
    try:
        v = float(value) if value not in (None, "") else None
    except ValueError:
        return None
    return v if v and v > 0 else None


def parse_rekordbox_text(text: str, *, source: str) -> ParsedFile:
    """Parse rekordbox XML: each playlist (``NODE Type="1"``) becomes a mix.

    Raises
    ------
    InputError
        When the text is not XML or has no ``DJ_PLAYLISTS`` root.
    """
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise InputError(f"{source}: not valid XML ({exc})") from exc
    if root.tag != "DJ_PLAYLISTS":
        raise InputError(f"{source}: not a rekordbox XML file (root is <{root.tag}>)")
    errors: list[RowError] = []
    collection: dict[str, TrackRef] = {}
    by_location: dict[str, str] = {}
    for n, t in enumerate(root.iterfind("./COLLECTION/TRACK"), start=1):
        tid = t.get("TrackID")
        name = _clean(t.get("Name"))
        if not tid or not name:
            errors.append(RowError(source, n, "collection track without TrackID or Name"))
            continue
        location = t.get("Location") or ""
        path = unquote(urlsplit(location).path) if location else None
        if path and re.match(r"^/[A-Za-z]:/", path):
            path = path[1:]  # file://localhost/C:/... on Windows
        collection[tid] = TrackRef(
            artist=_clean(t.get("Artist")), title=name, path=path,
            bpm=_float_attr(t.get("AverageBpm")), key=_clean(t.get("Tonality")) or None,
            duration_s=_float_attr(t.get("TotalTime")),
        )
        if location:
            by_location[location] = tid
    mixes: list[ParsedMix] = []

    def walk(node: ET.Element, trail: tuple[str, ...]) -> None:
        for child in node.findall("NODE"):
            name = child.get("Name") or "playlist"
            if child.get("Type") == "1":
                refs = []
                key_type = child.get("KeyType", "0")
                for i, entry in enumerate(child.findall("TRACK"), start=1):
                    k = entry.get("Key") or ""
                    tid = by_location.get(k) if key_type == "1" else k
                    ref = collection.get(tid or "")
                    if ref is None:
                        errors.append(RowError(source, i, f"playlist {name!r}: track {k!r} is not in the collection"))
                        continue
                    refs.append(ref)
                if refs:
                    path = "/".join(trail + (name,))
                    mixes.append(ParsedMix(path, tuple(refs), name))
            else:
                walk(child, trail + ((name,) if name != "ROOT" else ()))

    playlists = root.find("PLAYLISTS")
    if playlists is not None:
        walk(playlists, ())
    if not mixes:
        errors.append(RowError(source, 1, "no playlists with tracks"))
    return ParsedFile(source, "rekordbox-xml", mixes=tuple(mixes), errors=tuple(errors))


def parse_file(path: Path, *, max_bytes: int = MAX_FILE_BYTES) -> ParsedFile:
    """Parse a mix-history file of any supported format (by extension).

    Raises
    ------
    InputError
        Unreadable, too large, unknown extension, or a header/root we cannot use.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".tsv", ".m3u", ".m3u8", ".xml"):
        raise InputError(f"{path.name}: unsupported file type {suffix or '(none)'}; use .csv, .m3u, .m3u8 or rekordbox .xml")
    text = _read_text(path, max_bytes=max_bytes)
    if suffix in (".csv", ".tsv"):
        return parse_csv_text(text, source=path.name)
    if suffix in (".m3u", ".m3u8"):
        return parse_m3u_text(text, source=path.name, mix_id=path.stem)
    return parse_rekordbox_text(text, source=path.name)


# --- matching to the catalog --------------------------------------------------------------


MatchHow = Literal["spotify_id", "isrc", "exact", "fuzzy"]


@dataclass
class CatalogMatcher:
    """Match TrackRefs to catalog ids: Spotify id, ISRC, normalised name, then fuzzy.

    New stubs can be added as they are created, so the same unknown track in
    two mixes becomes one stub.

    Parameters
    ----------
    entries : sequence of CatalogEntry
    fuzzy_cutoff : float in [0, 100]
        Smallest rapidfuzz ``token_sort_ratio`` accepted as the same track.
    """

    entries: Sequence[CatalogEntry]
    fuzzy_cutoff: float = 90.0
    _by_spotify: dict[str, int] = field(default_factory=dict, init=False)
    _by_isrc: dict[str, int] = field(default_factory=dict, init=False)
    _by_name: dict[str, int] = field(default_factory=dict, init=False)
    _choices: list[str] = field(default_factory=list, init=False)
    _choice_ids: list[int] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        if not 0 <= self.fuzzy_cutoff <= 100:
            raise ValueError("fuzzy_cutoff must be in 0..100")
        for e in self.entries:
            self.add(e)

    @staticmethod
    def key(artist: str, title: str) -> str:
        """Normalised ``artist - title`` used for exact and fuzzy matching."""
        return f"{normalise_text(artist)} - {normalise_text(title)}"

    def add(self, e: CatalogEntry) -> None:
        if e.spotify_id:
            self._by_spotify.setdefault(e.spotify_id, e.track_id)
        if e.isrc:
            self._by_isrc.setdefault(e.isrc.upper(), e.track_id)
        k = self.key(e.artist, e.title)
        if k not in self._by_name:
            self._by_name[k] = e.track_id
            self._choices.append(k)
            self._choice_ids.append(e.track_id)

    def match(self, ref: TrackRef) -> tuple[int, MatchHow] | None:
        """The catalog id for ``ref`` and how it was found, or None."""
        if ref.spotify_id and ref.spotify_id in self._by_spotify:
            return self._by_spotify[ref.spotify_id], "spotify_id"
        if ref.isrc and ref.isrc.upper() in self._by_isrc:
            return self._by_isrc[ref.isrc.upper()], "isrc"
        k = self.key(ref.artist, ref.title)
        if k in self._by_name:
            return self._by_name[k], "exact"
        if not self._choices or not normalise_text(ref.title):
            return None
        best = process.extractOne(k, self._choices, scorer=fuzz.token_sort_ratio, score_cutoff=self.fuzzy_cutoff)
        if best is None:
            return None
        return self._choice_ids[best[2]], "fuzzy"


@dataclass(frozen=True)
class ImportReport:
    """What ``mixwith mixes import`` did."""

    files: int = 0
    mixes: int = 0
    entries: int = 0
    relations: int = 0
    matched_by_id: int = 0
    matched_by_name: int = 0
    matched_fuzzy: int = 0
    stubs_created: int = 0
    stub_reuses: int = 0
    errors: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["errors"] = list(self.errors)
        return d


async def import_files(pool: asyncpg.Pool, paths: Sequence[Path], *, source: str | None = None, fuzzy_cutoff: float = 90.0,
                       max_bytes: int = MAX_FILE_BYTES) -> ImportReport:
    """Parse, match and store mix histories; bad rows and bad files are reported, not fatal.

    Parameters
    ----------
    pool : asyncpg.Pool
    paths : sequence of Path
    source : str, optional
        Name stored as ``mixes.source``; defaults to each file's name, so
        importing the same file again replaces its mixes instead of doubling them.
    fuzzy_cutoff : float
        See :class:`CatalogMatcher`.
    """
    counts = dict(files=0, mixes=0, entries=0, relations=0, matched_by_id=0, matched_by_name=0,
                  matched_fuzzy=0, stubs_created=0, stub_reuses=0)
    errors: list[str] = []
    parsed: list[ParsedFile] = []
    for p in paths:
        try:
            parsed.append(parse_file(Path(p), max_bytes=max_bytes))
        except InputError as exc:
            errors.append(str(exc))
    async with pool.acquire() as conn:
        matcher = CatalogMatcher(await mixes_q.catalog_entries(conn), fuzzy_cutoff=fuzzy_cutoff)
        stub_ids: set[int] = set()

        async def resolve(ref: TrackRef) -> int:
            hit = matcher.match(ref)
            if hit is not None:
                tid, how = hit
                if tid in stub_ids:
                    counts["stub_reuses"] += 1
                elif how in ("spotify_id", "isrc"):
                    counts["matched_by_id"] += 1
                elif how == "exact":
                    counts["matched_by_name"] += 1
                else:
                    counts["matched_fuzzy"] += 1
                return tid
            tid = await mixes_q.create_stub(conn, artist=ref.artist, title=ref.title, spotify_id=ref.spotify_id,
                                            isrc=ref.isrc, path=ref.path)
            stub_ids.add(tid)
            matcher.add(CatalogEntry(tid, ref.artist, ref.title, ref.spotify_id, ref.isrc))
            counts["stubs_created"] += 1
            return tid

        for pf in parsed:
            counts["files"] += 1
            errors.extend(str(e) for e in pf.errors)
            async with conn.transaction():
                for mix in pf.mixes:
                    ids = [await resolve(ref) for ref in mix.tracks]
                    await mixes_q.replace_mix(conn, source=source or pf.source, external_id=mix.external_id,
                                              title=mix.title, dj=mix.dj, track_ids=ids)
                    counts["mixes"] += 1
                    counts["entries"] += len(ids)
                for rel in pf.relations:
                    a, b = await resolve(rel.track), await resolve(rel.sampled)
                    if a == b:
                        errors.append(f"{pf.source}: {rel.track.artist} - {rel.track.title} samples itself; skipped")
                        continue
                    await mixes_q.add_relation(conn, track_id=a, related_id=b, kind=rel.kind)
                    counts["relations"] += 1
    report = ImportReport(**counts, errors=tuple(errors))
    logger.info("imported %d mixes (%d entries), %d relations from %d files; %d stubs, %d problems",
                report.mixes, report.entries, report.relations, report.files, report.stubs_created, len(errors))
    return report


# --- collaborative filtering from the stored history ----------------------------------------


@dataclass(frozen=True)
class TrainReport:
    """What ``mixwith train als`` produced."""

    version: str
    path: str
    view: str
    mixes: int
    tracks: int
    interactions: int
    relations: int
    feedback_pairs: int
    seconds: float
    device: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)


async def train_from_history(
    pool: asyncpg.Pool,
    *,
    models_dir: Path,
    view: Literal["item", "mix"] = "item",
    params: als.AlsParams | None = None,
    cooccurrence: als.CooccurrenceParams | None = None,
    relation_weight: float = 2.0,
    feedback_weight: float = 1.0,
    threads: int = 0,
    activate: bool = True,
) -> TrainReport:
    """Train ALS on every stored mix (plus sample relations and feedback) and register it.

    Item view: track × track co-occurrence (neighbours weigh more, close tempi a
    little more); each sample relation adds ``relation_weight``; each 👍/👎 on
    a recommendation adds ``feedback_weight × value`` to the (query, track) cell
    (never below zero). Mix view: mix × track play counts (relations and
    feedback have no mix row and are left out).

    The model is saved to ``models_dir/als/<version>.npz`` and recorded in
    ``model_versions`` (kind ``als``), active unless ``activate`` is False.

    Raises
    ------
    InputError
        When there is no mix history to learn from.
    """
    params = params or als.AlsParams()
    cooccurrence = cooccurrence or als.CooccurrenceParams()
    async with pool.acquire() as conn:
        seqs = await mixes_q.mix_sequences(conn)
        relations = await mixes_q.relation_pairs(conn)
        feedback = await feedback_q.feedback_pairs(conn)
        ids = sorted({t for s in seqs for t in s} | {t for a, b, _ in relations for t in (a, b)}
                     | ({t for a, b, _ in feedback for t in (a, b)} if view == "item" else set()))
        tempi = await mixes_q.track_tempi(conn, ids)
    if not seqs or not ids:
        raise InputError("no mix history yet: import some with `mixwith mixes import FILE`")
    index = {t: i for i, t in enumerate(ids)}
    mixes = [[index[t] for t in s] for s in seqs]
    if view == "item":
        bpm = np.array([tempi.get(t, np.nan) for t in ids], dtype=np.float64)
        matrix = als.cooccurrence_matrix(mixes, n_tracks=len(ids), params=cooccurrence, bpm=bpm)
        matrix = als.add_pairs(matrix, [(index[a], index[b], relation_weight) for a, b, _ in relations])
        matrix = als.add_pairs(matrix, [(index[a], index[b], feedback_weight * v) for a, b, v in feedback])
    else:
        matrix = als.mix_track_matrix(mixes, n_tracks=len(ids))
    version = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{view}"
    loop = asyncio.get_running_loop()
    model = await loop.run_in_executor(
        None, lambda: als.train_als(matrix, track_ids=np.array(ids), view=view, params=params,
                                    threads=threads, version=version)
    )
    path = als.save_model(model, Path(models_dir) / "als" / f"{version}.npz")
    metrics = dict(model.metrics, mixes=len(seqs), relations=len(relations), feedback_pairs=len(feedback))
    async with pool.acquire() as conn:
        await models_q.register(conn, kind="als", version=version, artifact_path=str(path), metrics=metrics,
                                activate=activate)
    return TrainReport(version, str(path), view, len(seqs), len(ids), int(matrix.nnz), len(relations),
                       len(feedback) if view == "item" else 0, model.metrics["seconds"], model.metrics["device"])


async def load_active_model(conn: asyncpg.Connection) -> als.AlsModel | None:
    """The active ALS model, or None when none was trained (or its file is gone)."""
    mv = await models_q.active(conn, "als")
    if mv is None:
        return None
    try:
        return als.load_model(Path(mv.artifact_path))
    except ParameterError as exc:
        logger.warning("active ALS model %s unusable: %s", mv.version, exc)
        return None


async def coplay_signals(
    conn: asyncpg.Connection, model: als.AlsModel | None, track_id: int, *, n: int = 200
) -> tuple[dict[int, float], dict[int, int]]:
    """CF candidates for a catalog track: ALS affinity in [0, 1] and co-play counts.

    Returns ``(coplay, counts)``, ready for ``engine.rank.rank_candidates``
    (``coplay=``, ``coplay_counts=``); empty when the track never appeared in a mix.
    """
    near = als.neighbours(model, track_id, n=n) if model is not None else []
    coplay: dict[int, float] = {}
    if near:
        unit = als.unit_scores([s for _, s in near])
        coplay = {t: float(u) for (t, _), u in zip(near, unit)}
    counts = await mixes_q.coplay_counts(conn, track_id, list(coplay) or [])
    return coplay, counts


# --- set ordering and export ------------------------------------------------------------------

ENERGY_ARCS = {"up": "build", "down": "cooldown", "steady": "flat"}


def order_candidates(
    query: TrackFeatures,
    candidates: Sequence["Candidate"],
    *,
    weights: Weights,
    arc: str | None = None,
) -> tuple["Candidate", ...]:
    """Re-order recommendations into a playable set that opens after the query track.

    Uses exact search (≤ 10 tracks) or beam search over transition scores
    (``engine.rank.transition_matrix``) with an optional energy arc
    (``build``, ``peak``, ``cooldown``, ``flat``). Ranks are renumbered in play order.
    """
    if not candidates:
        return ()

    def key(c):
        try:
            return parse_key(c.camelot) if c.camelot else None
        except EngineError:
            return None

    feats = [query] + [TrackFeatures(c.track_id, c.bpm, key(c), c.energy or 5, c.artist, c.title) for c in candidates]
    energies = np.array([max(1, min(10, f.energy)) for f in feats], dtype=np.float64)
    t = transition_matrix(feats, weights=weights)
    res = order_set(t, energies=energies if arc else None, arc=arc, start=0)  # type: ignore[arg-type]
    ordered = [candidates[i - 1] for i in res.order if i != 0]
    return tuple(dataclasses.replace(c, rank=r) for r, c in enumerate(ordered, start=1))


def export_playlist(candidates: Sequence["Candidate"], path: Path, *, name: str = "mixwith set") -> Path:
    """Write the set as ``.m3u``/``.m3u8`` or rekordbox ``.xml`` (by the file's extension).

    Raises
    ------
    InputError
        For another extension.
    """
    tracks = [PlaylistTrack(c.title, c.artist, c.path, None, c.bpm or None, c.camelot or c.key or None) for c in candidates]
    suffix = Path(path).suffix.lower()
    if suffix in (".m3u", ".m3u8"):
        text = to_m3u(tracks, name=name)
    elif suffix == ".xml":
        text = to_rekordbox_xml(tracks, name=name)
    else:
        raise InputError(f"cannot export to {suffix or 'a file without extension'}: use .m3u8 or .xml (rekordbox)")
    Path(path).write_text(text, encoding="utf-8")
    return Path(path)


# --- hybrid ranking over catalog rows (for workers.pipeline) ----------------------------------


async def rank_rows(
    conn: asyncpg.Connection,
    query: TrackFeatures,
    rows: Sequence[tracks_q.TrackRow],
    *,
    weights: Weights,
    options: MixOptions,
    mix_settings: MixSettings,
    model: als.AlsModel | None = None,
    sound: dict[int, float] | None = None,
    vectors: dict[int, np.ndarray] | None = None,
    cf_candidates: int = 200,
) -> list[tuple[Scored, tracks_q.TrackRow]]:
    """The hybrid ranker over catalog rows, with CF candidates and the user's options.

    Candidates are the given rows (harmonic/tempo neighbours from the caller's
    tempo window) ∪ the query's ALS neighbours that have an analysis ∪ the
    tracks in ``sound`` (sounds-like neighbours) when the caller fetched them
    into ``rows``. Filters come from ``options``, knobs and diversity from
    ``mix_settings``. Returns every kept candidate, best first (diversified
    for the first ``options.count``), paired with its row.
    """
    by_id = {r.id: r for r in rows}
    coplay: dict[int, float] = {}
    counts: dict[int, int] = {}
    if query.track_id >= 0:
        coplay, counts = await coplay_signals(conn, model, query.track_id, n=cf_candidates)
        missing = [t for t in coplay if t not in by_id]
        if missing:
            by_id.update(await tracks_q.get_tracks(conn, missing))
    usable = [r for r in by_id.values() if r.bpm is not None and r.energy is not None]
    feats = [TrackFeatures(r.id, float(r.bpm or 0.0), _row_key(r.camelot), int(r.energy or 5), r.artist, r.title)
             for r in usable]
    sources = merge_sources(**{
        SOURCE_HARMONIC: [r.id for r in rows],
        SOURCE_CF: list(coplay),
        SOURCE_SOUND: list(sound or {}),
    })
    common = dict(
        weights=weights,
        knobs=Knobs(flow=mix_settings.flow, sweetness=mix_settings.sweetness, smoothness=mix_settings.smoothness),
        filters=Filters(bpm_min=options.bpm_min, bpm_max=options.bpm_max, key_lock=options.key_lock,
                        exclude_same_artist=options.exclude_same_artist, energy=options.energy),
        sound=sound, coplay=coplay, coplay_counts=counts, sources=sources,
    )
    scored = rank_candidates(query, feats, diversity=None, **common)
    # diversity only where it shows (the reply's head), so its cost stays bounded
    diversity = Diversity(max_per_artist=mix_settings.max_per_artist,
                          artist_repeat_penalty=mix_settings.artist_repeat_penalty)
    head = rank_candidates(query, feats, vectors=vectors, diversity=diversity, limit=options.count, **common)
    head_ids = {s.track_id for s in head}
    ordered = head + [s for s in scored if s.track_id not in head_ids]
    return [(s, by_id[s.track_id]) for s in ordered]


def _row_key(camelot: str | None):
    if not camelot:
        return None
    try:
        return parse_key(camelot)
    except EngineError:
        return None
