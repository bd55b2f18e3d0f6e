"""A local forward proxy that only lets traffic out to addresses the SSRF guard accepted.

yt-dlp and the ffmpeg it starts do their own networking; we cannot hand them
a resolver. Instead they run with this proxy as ``proxy`` (yt-dlp passes it
on to ffmpeg as ``http_proxy``): for every request and every redirect hop it
resolves the host once, checks each address, and connects to a checked
address itself. ``CONNECT`` tunnels carry https end to end (TLS is still
verified by the client against the host name).
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

from workers.errors import BlockedURLError, FetchError
from workers.sources.links import Resolver, check_host

logger = logging.getLogger(__name__)

_MAX_HEAD = 64 * 1024
_RELAY_CHUNK = 64 * 1024


class EgressProxy:
    """HTTP proxy on 127.0.0.1 enforcing the SSRF guard; use as ``async with``.

    Attributes
    ----------
    url : str
        ``http://127.0.0.1:<port>`` once started.
    refusals : list of str
        Reasons for every refused connection, to explain a failed download.
    failures : list of str
        Hosts that could not be resolved.
    """

    def __init__(
        self,
        *,
        allow_loopback: bool = False,
        resolver: Resolver | None = None,
        connect_timeout_s: float = 10.0,
        head_timeout_s: float = 10.0,
    ) -> None:
        self._allow_loopback = allow_loopback
        self._resolver = resolver
        self._connect_timeout_s = connect_timeout_s
        self._head_timeout_s = head_timeout_s
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.refusals: list[str] = []
        self.failures: list[str] = []
        self.url = ""

    async def __aenter__(self) -> "EgressProxy":
        self._server = await asyncio.start_server(self._on_client, "127.0.0.1", 0, limit=_MAX_HEAD)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError) as exc:
            logger.debug("proxy connection ended: %s", exc)
        finally:
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with asyncio.timeout(self._head_timeout_s):
            head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ")
        except ValueError:
            await self._refuse(writer, 400, "malformed request line")
            return
        if method.upper() == "CONNECT":
            host, _, port_s = target.rpartition(":")
            await self._tunnel(reader, writer, host, port_s)
            return
        parts = urlsplit(target)
        if parts.scheme.lower() != "http" or not parts.hostname:
            await self._refuse(writer, 400, f"only absolute http URLs are proxied, not {target[:80]!r}")
            return
        try:
            port = parts.port or 80
        except ValueError:
            await self._refuse(writer, 400, "bad port")
            return
        upstream = await self._connect(writer, parts.hostname, port)
        if upstream is None:
            return
        up_reader, up_writer = upstream
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        kept = [l for l in lines[1:] if l and not l.lower().startswith(("proxy-", "connection:", "keep-alive:"))]
        # one request per connection: a second request on it cannot be aimed at another host
        new_head = "\r\n".join([f"{method} {path} {version}", *kept, "Connection: close", "", ""]).encode("latin-1")
        up_writer.write(new_head)
        await self._relay(reader, writer, up_reader, up_writer)

    async def _tunnel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, port_s: str) -> None:
        if not port_s.isdigit():
            await self._refuse(writer, 400, "CONNECT needs host:port")
            return
        upstream = await self._connect(writer, host, int(port_s))
        if upstream is None:
            return
        writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        await writer.drain()
        await self._relay(reader, writer, *upstream)

    async def _connect(self, writer: asyncio.StreamWriter, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        loop = asyncio.get_running_loop()
        try:
            addresses = await loop.run_in_executor(
                None, lambda: check_host(host, port, allow_loopback=self._allow_loopback, resolver=self._resolver)
            )
        except BlockedURLError as exc:
            self.refusals.append(str(exc))
            logger.warning("egress refused %s:%s: %s", host, port, exc)
            await self._refuse(writer, 403, str(exc))
            return None
        except FetchError as exc:  # unresolvable: not an attack, but the download cannot work
            self.failures.append(str(exc))
            await self._refuse(writer, 502, str(exc))
            return None
        last: Exception | None = None
        for address in addresses:  # connect to the checked address itself: no second lookup
            try:
                async with asyncio.timeout(self._connect_timeout_s):
                    return await asyncio.open_connection(address, port)
            except (OSError, TimeoutError) as exc:
                last = exc
        await self._refuse(writer, 502, f"cannot connect to {host}: {last}")
        return None

    async def _refuse(self, writer: asyncio.StreamWriter, status: int, reason: str) -> None:
        body = reason.encode("utf-8", "replace")
        writer.write(
            f"HTTP/1.1 {status} Refused\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n".encode("latin-1") + body
        )
        await writer.drain()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter) -> None:
        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while chunk := await src.read(_RELAY_CHUNK):
                    dst.write(chunk)
                    await dst.drain()
            finally:
                if dst.can_write_eof():
                    try:
                        dst.write_eof()
                    except OSError:
                        pass

        try:
            await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        finally:
            up_writer.close()
