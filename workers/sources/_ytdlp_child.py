"""Run one yt-dlp download in a child process (``python -m workers.sources._ytdlp_child``).

Reads a JSON job on stdin, prints one JSON line on stdout. A process, not a
thread: the parent can kill it at the deadline, and its environment carries
no proxy exceptions, so yt-dlp and ffmpeg reach the network only through the
parent's egress proxy.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


class _QuietLogger:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def debug(self, msg: str) -> None:
        pass

    def info(self, msg: str) -> None:
        pass

    def warning(self, msg: str) -> None:
        pass

    def error(self, msg: str) -> None:
        self.errors.append(msg)


def run(job: dict[str, Any]) -> dict[str, Any]:
    import yt_dlp
    from yt_dlp.utils import download_range_func

    out_dir = Path(job["out_dir"])
    log = _QuietLogger()
    opts: dict[str, Any] = {
        "format": "bestaudio/best",
        "outtmpl": str(out_dir / "%(id).40s.%(ext)s"),
        "allowed_extractors": job["extractors"],
        "max_filesize": job["max_bytes"],
        "socket_timeout": job["socket_timeout_s"],
        "noplaylist": True,
        "playlist_items": "1",
        "cachedir": False,
        "proxy": job["proxy"],
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "extractor_retries": 0,
        "retries": 0,
        "fragment_retries": 1,
        "logger": log,
        "overwrites": True,
    }
    if job.get("preview_s"):
        # only the first seconds: ffmpeg stops reading there, saving bandwidth and disk
        opts["download_ranges"] = download_range_func(None, [(0, float(job["preview_s"]))])
    try:
        with yt_dlp.YoutubeDL(opts) as ydl:
            info = ydl.extract_info(job["url"], download=True)
    except yt_dlp.utils.DownloadError as exc:
        return {"ok": False, "error": str(exc), "errors": log.errors}
    except Exception as exc:  # yt-dlp raises assorted errors from extractors
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "errors": log.errors}
    if info and info.get("entries") is not None:
        entries = [e for e in info["entries"] if e]
        if not entries:
            return {"ok": False, "error": "no results", "errors": log.errors}
        info = entries[0]
    downloads = info.get("requested_downloads") or []
    path = downloads[0].get("filepath") if downloads else None
    return {
        "ok": True,
        "path": path,
        "id": info.get("id"),
        "title": info.get("track") or info.get("title") or "",
        "artist": info.get("artist") or info.get("creator") or info.get("uploader") or "",
        "duration_s": info.get("duration"),
        "extractor": info.get("extractor_key") or info.get("extractor"),
        "webpage_url": info.get("webpage_url"),
    }


def main() -> None:
    job = json.loads(sys.stdin.read())
    sys.stdout.write(json.dumps(run(job)) + "\n")


if __name__ == "__main__":
    main()
