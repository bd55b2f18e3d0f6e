"""Which service a link belongs to, and whether we may fetch it at all.

Links are parsed from one table, one pattern per service (beets-style id
extractors), so adding a service is one row. The SSRF guard decides whether a
URL may be fetched: a link from a chat is untrusted input and must never
reach our own network. Hosts are resolved once, every address is checked,
and callers connect to exactly the addresses that passed (``resolve_checked``),
so a DNS answer that changes between check and connect cannot slip through.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from workers.errors import BlockedURLError, FetchError, InputError

logger = logging.getLogger(__name__)

Service = Literal["spotify", "youtube", "soundcloud", "bandcamp", "direct"]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# getaddrinfo-shaped resolver: (host, port) -> addresses; injectable so tests can stand in for DNS
Resolver = Callable[[str, int], Sequence[str]]

MAX_URL_CHARS = 2048
LOOPBACK_FOR_TESTS = ipaddress.ip_address("127.0.0.1")


@dataclass(frozen=True)
class Link:
    """A recognised link.

    Attributes
    ----------
    service : {"spotify", "youtube", "soundcloud", "bandcamp", "direct"}
    url : str
        The URL to fetch (for Spotify: the canonical open.spotify.com URL).
    item_id : str
        The service's id (video id, Spotify track id) or the normalised URL.
    source_key : str
        Normalised cache key, ``service:item_id``: the same song linked two
        ways (``youtu.be/x`` and ``youtube.com/watch?v=x``) shares one key.
    """

    service: Service
    url: str
    item_id: str
    source_key: str


@dataclass(frozen=True)
class _Pattern:
    service: Service
    regex: re.Pattern[str]
    # builds (fetch url, item id) from the match
    build: Callable[[re.Match[str]], tuple[str, str]]


def _spotify(m: re.Match[str]) -> tuple[str, str]:
    tid = m.group("id")
    return f"https://open.spotify.com/track/{tid}", tid


def _youtube(m: re.Match[str]) -> tuple[str, str]:
    vid = m.group("id")
    return f"https://www.youtube.com/watch?v={vid}", vid


def _path_url(host: str) -> Callable[[re.Match[str]], tuple[str, str]]:
    def build(m: re.Match[str]) -> tuple[str, str]:
        path = m.group("path").rstrip("/").lower()
        sub = (m.groupdict().get("sub") or "").lower()
        where = f"{sub}.{host}" if sub else host
        return f"https://{where}/{path}", f"{where}/{path}"

    return build


# One row per service; the first match wins. Spotify accepts URIs, intl-xx paths and embeds.
LINK_TABLE: tuple[_Pattern, ...] = (
    _Pattern(
        "spotify",
        re.compile(
            r"^(?:spotify:track:|https?://open\.spotify\.com/(?:intl-[a-z]{2}(?:-[a-z]{2})?/)?(?:embed/)?track/)"
            r"(?P<id>[A-Za-z0-9]{22})(?:[?#/].*)?$"
        ),
        _spotify,
    ),
    _Pattern(
        "youtube",
        re.compile(
            r"^https?://(?:(?:www|m|music)\.)?(?:youtube\.com/(?:watch\?(?:.*&)?v=|shorts/|embed/|live/)|youtu\.be/)"
            r"(?P<id>[A-Za-z0-9_-]{11})(?:[?&#/].*)?$"
        ),
        _youtube,
    ),
    _Pattern(
        "soundcloud",
        re.compile(r"^https?://(?:www\.|m\.)?soundcloud\.com/(?P<path>[A-Za-z0-9_-]+/[A-Za-z0-9_-]+)/?(?:[?#].*)?$"),
        _path_url("soundcloud.com"),
    ),
    _Pattern(
        "bandcamp",
        re.compile(r"^https?://(?P<sub>[a-z0-9-]+)\.bandcamp\.com/(?P<path>track/[A-Za-z0-9_-]+)/?(?:[?#].*)?$"),
        _path_url("bandcamp.com"),
    ),
)


def parse_link(text: str) -> Link:
    """Recognise a link pasted by a user.

    Anything that is not a known service but is an http(s) URL is a
    ``direct`` link (an audio file on some web server); whether it may be
    fetched is decided later by :func:`check_url`.

    Raises
    ------
    InputError
        Empty input, overlong input, or not a link at all.
    BlockedURLError
        A URL with a scheme other than http or https.
    """
    text = (text or "").strip().strip("<>")  # Slack and Discord wrap links in <...>
    if not text:
        raise InputError("Give me a link or upload an audio file.")
    if len(text) > MAX_URL_CHARS:
        raise InputError(f"That link is longer than {MAX_URL_CHARS} characters.")
    for pattern in LINK_TABLE:
        m = pattern.regex.match(text)
        if m:
            url, item_id = pattern.build(m)
            return Link(pattern.service, url, item_id, f"{pattern.service}:{item_id}")
    scheme = urlsplit(text).scheme.lower()
    if scheme not in ("http", "https") and ("://" in text or scheme in ("file", "data", "javascript", "gopher")):
        raise BlockedURLError(f"Only http and https links can be fetched, not {scheme}:.")
    if scheme not in ("http", "https"):
        raise InputError("That is not a link I can use: send a Spotify, YouTube, SoundCloud, Bandcamp or https audio link.")
    url = normalise_url(text)
    return Link("direct", url, url, f"direct:{url}")


def normalise_url(url: str) -> str:
    """Lower-case scheme and host, drop default ports and fragments: one cache key per resource."""
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".")
    port = parts.port
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != default:
        netloc += f":{port}"
    return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", parts.query, ""))


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address tunnels to, if any (mapped, 6to4, Teredo, NAT64, compatible)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    packed = ip.packed
    if packed[:12] == bytes(12) and int(ip) > 1:  # ::a.b.c.d (deprecated IPv4-compatible)
        return ipaddress.IPv4Address(packed[12:])
    if ip in ipaddress.ip_network("64:ff9b::/96") or ip in ipaddress.ip_network("64:ff9b:1::/48"):
        return ipaddress.IPv4Address(packed[12:])
    return None


def address_problem(ip: IPAddress, *, allow_loopback: bool = False) -> str | None:
    """Why ``ip`` must not be contacted, or None when it is a public address.

    ``allow_loopback`` lets exactly 127.0.0.1 through, for tests with local
    servers; it defaults off and nothing else on the loopback net passes.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return "an IPv6 address with a zone"
        inner = _embedded_ipv4(ip)
        if inner is not None:
            problem = address_problem(inner, allow_loopback=False)
            return f"an IPv6 address wrapping {inner}, {problem}" if problem else None
    if allow_loopback and ip == LOOPBACK_FOR_TESTS:
        return None
    checks = (
        ("is_unspecified", "an unspecified address"),
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address"),
        ("is_multicast", "a multicast address"),
        ("is_reserved", "a reserved address"),
        ("is_private", "a private address"),
    )
    for attr, reason in checks:
        if getattr(ip, attr):
            return reason
    if not ip.is_global:  # shared (100.64/10), benchmarking, documentation ranges
        return "not a public address"
    return None


