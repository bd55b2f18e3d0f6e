"""An on-disk landmark index, memory-mapped and shared by every worker process.

Layout of an index directory::

    CURRENT                 the active version number (replaced atomically)
    LOCK                    writers hold an exclusive flock on it
    versions/v00000007.json a version: its segments and the tracks removed from each
    segments/<name>/        an immutable segment:
        keys.npy    uint32 [n]  hashes, ascending
        vals.npy    uint32 [n]  (segment-local track << 16) | anchor frame
        tracks.npy  int64  [k]  the caller's track id of each local track
        durations.npy float32 [k]
        peaks.npy   uint32 [p]  every track's own spectral peaks, (frame << 16) | bin * 64,
                                track by track, ascending within a track (for ``verify``)
        peak_starts.npy int64 [k + 1]  where each local track's peaks begin in peaks.npy
        dense.npy   uint8  [f, 8]  every track's ``dense_bits``, one row per frame, track by
                                track (for ``verify_dense``)
        dense_starts.npy int64 [k + 1]  where each local track's rows begin in dense.npy

Segments never change once written; a version lists segments plus a
tombstone set per segment. Adding tracks writes a new small segment and a new
version; removing tracks writes a new version with more tombstones;
``compact`` merges segments and drops tombstoned entries. Every file is written
to a temporary name and moved into place with ``os.replace``, and CURRENT is
switched last, so a reader sees either the old or the new version, never half
of one. Readers map the arrays read-only (``np.load(mmap_mode='r')``): the OS
page cache is shared by all processes. Unreferenced segments are deleted after
``keep_versions`` newer versions exist; a reader still using one keeps its
mapping (POSIX unlink semantics), and ``reload`` picks up the new version.
A reader keeps, per large segment, a table of where each of the 2**21 hash values'
postings begin (8 MB, built on its first lookup) instead of binary-searching the keys.

Storage: 8 bytes per hash (key and packed value), 4 bytes per reference peak and 8 per frame
(250 B/s) of dense bits.
16 bits of frame at 31.25 frames/s cover 34 min per track; a segment holds up to
65 536 tracks.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import EngineError, ParameterError
from engine.fingerprint import (
    DEFAULT_CALIBRATION,
    DEFAULT_SPEEDS,
    DENSE_BYTES,
    FRAME_RATE,
    N_FFT,
    HASH_BITS,
    Calibration,
    Fingerprints,
    Hits,
    Identification,
    Match,
    identify,
    match,
    stable_order,
)

logger = logging.getLogger(__name__)

FORMAT = "mixwith-fpindex-4"
"""Index format; 4: segments keep every track's per-frame dense bits for verification (3: its peaks;
2: 16 kHz analysis, hashes on a part-logarithmic frequency scale; older formats must be rebuilt)."""
_TIME_BITS = 16
_MAX_FRAME = (1 << _TIME_BITS) - 1
MAX_TRACKS_PER_SEGMENT = 1 << (32 - _TIME_BITS)
MAX_TRACK_ID = (1 << 63) - 1
_CHECK_CHUNK = 1 << 22
# segments from this many keys (2 MB, ~1.4 h of audio) get the 8 MB posting table; smaller ones a
# binary search (at the dev catalog's 1.5 M keys the table cuts identify's CPU by 15-27 %)
_DIRECTORY_MIN_KEYS = 1 << 19
_BIN_SCALE = 64  # stored peak frequency in 1/64 bin: sub-bin precision, N_FFT / 2 * 64 < 2**16
assert (N_FFT // 2 + 1) * _BIN_SCALE <= 1 << 16


class IndexError_(EngineError):
    """The index directory is missing, damaged or of another format."""


@dataclass(frozen=True)
class IndexStats:
    """Size of the active version.

    Attributes
    ----------
    version : int
    n_tracks : int
        Live (not removed) tracks.
    n_hashes : int
        Stored hashes, removed tracks' included until compaction.
    n_segments : int
    bytes : int
        Bytes of hash and peak arrays on disk for this version.
    audio_s : float
        Total duration of the live tracks.
    peak_bytes : int
        The part of ``bytes`` holding the tracks' own peaks (for verification).
    dense_bytes : int
        The part of ``bytes`` holding the tracks' dense bits (for verification).
    """

    version: int
    n_tracks: int
    n_hashes: int
    n_segments: int
    bytes: int
    audio_s: float
    peak_bytes: int = 0
    dense_bytes: int = 0

    @property
    def bytes_per_hour(self) -> float:
        """Index bytes per hour of live audio."""
        return self.bytes / (self.audio_s / 3600.0) if self.audio_s > 0 else 0.0

    def to_dict(self) -> dict[str, float | int]:
        """Plain types for JSON (e.g. ``model_versions.metrics``)."""
        return {
            "version": self.version, "n_tracks": self.n_tracks, "n_hashes": self.n_hashes,
            "n_segments": self.n_segments, "bytes": self.bytes, "peak_bytes": self.peak_bytes,
            "dense_bytes": self.dense_bytes,
            "audio_s": round(self.audio_s, 1),
            "bytes_per_hour": round(self.bytes_per_hour),
        }


@dataclass(frozen=True)
class _Segment:
    name: str
    keys: np.ndarray
    vals: np.ndarray
    tracks: np.ndarray
    durations: np.ndarray
    peaks: np.ndarray
    peak_starts: np.ndarray
    dense: np.ndarray
    dense_starts: np.ndarray

    @property
    def peak_nbytes(self) -> int:
        return int(self.peaks.nbytes + self.peak_starts.nbytes)

    @property
    def dense_nbytes(self) -> int:
        return int(self.dense.nbytes + self.dense_starts.nbytes)

    @property
    def nbytes(self) -> int:
        return int(self.keys.nbytes + self.vals.nbytes) + self.peak_nbytes + self.dense_nbytes

    def track_peaks(self, local: int) -> np.ndarray:
        """Packed peaks of one local track."""
        return self.peaks[int(self.peak_starts[local]) : int(self.peak_starts[local + 1])]

    def track_dense(self, local: int) -> np.ndarray:
        """Dense bits of one local track, a row per frame."""
        return self.dense[int(self.dense_starts[local]) : int(self.dense_starts[local + 1])]


def _stored_peaks(fp: Fingerprints) -> tuple[np.ndarray, np.ndarray]:
    """The peaks kept for verification: the denser set when the fingerprints have one."""
    if fp.verify_frames is not None and fp.verify_bins is not None:
        return fp.verify_frames, fp.verify_bins
    return fp.peak_frames, fp.peak_bins


def _pack_peaks(fp: Fingerprints) -> np.ndarray:
    """A track's verification peaks as sorted uint32 ``(frame << 16) | bin * 64``."""
    frames, bins = _stored_peaks(fp)
    q = np.clip(np.rint(np.asarray(bins, np.float64) * _BIN_SCALE), 0, (1 << 16) - 1).astype(np.uint32)
    return np.sort((np.asarray(frames).astype(np.uint32) << np.uint32(16)) | q)


