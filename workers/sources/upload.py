"""Uploads: bytes from the bots, checked, spooled to disk and deleted after processing."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from pathlib import Path

from workers.errors import InputError
from workers.sources.base import FetchedAudio

logger = logging.getLogger(__name__)

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def sniff_audio(data: bytes) -> str:
    """The container of ``data`` from its first bytes, as a file extension.

    Raises
    ------
    InputError
        Not a container we decode (so a renamed PDF or HTML page is refused
        before ffmpeg ever sees it).
    """
    head = data[:16]
    if head[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return ".wav"
    if head[:4] == b"fLaC":
        return ".flac"
    if head[:4] == b"OggS":
        return ".ogg"
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0 and (head[1] & 0x06) != 0):
        return ".mp3"
    if head[:2] in (b"\xff\xf1", b"\xff\xf9"):
        return ".aac"
    if data[4:8] == b"ftyp":
        return ".m4a"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return ".webm"
    if head[:4] == b"FORM" and data[8:12] in (b"AIFF", b"AIFC"):
        return ".aiff"
    raise InputError("That file is not audio I can read (wav, mp3, flac, ogg, m4a, webm, aiff).")


class UploadSpool:
    """A directory of uploads awaiting (or kept after) processing.

    Parameters
    ----------
    directory : Path
    max_bytes : int
        Larger uploads are refused.
    retention_s : float
        How long a processed upload is kept; 0 deletes it as soon as its job ends.
    """

    def __init__(self, directory: Path, *, max_bytes: int, retention_s: float = 0.0) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.retention_s = retention_s
        directory.mkdir(parents=True, exist_ok=True)

    def write(self, request_id: str, data: bytes, *, filename: str = "upload") -> FetchedAudio:
        """Check and store an upload; the source key is its content hash."""
        if not data:
            raise InputError("The uploaded file is empty.")
        if len(data) > self.max_bytes:
            raise InputError(f"The upload is {len(data) / 1e6:.1f} MB; the limit is {self.max_bytes / 1e6:.1f} MB.")
        ext = sniff_audio(data)
        path = self.directory / f"{_SAFE_NAME.sub('_', request_id)[:64]}{ext}"
        tmp = path.with_suffix(ext + ".part")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        title = Path(filename).stem[:200] or "upload"
        return FetchedAudio(path=path, title=title, source_key=f"upload:{hashlib.sha256(data).hexdigest()}")

    def release(self, path: Path) -> None:
        """The job is over: delete now, or leave it for :meth:`sweep` when retention is set."""
        if self.retention_s <= 0:
            path.unlink(missing_ok=True)

    def sweep(self, *, now: float | None = None) -> int:
        """Delete uploads older than the retention period; return how many."""
        now = time.time() if now is None else now
        removed = 0
        for path in self.directory.iterdir():
            try:
                if path.is_file() and now - path.stat().st_mtime > self.retention_s:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                pass
        return removed
