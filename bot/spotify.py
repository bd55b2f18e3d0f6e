"""A Spotify playlist for each reply, created by one bot-owned account.

Since 2026 development-mode apps create playlists with ``POST /me/playlists``
and fill them with ``/playlists/{id}/items``, and only for a handful of users:
so mixwith keeps the refresh token of one account it owns and creates every
playlist there. Tracks are resolved by Spotify id, then ISRC, then a search on
artist and title; every answer (including "not on Spotify") is cached.
spotipy is synchronous, so each call runs in a thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import asyncpg
import requests
import spotipy

from db.queries import spotify as spq
from workers.errors import MixwithError
from workers.messages import Candidate, MixResult
from workers.settings import SpotifySettings

logger = logging.getLogger(__name__)

MAX_ITEMS_PER_CALL = 100


class SpotifyUnavailable(MixwithError):
    """Spotify could not make the playlist; the message says why."""


class SpotifyPlaylists:
    """Creates playlists on the bot's account.

    Parameters
    ----------
    settings : SpotifySettings
        Must be ``configured`` (client id, secret and refresh token).
    pool : asyncpg.Pool or None
        Lookup cache; None keeps the cache in memory only.
    """

    def __init__(self, settings: SpotifySettings, *, pool: asyncpg.Pool | None = None) -> None:
        if not settings.configured:
            raise ValueError("Spotify needs SPOTIFY_CLIENT_ID, SPOTIFY_CLIENT_SECRET and SPOTIFY_REFRESH_TOKEN")
        self._s = settings
        self._pool = pool
        self._memo: dict[str, str | None] = {}
        self._lock = threading.Lock()  # one token refresh at a time across job threads
        self._token: str | None = None
        self._expires_at = 0.0
        self._user_id: str | None = None

    # --- auth -----------------------------------------------------------------------------------

    def _access_token(self) -> str:
        with self._lock:
            if self._token and time.monotonic() < self._expires_at - 60:
                return self._token
            try:
                r = requests.post(
                    self._s.accounts_url,
                    data={"grant_type": "refresh_token", "refresh_token": self._s.refresh_token},
                    auth=(self._s.client_id, self._s.client_secret),
                    timeout=self._s.timeout_s,
                )
            except requests.RequestException as exc:
                raise SpotifyUnavailable("Spotify's login service could not be reached.") from exc
            if r.status_code != 200:
                logger.warning("spotify token refresh: HTTP %s %s", r.status_code, r.text[:200])
                raise SpotifyUnavailable("the bot's Spotify login was refused (the refresh token may be revoked).")
            body = r.json()
            self._token = body["access_token"]
            self._expires_at = time.monotonic() + float(body.get("expires_in", 3600))
            return self._token

    def _client(self) -> spotipy.Spotify:
        sp = spotipy.Spotify(
            auth=self._access_token(), requests_timeout=self._s.timeout_s, retries=0, status_retries=0
        )
        sp.prefix = self._s.api_url
        return sp

    # --- resolution -----------------------------------------------------------------------------

    @staticmethod
    def lookup_keys(c: Candidate) -> list[str]:
        keys = []
        if c.spotify_id:
            keys.append(f"id:{c.spotify_id}")
        if c.isrc:
            keys.append(f"isrc:{c.isrc.upper()}")
        if c.title:
            keys.append(f"search:{c.artist.lower().strip()}|{c.title.lower().strip()}")
        return keys

    def _search(self, sp: spotipy.Spotify, key: str) -> str | None:
        kind, _, value = key.partition(":")
        if kind == "id":
            return value
        if kind == "isrc":
            q = f"isrc:{value}"
        else:
            artist, _, title = value.partition("|")
            q = f'track:"{title}"' + (f' artist:"{artist}"' if artist else "")
        items = sp.search(q=q, type="track", limit=1)["tracks"]["items"]
        return items[0]["id"] if items else None

    async def _cached(self, key: str) -> tuple[bool, str | None]:
        if key in self._memo:
            return True, self._memo[key]
        if self._pool is not None:
            async with self._pool.acquire() as conn:
                found, value = await spq.get_lookup(conn, key=key)
            if found:
                self._memo[key] = value
                return True, value
        return False, None

    async def _remember(self, key: str, value: str | None) -> None:
        self._memo[key] = value
        if self._pool is not None:
            async with self._pool.acquire() as conn:
                await spq.put_lookup(conn, key=key, spotify_id=value)

    async def resolve(self, sp: spotipy.Spotify, c: Candidate) -> str | None:
        """Spotify track id for a candidate, or None when Spotify has no match."""
        for key in self.lookup_keys(c):
            found, value = await self._cached(key)
            if not found:
                value = await asyncio.to_thread(self._search, sp, key)
                await self._remember(key, value)
            if value:
                return value
        return None

    # --- playlists ------------------------------------------------------------------------------

    async def create(self, result: MixResult, *, title: str) -> str:
        """Create the playlist for ``result``; returns its open.spotify.com link.

        Raises
        ------
        SpotifyUnavailable
            Login refused, Spotify down, or none of the tracks on Spotify.
        """
        try:
            sp = await asyncio.to_thread(self._client)
            ids = [i for i in [await self.resolve(sp, c) for c in result.results] if i]
            if not ids:
                raise SpotifyUnavailable("none of these tracks are on Spotify.")
            description = f"Made by mixwith for request {result.request_id.split('-')[0]}."
            playlist = await asyncio.to_thread(
                sp.current_user_playlist_create, title[:100], self._s.public, False, description
            )
            uris = [f"spotify:track:{i}" for i in ids]
            for start in range(0, len(uris), MAX_ITEMS_PER_CALL):
                await asyncio.to_thread(sp.playlist_add_items, playlist["id"], uris[start : start + MAX_ITEMS_PER_CALL])
        except spotipy.SpotifyException as exc:
            logger.warning("spotify: HTTP %s %s", exc.http_status, exc.msg)
            if exc.http_status == 429:
                # spotipy also reports exhausted 5xx retries as 429 "Max Retries".
                raise SpotifyUnavailable("Spotify is busy or limiting the bot right now.") from exc
            if exc.http_status in (401, 403):
                raise SpotifyUnavailable("Spotify refused the bot's account (check its login and Premium).") from exc
            raise SpotifyUnavailable(f"Spotify answered with an error ({exc.http_status}).") from exc
        except requests.RequestException as exc:
            raise SpotifyUnavailable("Spotify could not be reached.") from exc
        url = (playlist.get("external_urls") or {}).get("spotify")
        return url or f"https://open.spotify.com/playlist/{playlist['id']}"
