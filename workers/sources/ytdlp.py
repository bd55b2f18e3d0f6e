"""YouTube, SoundCloud and Bandcamp links (and searches) through yt-dlp.

Each download runs in a child process under a deadline, with extractors
restricted to the link's service, only the first ``preview_s`` seconds
fetched, and all traffic through an :class:`EgressProxy` enforcing the SSRF
guard. yt-dlp skips oversize files silently, so the output is checked.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from workers.errors import BlockedURLError, FetchError, InputError, TransientError
from workers.settings import FetchSettings
from workers.sources.base import FetchedAudio
from workers.sources.egress import EgressProxy
from workers.sources.links import Resolver

logger = logging.getLogger(__name__)

# yt-dlp extractor names (regexes) each service may use; nothing else is loaded
EXTRACTORS: dict[str, tuple[str, ...]] = {
    "youtube": ("youtube",),
    "soundcloud": ("soundcloud",),
    "bandcamp": ("bandcamp",),
    "search": ("youtube:search",),
}
_SAFE_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV")


def _child_env() -> dict[str, str]:
    # no *_proxy / no_proxy: ffmpeg must not be told to go around the egress proxy
    env = {k: v for k, v in os.environ.items() if k in _SAFE_ENV}
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")] if p)
    return env


def _explain(error: str, *, service: str) -> Exception:
    """Turn yt-dlp's message into one sentence of the right error class."""
    low = error.lower()
    if "unsupported url" in low or "no suitable extractor" in low:
        return InputError(f"That {service} link is not one I can fetch.")
    if "http error 404" in low or "not found" in low or "does not exist" in low or "unavailable" in low:
        return FetchError(f"{service.capitalize()} says that item does not exist or is unavailable.")
    if "sign in" in low or "confirm you" in low or "private" in low:
        return FetchError(f"{service.capitalize()} refused to serve it to us (sign-in or bot check); upload the audio instead.")
    if re.search(r"http error 5\d\d|timed out|timeout|connection reset|temporarily", low):
        return TransientError(f"{service.capitalize()} is not answering right now; try again later.")
    if "no results" in low:
        return FetchError("No audio found for that song.")
    return FetchError(f"Could not fetch that {service} link.")


async def fetch_ytdlp(
    url: str,
    *,
    service: str,
    work_dir: Path,
    settings: FetchSettings,
    extractors: Sequence[str] | None = None,
    source_key: str = "",
    resolver: Resolver | None = None,
) -> FetchedAudio:
    """Download the first ``settings.preview_s`` seconds of ``url``.

    Parameters
    ----------
    url : str
        A service URL, or ``ytsearch1:<query>`` for a search.
    service : str
        Key of ``EXTRACTORS`` (also named in error messages).
    extractors : sequence of str or None
        Override the allowed extractors (tests use ``("generic",)``).

    Raises
    ------
    BlockedURLError
        yt-dlp or ffmpeg tried to reach a refused address.
    InputError, FetchError, TransientError
        Unsupported link; missing, refused or oversize; timeouts and 5xx.
    """
    allowed = list(extractors if extractors is not None else EXTRACTORS[service])
    work_dir.mkdir(parents=True, exist_ok=True)
    out_dir = Path(tempfile.mkdtemp(dir=work_dir, prefix="ytdlp-"))
    async with EgressProxy(
        allow_loopback=settings.allow_loopback_for_tests, resolver=resolver, connect_timeout_s=settings.connect_timeout_s
    ) as proxy:
        job = {
            "url": url, "out_dir": str(out_dir), "extractors": allowed, "max_bytes": settings.max_bytes,
            "socket_timeout_s": settings.connect_timeout_s, "proxy": proxy.url, "preview_s": settings.preview_s,
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "workers.sources._ytdlp_child",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=_child_env(),
        )
        try:
            async with asyncio.timeout(settings.timeout_s):
                out, err = await proc.communicate(json.dumps(job).encode())
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise TransientError(f"Fetching from {service} took longer than {settings.timeout_s:g} s.") from None
        except asyncio.CancelledError:
            proc.kill()
            raise
        refusals = list(proxy.refusals)
        failures = list(proxy.failures)
    try:
        result = json.loads(out.decode().strip().splitlines()[-1])
    except (IndexError, ValueError):
        logger.error("yt-dlp child failed: %s", err.decode(errors="replace")[-2000:])
        raise FetchError(f"Could not fetch that {service} link.") from None
    if refusals:
        raise BlockedURLError(refusals[0])
    if not result["ok"]:
        logger.info("yt-dlp failed on %s: %s", url, result["error"])
        if failures:
            raise FetchError(failures[0])
        raise _explain(result["error"], service=service)
    path = Path(result["path"]) if result.get("path") else None
    if path is None or not path.exists():
        # max_filesize makes yt-dlp skip the download without an error
        raise FetchError(f"The audio is larger than the {settings.max_bytes / 1e6:.1f} MB limit.")
    if path.stat().st_size > settings.max_bytes:
        path.unlink(missing_ok=True)
        raise FetchError(f"The audio is larger than the {settings.max_bytes / 1e6:.1f} MB limit.")
    key = source_key or f"{service}:{result.get('id') or url}"
    return FetchedAudio(
        path=path, title=result.get("title") or "", artist=result.get("artist") or "",
        source_key=key, duration_s=result.get("duration_s"),
    )