def _system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def parse_ip_literal(host: str) -> IPAddress | None:
    """An IP address written in any form libc accepts (``2130706433``, ``0x7f.1``, ``0177.0.0.1``), else None."""
    h = host.strip("[]")
    try:
        return ipaddress.ip_address(h)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(h))  # legacy decimal/octal/hex/short forms
    except OSError:
        return None


@dataclass(frozen=True)
class CheckedTarget:
    """A URL that passed the guard and the addresses it may be reached at."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]


def check_url(
    url: str,
    *,
    allow_loopback: bool = False,
    resolver: Resolver | None = None,
) -> CheckedTarget:
    """Refuse URLs we must not fetch; return the checked addresses to connect to.

    Parameters
    ----------
    url : str
        Absolute URL (a redirect target must be made absolute first).
    allow_loopback : bool
        Let 127.0.0.1 through (tests only; default off).
    resolver : callable or None
        ``(host, port) -> [address, ...]``; default ``socket.getaddrinfo``.

    Raises
    ------
    BlockedURLError
        With the reason: scheme, credentials, missing host, or an address in loopback/private/link-local/multicast/
        reserved/unspecified space (any one bad address refuses the host).
    FetchError
        The host name cannot be resolved.
    """
    if len(url) > MAX_URL_CHARS:
        raise BlockedURLError(f"The link is longer than {MAX_URL_CHARS} characters.")
    if any(c in url for c in "\r\n\t\x00 "):
        raise BlockedURLError("The link contains whitespace or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise BlockedURLError(f"The link is malformed ({exc}).") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise BlockedURLError(f"Only http and https links can be fetched, not {scheme or 'a link without a scheme'}.")
    if parts.username is not None or parts.password is not None:
        raise BlockedURLError("Links with a user name or password are refused.")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise BlockedURLError("The link has no host.")
    port = port or (443 if scheme == "https" else 80)
    addresses = check_host(host, port, allow_loopback=allow_loopback, resolver=resolver)
    return CheckedTarget(url, scheme, host, port, tuple(addresses))


def check_host(
    host: str,
    port: int,
    *,
    allow_loopback: bool = False,
    resolver: Resolver | None = None,
) -> tuple[str, ...]:
    """Resolve ``host`` once and return its addresses if every one of them is public.

    Raises
    ------
    BlockedURLError
        The host is (or resolves to) a forbidden address.
    FetchError
        The host name cannot be resolved.
    """
    host = host.strip("[]").rstrip(".")
    literal = parse_ip_literal(host)
    if literal is not None:
        problem = address_problem(literal, allow_loopback=allow_loopback)
        if problem:
            raise BlockedURLError(f"The link points at {host}, {problem}.")
        return (str(literal),)
    lowered = host.lower()
    if (lowered == "localhost" or lowered.endswith(".localhost")) and not allow_loopback:
        # libc answers these from /etc/hosts: refuse by name so the reason is clear
        raise BlockedURLError(f"The link points at {host}, a loopback address.")
    try:
        found = (resolver or _system_resolver)(host, port)
    except (OSError, UnicodeError) as exc:
        # not a refusal: the name simply does not exist (or DNS is down)
        raise FetchError(f"The host {host} cannot be found ({getattr(exc, 'strerror', None) or exc}).") from None
    addresses: list[str] = []
    for raw in found:
        try:
            ip = ipaddress.ip_address(raw)
        except ValueError:
            raise BlockedURLError(f"The host {host} resolves to {raw!r}, not an address.") from None
        problem = address_problem(ip, allow_loopback=allow_loopback)
        if problem:
            raise BlockedURLError(f"The host {host} resolves to {ip}, {problem}.")
        if str(ip) not in addresses:
            addresses.append(str(ip))
    if not addresses:
        raise BlockedURLError(f"The host {host} has no addresses.")
    return tuple(addresses)
