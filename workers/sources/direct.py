"""Direct https audio links, streamed with aiohttp under a byte and time limit.

The session's resolver is the SSRF guard: aiohttp connects only to addresses
the guard resolved and checked itself, and every redirect hop is checked
again before it is followed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from workers.errors import FetchError, MixwithError, TransientError
from workers.settings import FetchSettings
from workers.sources.base import FetchedAudio
from workers.sources.links import Resolver, check_host, check_url, normalise_url

logger = logging.getLogger(__name__)

_AUDIO_TYPES = ("audio/", "video/", "application/ogg", "application/octet-stream")
_REDIRECTS = (301, 302, 303, 307, 308)
_CHUNK = 64 * 1024


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that answers only with addresses the SSRF guard accepted."""

    def __init__(self, *, allow_loopback: bool = False, resolver: Resolver | None = None) -> None:
        self._allow_loopback = allow_loopback
        self._resolver = resolver

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        loop = asyncio.get_running_loop()
        # a refusal raised here ends the connection attempt before any socket is opened
        addresses = await loop.run_in_executor(
            None, lambda: check_host(host, port, allow_loopback=self._allow_loopback, resolver=self._resolver)
        )
        return [
            ResolveResult(
                hostname=host,
                host=a,
                port=port,
                family=socket.AF_INET6 if ":" in a else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for a in addresses
        ]

    async def close(self) -> None:
        return None


def make_session(settings: FetchSettings, *, resolver: Resolver | None = None) -> aiohttp.ClientSession:
    """An aiohttp session whose every connection goes through the SSRF guard.

    ``trust_env=False`` keeps proxy variables from routing around the guard;
    the DNS cache is off so each connection is resolved and checked afresh.
    """
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(allow_loopback=settings.allow_loopback_for_tests, resolver=resolver),
        use_dns_cache=False,
        limit=32,
    )
    timeout = aiohttp.ClientTimeout(total=settings.timeout_s, sock_connect=settings.connect_timeout_s)
    return aiohttp.ClientSession(
        connector=connector, timeout=timeout, trust_env=False, headers={"User-Agent": "mixwith/0.1"}
    )


async def open_checked(
    session: aiohttp.ClientSession,
    url: str,
    *,
    settings: FetchSettings,
    resolver: Resolver | None = None,
    method: str = "GET",
    **kwargs: Any,
) -> aiohttp.ClientResponse:
    """Send a request, following redirects ourselves so that each hop passes :func:`check_url`.

    The caller must release the returned response.

    Raises
    ------
    BlockedURLError
        The URL or any redirect target is refused.
    FetchError
        Too many redirects, or a redirect without a location.
    """
    loop = asyncio.get_running_loop()
    for _hop in range(settings.max_redirects + 1):
        await loop.run_in_executor(
            None, lambda u=url: check_url(u, allow_loopback=settings.allow_loopback_for_tests, resolver=resolver)
        )
        try:
            resp = await session.request(method, url, allow_redirects=False, **kwargs)
        except aiohttp.ClientConnectorError as exc:
            _raise_blocked_cause(exc)
            raise TransientError(f"Could not connect to {_host(url)}.") from exc
        if resp.status not in _REDIRECTS:
            return resp
        location = resp.headers.get("Location")
        resp.release()
        if not location:
            raise FetchError(f"{_host(url)} answered with a redirect that leads nowhere.")
        url = urljoin(url, location)
        logger.debug("following redirect to %s", url)
    raise FetchError(f"The link redirects more than {settings.max_redirects} times.")


def _raise_blocked_cause(exc: BaseException) -> None:
    """Re-raise the guard's own error if aiohttp wrapped it."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, MixwithError):
            raise cause from None
        cause = cause.__cause__ or cause.__context__


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).hostname or url


async def download(
    session: aiohttp.ClientSession,
    url: str,
    *,
    dest: Path,
    settings: FetchSettings,
    resolver: Resolver | None = None,
    require_audio: bool = True,
) -> tuple[Path, str]:
    """Stream ``url`` into ``dest`` under ``settings.max_bytes``; return (path, content type).

    Raises
    ------
    BlockedURLError, FetchError, TransientError
        Refused address; 4xx, not audio, too large; timeouts, 5xx, resets.
    """
    try:
        async with asyncio.timeout(settings.timeout_s):
            resp = await open_checked(session, url, settings=settings, resolver=resolver)
            try:
                return await _save(resp, url=url, dest=dest, settings=settings, require_audio=require_audio)
            finally:
                resp.release()
    except TimeoutError:
        dest.unlink(missing_ok=True)
        raise TransientError(f"{_host(url)} took longer than {settings.timeout_s:g} s to send the audio.") from None
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
        dest.unlink(missing_ok=True)
        raise TransientError(f"The connection to {_host(url)} broke off ({type(exc).__name__}).") from exc


async def _save(resp: aiohttp.ClientResponse, *, url: str, dest: Path, settings: FetchSettings, require_audio: bool) -> tuple[Path, str]:
    host = _host(url)
    if resp.status >= 500 or resp.status == 429:
        raise TransientError(f"{host} answered {resp.status}; try again later.")
    if resp.status == 404 or resp.status == 410:
        raise FetchError(f"{host} says the file does not exist ({resp.status}).")
    if resp.status >= 400:
        raise FetchError(f"{host} refused the download ({resp.status}).")
    ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if require_audio and not ctype.startswith(_AUDIO_TYPES):
        raise FetchError(f"The link is not an audio file (it is {ctype or 'of unknown type'}).")
    declared = resp.content_length
    limit_mb = settings.max_bytes / 1e6
    if declared is not None and declared > settings.max_bytes:
        raise FetchError(f"The file is {declared / 1e6:.1f} MB; the limit is {limit_mb:.1f} MB.")
    got = 0
    try:
        with open(dest, "wb") as out:
            async for chunk in resp.content.iter_chunked(_CHUNK):
                got += len(chunk)
                if got > settings.max_bytes:  # servers lie or omit Content-Length
                    raise FetchError(f"The file is larger than the {limit_mb:.1f} MB limit.")
                out.write(chunk)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    if got == 0:
        dest.unlink(missing_ok=True)
        raise FetchError(f"{host} sent an empty file.")
    return dest, ctype


_EXT = {"audio/mpeg": ".mp3", "audio/wav": ".wav", "audio/x-wav": ".wav", "audio/flac": ".flac", "audio/ogg": ".ogg",
        "application/ogg": ".ogg", "audio/mp4": ".m4a", "audio/aac": ".aac", "audio/webm": ".webm", "video/mp4": ".mp4"}


async def fetch_direct(
    url: str,
    *,
    session: aiohttp.ClientSession,
    work_dir: Path,
    settings: FetchSettings,
    resolver: Resolver | None = None,
) -> FetchedAudio:
    """Fetch a direct audio URL into ``work_dir``."""
    work_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=work_dir, prefix="direct-")
    os.close(fd)
    try:
        path, ctype = await download(session, url, dest=Path(tmp), settings=settings, resolver=resolver)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    final = path.with_suffix(_EXT.get(ctype, Path(url.split("?")[0]).suffix[:6] or ".bin"))
    path.rename(final)
    name = Path(url.split("?")[0]).stem or "audio"
    norm = normalise_url(url)
    return FetchedAudio(path=final, title=name, source_key=f"direct:{norm}")
