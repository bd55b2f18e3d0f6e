"""One entry point for every kind of input: ``Sources.fetch(request) -> FetchedAudio``.

Dispatch follows the link table (``links.parse_link``): Spotify → metadata →
catalog match, else a yt-dlp search; YouTube/SoundCloud/Bandcamp → yt-dlp;
anything else http(s) → a direct download; uploads → the spool. Local files
are accepted only from the CLI.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import aiohttp

from workers.errors import FetchError, InputError
from workers.messages import MixRequest
from workers.settings import FetchSettings
from workers.sources.base import FetchedAudio, TrackMeta
from workers.sources.direct import fetch_direct
from workers.sources.links import Resolver, parse_link
from workers.sources.spotify import SpotifyMetadata
from workers.sources.upload import UploadSpool
from workers.sources.ytdlp import fetch_ytdlp

logger = logging.getLogger(__name__)

# (meta) -> a catalog file for the song, or None: the worker looks it up by ISRC, then title/artist
CatalogLookup = Callable[[TrackMeta], Awaitable[FetchedAudio | None]]


class Sources:
    """Fetchers sharing one guarded HTTP session, one spool and one Spotify client.

    Parameters
    ----------
    settings : FetchSettings
    session : aiohttp.ClientSession
        From :func:`workers.sources.direct.make_session` (SSRF-guarded).
    work_dir : Path
        Where fetched previews are written.
    spool : UploadSpool
    catalog_lookup : callable or None
        Finds a Spotify song in the catalog without downloading anything.
    resolver : callable or None
        DNS stand-in for tests.
    """

    def __init__(
        self,
        settings: FetchSettings,
        *,
        session: aiohttp.ClientSession,
        work_dir: Path,
        spool: UploadSpool,
        catalog_lookup: CatalogLookup | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self.settings = settings
        self.session = session
        self.work_dir = work_dir
        self.spool = spool
        self._catalog_lookup = catalog_lookup
        self._resolver = resolver
        self._spotify: SpotifyMetadata | None = None

    def set_catalog_lookup(self, lookup: CatalogLookup | None) -> None:
        """Install the catalog match used for Spotify links (the worker's database)."""
        self._catalog_lookup = lookup

    def _spotify_client(self) -> SpotifyMetadata:
        if self._spotify is None:
            self._spotify = SpotifyMetadata(self.settings)
        return self._spotify

    async def fetch(self, request: MixRequest, *, upload: bytes | None = None) -> FetchedAudio:
        """Fetch the audio a request names.

        Raises
        ------
        InputError, BlockedURLError, FetchError, NotFoundError, TransientError
        """
        if request.input_kind == "upload":
            if upload is None:
                raise InputError("The upload did not reach the worker; please send it again.")
            return await asyncio.to_thread(self.spool.write, request.request_id, upload, filename=request.input_ref)
        if request.input_kind == "file":
            if request.platform != "cli":  # a chat user must never name a path on our disk
                raise InputError("Local files can only be used from the command line.")
            path = Path(request.input_ref).expanduser()
            if not path.is_file():
                raise InputError(f"No such file: {path}")
            return FetchedAudio(path=path, title=path.stem, source_key=f"file:{path.resolve()}")
        return await self.fetch_link(request.input_ref)

    async def fetch_link(self, text: str) -> FetchedAudio:
        """Fetch a pasted link (see the module docstring for the routes)."""
        link = parse_link(text)
        if link.service == "spotify":
            return await self._fetch_spotify(link.item_id)
        if link.service == "direct":
            got = await fetch_direct(link.url, session=self.session, work_dir=self.work_dir, settings=self.settings,
                                     resolver=self._resolver)
            return replace(got, source_key=link.source_key)
        return await fetch_ytdlp(link.url, service=link.service, work_dir=self.work_dir, settings=self.settings,
                                 source_key=link.source_key, resolver=self._resolver)

    async def _fetch_spotify(self, track_id: str) -> FetchedAudio:
        meta = await asyncio.to_thread(self._spotify_client().track, track_id)
        key = f"spotify:{meta.spotify_id}"
        extra = {"title": meta.title, "artist": meta.artist, "isrc": meta.isrc, "spotify_id": meta.spotify_id,
                 "source_key": key, "duration_s": meta.duration_s}
        if self._catalog_lookup is not None:
            found = await self._catalog_lookup(meta)
            if found is not None:
                logger.info("spotify:%s is in the catalog (%s)", track_id, found.path)
                return replace(found, **extra)
        if not meta.title:
            raise FetchError("Spotify gave no title for that track, so I cannot look for its audio.")
        query = f"ytsearch1:{meta.artist} - {meta.title}" if meta.artist else f"ytsearch1:{meta.title}"
        try:
            got = await fetch_ytdlp(query, service="search", work_dir=self.work_dir, settings=self.settings,
                                    source_key=key, resolver=self._resolver)
        except FetchError as exc:
            raise FetchError(
                f"“{meta.title}” is not in the catalog and I could not find its audio ({exc}) — upload a clip instead."
            ) from exc
        return replace(got, **extra)