def _stored_dense(fp: Fingerprints) -> np.ndarray:
    """A track's dense bits as stored (none for fingerprints made without them)."""
    if fp.dense_bits is None:
        return np.zeros((0, DENSE_BYTES), np.uint8)
    bits = np.asarray(fp.dense_bits, dtype=np.uint8)
    if bits.ndim != 2 or bits.shape[1] != DENSE_BYTES:
        raise ParameterError(f"dense_bits must have shape (n_frames, {DENSE_BYTES}), got {bits.shape}")
    return bits


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json_atomic(path: Path, obj: object) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _save_array(path: Path, arr: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, arr, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


def _mapped(path: Path) -> np.ndarray:
    """A read-only memory map of an ``.npy`` file, as a plain array: slicing an ``np.memmap`` runs
    Python code for every piece (the subclass's ``__getitem__`` and ``__array_finalize__``), tens of
    times per query. The view keeps the mapping open."""
    return np.asarray(np.load(path, mmap_mode="r"))


def _run_positions(starts: np.ndarray, counts: np.ndarray, total: int) -> np.ndarray:
    """``concatenate([arange(s, s + c) for s, c in zip(starts, counts)])`` (``total`` = sum of counts),
    as one cumulative sum of steps: +1 within a run, a jump where the next run begins."""
    runs = np.flatnonzero(counts)
    first, n = starts[runs].astype(np.int64), counts[runs]
    step = np.ones(total, np.int64)
    at = np.cumsum(n) - n
    step[at[0]] = first[0]
    step[at[1:]] = first[1:] - (first[:-1] + n[:-1] - 1)
    return np.cumsum(step, out=step)


class FingerprintIndex:
    """A versioned, memory-mapped landmark index in one directory.

    Open with ``FingerprintIndex.open(path)`` (``create=True`` makes an empty one).
    Reading methods (``lookup``, ``query``, ``tracks``) use the version loaded at
    open or at the last ``reload``; writing methods lock the directory, build on
    the newest version on disk and leave this object at the version they wrote.
    """

    def __init__(self, root: Path, *, keep_versions: int, max_segments: int, max_postings: int) -> None:
        self._root = root
        self._max_postings = max_postings
        self._keep_versions = keep_versions
        self._max_segments = max_segments
        self._version = -1
        self._manifest: dict = {}
        self._segments: list[_Segment] = []
        self._alive: list[np.ndarray] = []
        self._track_table = np.zeros(0, np.int64)
        self._live_ids = np.zeros(0, np.int64)
        self._live_where = np.zeros((0, 2), np.int64)
        self._cache: dict[str, _Segment] = {}
        self._directories: dict[str, np.ndarray] = {}  # segment name -> posting table (``_directory``)
        self._distinct: dict[str, bool] = {}  # segment name -> ``_holds_no_entry_twice``
        self._all_alive: list[bool] = []

    # ---------------------------------------------------------------- opening
    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        create: bool = False,
        keep_versions: int = 3,
        max_segments: int = 8,
        max_postings: int = 200,
        first_version: int = 0,
    ) -> FingerprintIndex:
        """Open the index at ``path``.

        Parameters
        ----------
        path : path-like
            Index directory.
        create : bool
            Create an empty index when the directory holds none.
        keep_versions : int >= 1
            Old versions whose segments are kept for readers still on them.
        max_segments : int >= 2
            When an add leaves more segments than this, the small ones are merged.
        max_postings : int >= 1
            ``lookup`` skips hashes stored more often than this (in all segments):
            so common they say little about the track and cost the most time.
        first_version : int >= 0
            Version number of a newly created index (a rebuild continues the
            numbering of the index it replaces, so recorded versions stay unique).

        Raises
        ------
        IndexError_
            No index there (and ``create`` is False) or an unreadable one.
        """
        if keep_versions < 1:
            raise ParameterError("keep_versions must be at least 1")
        if max_segments < 2:
            raise ParameterError("max_segments must be at least 2")
        if max_postings < 1:
            raise ParameterError("max_postings must be at least 1")
        if first_version < 0:
            raise ParameterError("first_version must be >= 0")
        root = Path(path)
        if not (root / "CURRENT").is_file():
            if not create:
                raise IndexError_(f"no fingerprint index at {root}")
            (root / "versions").mkdir(parents=True, exist_ok=True)
            (root / "segments").mkdir(exist_ok=True)
            index = cls(root, keep_versions=keep_versions, max_segments=max_segments, max_postings=max_postings)
            with index._locked():
                if not (root / "CURRENT").is_file():
                    index._publish({"format": FORMAT, "hash_bits": HASH_BITS, "segments": []}, first=first_version)
        index = cls(root, keep_versions=keep_versions, max_segments=max_segments, max_postings=max_postings)
        index.reload()
        return index

    @staticmethod
    def stored_version(path: str | os.PathLike[str]) -> int | None:
        """The version number ``CURRENT`` names at ``path`` (even for an index :meth:`open` refuses), or None."""
        try:
            return int((Path(path) / "CURRENT").read_text().strip())
        except (OSError, ValueError):
            return None

    @property
    def path(self) -> Path:
        """Index directory."""
        return self._root

    @property
    def version(self) -> int:
        """Version this object reads."""
        return self._version

    def reload(self) -> bool:
        """Switch to the newest version on disk; return True if it changed."""
        for attempt in range(5):
            try:
                current = int((self._root / "CURRENT").read_text().strip())
                if current == self._version:
                    return False
                manifest = json.loads((self._root / "versions" / f"v{current:08d}.json").read_text())
                self._load(manifest)
                return True
            except FileNotFoundError:
                # a writer garbage-collected what we were about to open: read CURRENT again
                time.sleep(0.01 * (attempt + 1))
            except (ValueError, KeyError) as exc:
                raise IndexError_(f"damaged fingerprint index at {self._root}: {exc}") from None
        raise IndexError_(f"fingerprint index at {self._root} keeps changing under the reader")

    def _load(self, manifest: dict) -> None:
        if manifest.get("format") != FORMAT or manifest.get("hash_bits") != HASH_BITS:
            raise IndexError_(
                f"the fingerprint index at {self._root} has format {manifest.get('format')!r}, "
                f"this version of mixwith reads {FORMAT!r}: re-index the catalog "
                f"(`mixwith catalog reindex`, or delete {self._root} and run `mixwith catalog add` again)"
            )
        segments, alive = [], []
        for entry in manifest["segments"]:
            seg = self._cache.get(entry["name"]) or self._open_segment(entry["name"])
            removed = np.asarray(entry.get("removed", []), dtype=np.int64)
            segments.append(seg)
            alive.append(~np.isin(seg.tracks, removed))
        self._cache = {s.name: s for s in segments}
        self._directories = {name: t for name, t in self._directories.items() if name in self._cache}
        self._distinct = {name: f for name, f in self._distinct.items() if name in self._cache}
        self._segments, self._alive = segments, alive
        self._all_alive = [bool(a.all()) for a in alive]
        # every segment's tracks end to end: hits carry a dense position in this table
        self._track_table = np.concatenate([s.tracks for s in segments]).astype(np.int64) if segments else np.zeros(0, np.int64)
        # live track id -> (segment, local track), sorted by id, for reference_peaks
        where = [np.column_stack([np.full(int(a.sum()), i), np.flatnonzero(a)]) for i, a in enumerate(alive)]
        where_all = np.concatenate(where).astype(np.int64) if where else np.zeros((0, 2), np.int64)
        ids = np.concatenate([s.tracks[a] for s, a in zip(segments, alive)]).astype(np.int64) if segments else np.zeros(0, np.int64)
        order = np.argsort(ids, kind="stable")
        self._live_ids, self._live_where = ids[order], where_all[order]
        self._manifest = manifest
        self._version = int(manifest["version"])

    def _open_segment(self, name: str) -> _Segment:
        d = self._root / "segments" / name
        return _Segment(
            name=name,
            keys=_mapped(d / "keys.npy"),
            vals=_mapped(d / "vals.npy"),
            tracks=np.load(d / "tracks.npy"),
            durations=np.load(d / "durations.npy"),
            peaks=_mapped(d / "peaks.npy"),
            peak_starts=np.load(d / "peak_starts.npy"),
            dense=_mapped(d / "dense.npy"),
            dense_starts=np.load(d / "dense_starts.npy"),
        )

    # ---------------------------------------------------------------- reading
    def tracks(self) -> dict[int, float]:
        """Live track ids with their durations in seconds."""
        out: dict[int, float] = {}
        for seg, alive in zip(self._segments, self._alive):
            for tid, dur in zip(seg.tracks[alive].tolist(), seg.durations[alive].tolist()):
                out[int(tid)] = float(dur)
        return out

    def __contains__(self, track_id: object) -> bool:
        return any(
            bool(np.any(seg.tracks[alive] == track_id)) for seg, alive in zip(self._segments, self._alive)
        )

    def __len__(self) -> int:
        return int(sum(int(a.sum()) for a in self._alive))

    def stats(self) -> IndexStats:
        """Sizes of the version this object reads."""
        audio = sum(float(seg.durations[alive].sum()) for seg, alive in zip(self._segments, self._alive))
        return IndexStats(
            version=self._version,
            n_tracks=len(self),
            n_hashes=int(sum(s.keys.size for s in self._segments)),
            n_segments=len(self._segments),
            bytes=int(sum(s.nbytes for s in self._segments)),
            audio_s=audio,
            peak_bytes=int(sum(s.peak_nbytes for s in self._segments)),
            dense_bytes=int(sum(s.dense_nbytes for s in self._segments)),
        )

    def _live_location(self, track_id: int) -> tuple[_Segment, int] | None:
        """The segment holding a live track and its local position there; None when not live."""
        i = int(np.searchsorted(self._live_ids, track_id))
        if i >= self._live_ids.size or self._live_ids[i] != track_id:
            return None
        seg_i, local = self._live_where[i]
        return self._segments[int(seg_i)], int(local)

    def reference_peaks(self, track_id: int, start_frame: int = 0, end_frame: int = 1 << 16) -> tuple[np.ndarray, np.ndarray]:
        """A live track's own peaks in frames ``[start_frame, end_frame)`` (``engine.fingerprint.PeaksFn``).

        Returns
        -------
        frames : np.ndarray [shape=(n,), dtype=int32]
        bins : np.ndarray [shape=(n,), dtype=float32]
            Sub-bin frequencies (to 1/64 bin). Both empty for a track the index does not hold.
        """
        where = self._live_location(track_id)
        if where is None:
            return np.zeros(0, np.int32), np.zeros(0, np.float32)
        packed = where[0].track_peaks(where[1])
        # bounds as uint32 needles (a wider needle makes searchsorted copy the track's peaks to its type);
        # a bound past the last storable frame is the end
        lo, hi = (int(np.searchsorted(packed, np.uint32(f << 16))) if 0 < f <= _MAX_FRAME else (0 if f <= 0 else packed.size)
                  for f in (int(start_frame), int(end_frame)))
        window = np.asarray(packed[lo:hi])
        # 1/64 bin is exact in float32, as the division in double was
        return (window >> 16).astype(np.int32), (window & 0xFFFF).astype(np.float32) * np.float32(1 / _BIN_SCALE)

    def reference_dense(self, track_id: int, start_frame: int = 0, end_frame: int = 1 << 16) -> tuple[int, np.ndarray]:
        """A live track's dense bits for frames ``[start_frame, end_frame)`` (``engine.fingerprint.DenseFn``).

        Returns
        -------
        first_frame : int
            Track frame of the first row (``start_frame``, at least 0).
        bits : np.ndarray [shape=(n, DENSE_BYTES), dtype=uint8]
            Fewer rows where the track ends; none for a track the index does not hold.
        """
        first = max(int(start_frame), 0)
        where = self._live_location(track_id)
        if where is None:
            return first, np.zeros((0, DENSE_BYTES), np.uint8)
        rows = where[0].track_dense(where[1])
        return first, np.asarray(rows[first : max(int(end_frame), first)])

    def skipped_share(self) -> float:
        """Share of stored entries whose hash has more than ``max_postings`` entries (never looked up).

        Reads every key: for benchmarks and diagnostics, not for the query path.
        """
        keys = [np.asarray(s.keys) for s in self._segments if s.keys.size]
        if not keys:
            return 0.0
        _, counts = np.unique(np.concatenate(keys), return_counts=True)
        return float(counts[counts > self._max_postings].sum() / counts.sum())

    def _directory(self, seg: _Segment) -> np.ndarray | None:
        """Where each hash value's postings begin in a large segment (``[h]`` to ``[h + 1]``), or None.

        Two binary searches over tens of millions of mapped keys cost a query more than
        everything else in ``lookup`` (each step a cache miss); a table of the 2**21 hash
        values makes a posting range two reads. Built on first use in this process (one
        pass of sorted searches over the keys, ~0.2 s at 100 h) and kept while the segment
        is in use; small segments, where the table would dwarf the keys, go without.
        """
        if seg.keys.size == 0 or seg.keys.size < _DIRECTORY_MIN_KEYS or int(seg.keys[-1]) >> HASH_BITS:
            return None
        table = self._directories.get(seg.name)
        if table is None:
            dtype = np.uint32 if seg.keys.size < 1 << 32 else np.int64
            table = np.searchsorted(seg.keys, np.arange((1 << HASH_BITS) + 1, dtype=np.uint32)).astype(dtype)
            self._directories[seg.name] = table
        return table

    def _holds_no_entry_twice(self, seg: _Segment) -> bool:
        """Whether no hash of the segment has the same (track, frame) posting twice.

        What the writers produce (a reference hashes an anchor once per target, and the
        postings of one hash come out in ascending order), but not part of the format, so
        it is checked once per process: postings ascending strictly within each hash (one
        pass over the mapped keys and values, in chunks).
        """
        flag = self._distinct.get(seg.name)
        if flag is None:
            flag = True
            for start in range(0, max(seg.keys.size - 1, 0), _CHECK_CHUNK):
                end = min(start + _CHECK_CHUNK + 1, seg.keys.size)  # one entry of overlap
                k, v = np.asarray(seg.keys[start:end]), np.asarray(seg.vals[start:end])
                if np.any((k[1:] == k[:-1]) & (v[1:] <= v[:-1])):
                    flag = False
                    break
            self._distinct[seg.name] = flag
        return flag

    def _posting_ranges(self, seg: _Segment, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``[lo, hi)`` of each (sorted) query hash's postings in a segment."""
        table = self._directory(seg)
        if table is None:
            return np.searchsorted(seg.keys, q, side="left"), np.searchsorted(seg.keys, q, side="right")
        inside = q < (1 << HASH_BITS)  # a wider value is no hash: no postings
        qc = np.where(inside, q, 0).astype(np.int64)
        lo = table[qc].astype(np.int64)
        return lo, np.where(inside, table[qc + 1].astype(np.int64), lo)

    def lookup(self, hashes: np.ndarray) -> Hits:
        """Every live entry sharing a hash with ``hashes``.

        Parameters
        ----------
        hashes : np.ndarray [shape=(m,), dtype=uint32]

        Returns
        -------
        Hits
            ``query_index`` points into ``hashes``; hashes with more than
            ``max_postings`` entries are left out.
        """
        q_raw = np.asarray(hashes, dtype=np.uint32)
        # sorted needles walk the mapped keys in order: far fewer page and cache misses (ties by position:
        # the order of sorting hash << 32 | position, by radix passes at less CPU)
        q_order = stable_order(q_raw, bits=int(q_raw.max(initial=0)).bit_length())
        q = q_raw[q_order]
        parts_t, parts_f, parts_q = [], [], []
        ranges = []
        total_counts = np.zeros(q.size, np.int64)
        for seg in self._segments:
            if seg.keys.size == 0 or q.size == 0:
                ranges.append(None)
                continue
            lo, hi = self._posting_ranges(seg, q)
            ranges.append((lo, hi))
            total_counts += hi - lo
        common = total_counts > self._max_postings
        parts_i = []
        base = 0
        distinct = True  # segments hold different track positions, so only each one's own entries can repeat
        for seg, alive, all_alive, rng in zip(self._segments, self._alive, self._all_alive, ranges):
            seg_base, base = base, base + seg.tracks.size
            if rng is None:
                continue
            lo, hi = rng
            counts = np.where(common, 0, hi - lo)
            total = int(counts.sum())
            if total == 0:
                continue
            qi = np.repeat(q_order, counts)
            v = np.asarray(seg.vals[_run_positions(lo, counts, total)])
            local = (v >> _TIME_BITS).astype(np.int64)
            frames = (v & _MAX_FRAME).astype(np.int32)
            if not all_alive:  # tombstoned tracks' entries stay in the segment until compaction
                keep = alive[local]
                local, frames, qi = local[keep], frames[keep], qi[keep]
            parts_t.append(seg.tracks[local])
            parts_f.append(frames)
            parts_q.append(qi)
            parts_i.append(local + seg_base if seg_base else local)
            distinct = distinct and self._holds_no_entry_twice(seg)
        if not parts_t:
            return Hits(np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int64))
        if len(parts_t) == 1:  # one segment: no copies
            return Hits(parts_t[0], parts_f[0], parts_q[0], track_index=parts_i[0], track_table=self._track_table,
                        distinct=distinct)
        return Hits(np.concatenate(parts_t), np.concatenate(parts_f), np.concatenate(parts_q),
                    track_index=np.concatenate(parts_i), track_table=self._track_table, distinct=distinct)

    def query(
        self,
        fp: Fingerprints,
        *,
        speeds: Sequence[float] = DEFAULT_SPEEDS,
        calibration: Calibration = DEFAULT_CALIBRATION,
        max_candidates: int = 5,
    ) -> list[Match]:
        """Candidate tracks for a clip's fingerprints, best first (see ``engine.fingerprint.match``;
        verified against the tracks' own peaks and dense bits when ``fp`` has a peak map)."""
        return match(fp, self.lookup, speeds=speeds, calibration=calibration, max_candidates=max_candidates,
                     peaks=self.reference_peaks, dense=self.reference_dense)

    def identify(
        self,
        y: np.ndarray,
        *,
        sr: int,
        calibration: Calibration = DEFAULT_CALIBRATION,
        max_candidates: int = 5,
        keep_speeds: int = 3,
    ) -> Identification:
        """``engine.fingerprint.identify`` of a clip against this index, with every reference
        accessor it verifies against (peaks, dense bits) wired in one place."""
        return identify(y, sr=sr, lookup=self.lookup, peaks=self.reference_peaks, dense=self.reference_dense,
                        calibration=calibration, max_candidates=max_candidates, keep_speeds=keep_speeds)

    # ---------------------------------------------------------------- writing
    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self._root / "LOCK", "a+") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def add(self, track_id: int, fp: Fingerprints) -> int:
        """Add (or replace) one track; return the new version."""
        return self.add_many([(track_id, fp)])

    def add_many(self, items: Iterable[tuple[int, Fingerprints]]) -> int:
        """Add (or replace) tracks in one new segment; return the new version.

        Parameters
        ----------
        items : iterable of (int, Fingerprints)
            Track ids (non-negative, the catalog's) with their reference fingerprints.
        """
        items = list(items)
        if not items:
            return self._version
        ids = [int(t) for t, _ in items]
        if len(set(ids)) != len(ids):
            raise ParameterError("a track id appears twice in one add")
        for tid, fp in items:
            if not 0 <= tid <= MAX_TRACK_ID:
                raise ParameterError(f"track id must be a non-negative int64, got {tid}")
            if max(int(fp.hash_frames.max(initial=0)), int(np.max(_stored_peaks(fp)[0], initial=0)),
                   _stored_dense(fp).shape[0] - 1) > _MAX_FRAME:
                raise ParameterError(
                    f"track {tid} is longer than the index's {_MAX_FRAME / FRAME_RATE / 60:.0f} min"
                )
        chunks = [items[i : i + MAX_TRACKS_PER_SEGMENT] for i in range(0, len(items), MAX_TRACKS_PER_SEGMENT)]
        with self._locked():
            manifest = self._newest_manifest()
            segments = [dict(s) for s in manifest["segments"]]
            self._tombstone(segments, set(ids))
            for chunk in chunks:
                keys = [fp.hashes for _, fp in chunk]
                vals = [
                    (np.uint32(i) << np.uint32(_TIME_BITS)) | fp.hash_frames.astype(np.uint32)
                    for i, (_, fp) in enumerate(chunk)
                ]
                name = self._write_segment(
                    np.concatenate(keys) if keys else np.zeros(0, np.uint32),
                    np.concatenate(vals) if vals else np.zeros(0, np.uint32),
                    np.array([t for t, _ in chunk], dtype=np.int64),
                    np.array([fp.duration_s for _, fp in chunk], dtype=np.float32),
                    [_pack_peaks(fp) for _, fp in chunk],
                    [_stored_dense(fp) for _, fp in chunk],
                )
                segments.append({"name": name, "removed": []})
            if len(segments) > self._max_segments:
                segments = self._merge_small(segments)
            return self._publish({**manifest, "segments": segments})

    def remove(self, track_ids: int | Iterable[int]) -> int:
        """Remove tracks (unknown ids are ignored); return the new version."""
        ids = {int(track_ids)} if isinstance(track_ids, (int, np.integer)) else {int(t) for t in track_ids}
        with self._locked():
            manifest = self._newest_manifest()
            segments = [dict(s) for s in manifest["segments"]]
            if not self._tombstone(segments, ids):
                self.reload()
                return self._version
            return self._publish({**manifest, "segments": segments})

    def compact(self) -> int:
        """Merge every segment into as few as possible, dropping removed tracks."""
        with self._locked():
            manifest = self._newest_manifest()
            merged = self._merge([dict(s) for s in manifest["segments"]])
            return self._publish({**manifest, "segments": merged})

    def _newest_manifest(self) -> dict:
        self.reload()
        return self._manifest

    def _tombstone(self, segments: list[dict], ids: set[int]) -> bool:
        changed = False
        for entry in segments:
            seg = self._cache.get(entry["name"]) or self._open_segment(entry["name"])
            removed = set(entry.get("removed", []))
            hit = {int(t) for t in seg.tracks.tolist() if int(t) in ids} - removed
            if hit:
                entry["removed"] = sorted(removed | hit)
                changed = True
        return changed

    def _merge_small(self, segments: list[dict]) -> list[dict]:
        sizes = [self._segment_size(e["name"]) for e in segments]
        biggest = int(np.argmax(sizes))
        rest = [e for i, e in enumerate(segments) if i != biggest]
        return [segments[biggest], *self._merge(rest)]

    def _segment_size(self, name: str) -> int:
        seg = self._cache.get(name) or self._open_segment(name)
        return int(seg.keys.size)

    def _merge(self, entries: list[dict]) -> list[dict]:
        """Merge segments into new ones of at most MAX_TRACKS_PER_SEGMENT live tracks."""
        pieces = []  # (track_id, duration, keys, frames, packed peaks, dense bits) of live tracks
        for entry in entries:
            seg = self._cache.get(entry["name"]) or self._open_segment(entry["name"])
            removed = set(entry.get("removed", []))
            live = [i for i, t in enumerate(seg.tracks.tolist()) if t not in removed]
            if not live:
                continue
            local = np.asarray(seg.vals) >> _TIME_BITS
            order = np.argsort(local, kind="stable")
            bounds = np.searchsorted(local[order], np.arange(seg.tracks.size + 1))
            for i in live:
                sel = order[bounds[i] : bounds[i + 1]]
                pieces.append((int(seg.tracks[i]), float(seg.durations[i]), np.asarray(seg.keys)[sel],
                               np.asarray(seg.vals)[sel] & _MAX_FRAME, np.asarray(seg.track_peaks(i)),
                               np.asarray(seg.track_dense(i))))
        out = []
        for start in range(0, len(pieces), MAX_TRACKS_PER_SEGMENT):
            chunk = pieces[start : start + MAX_TRACKS_PER_SEGMENT]
            keys = np.concatenate([p[2] for p in chunk]).astype(np.uint32)
            vals = np.concatenate(
                [(np.uint32(i) << np.uint32(_TIME_BITS)) | p[3].astype(np.uint32) for i, p in enumerate(chunk)]
            )
            name = self._write_segment(
                keys, vals, np.array([p[0] for p in chunk], np.int64), np.array([p[1] for p in chunk], np.float32),
                [p[4] for p in chunk], [p[5] for p in chunk],
            )
            out.append({"name": name, "removed": []})
        return out

    def _write_segment(
        self, keys: np.ndarray, vals: np.ndarray, tracks: np.ndarray, durations: np.ndarray, peaks: list[np.ndarray],
        dense: list[np.ndarray],
    ) -> str:
        order = np.argsort(keys, kind="stable")
        peak_starts = np.concatenate([[0], np.cumsum([p.size for p in peaks])]).astype(np.int64)
        dense_starts = np.concatenate([[0], np.cumsum([d.shape[0] for d in dense])]).astype(np.int64)
        name = f"s{time.time_ns():x}-{uuid.uuid4().hex[:8]}"
        tmp = self._root / "segments" / f".{name}.tmp"
        tmp.mkdir(parents=True)
        _save_array(tmp / "keys.npy", keys[order].astype(np.uint32))
        _save_array(tmp / "vals.npy", vals[order].astype(np.uint32))
        _save_array(tmp / "tracks.npy", tracks.astype(np.int64))
        _save_array(tmp / "durations.npy", durations.astype(np.float32))
        _save_array(tmp / "peaks.npy", np.concatenate(peaks).astype(np.uint32) if peaks else np.zeros(0, np.uint32))
        _save_array(tmp / "peak_starts.npy", peak_starts)
        _save_array(tmp / "dense.npy", np.concatenate(dense).astype(np.uint8) if dense else np.zeros((0, DENSE_BYTES), np.uint8))
        _save_array(tmp / "dense_starts.npy", dense_starts)
        _fsync_dir(tmp)
        os.replace(tmp, self._root / "segments" / name)
        _fsync_dir(self._root / "segments")
        return name

    def _publish(self, manifest: dict, *, first: int = 0) -> int:
        """Write a new version (``first`` when there is none yet), switch CURRENT to it, collect garbage, load it."""
        versions = self._root / "versions"
        current_file = self._root / "CURRENT"
        newest = int(current_file.read_text().strip()) if current_file.is_file() else 0
        version = newest + 1 if current_file.is_file() else first
        manifest = {**manifest, "version": version, "created_unix": time.time()}
        _write_json_atomic(versions / f"v{version:08d}.json", manifest)
        tmp = self._root / f".CURRENT.{uuid.uuid4().hex}.tmp"
        tmp.write_text(f"{version}\n")
        os.replace(tmp, current_file)
        _fsync_dir(self._root)
        self._collect_garbage(version)
        self.reload()
        logger.info("fingerprint index %s now at version %d", self._root, version)
        return version

    def _collect_garbage(self, version: int) -> None:
        keep_from = version - self._keep_versions
        referenced: set[str] = set()
        for f in sorted((self._root / "versions").glob("v*.json")):
            v = int(f.stem[1:])
            if v < keep_from:
                f.unlink(missing_ok=True)
                continue
            referenced.update(e["name"] for e in json.loads(f.read_text())["segments"])
        for d in (self._root / "segments").iterdir():
            if d.name not in referenced and not d.name.startswith("."):
                shutil.rmtree(d, ignore_errors=True)
