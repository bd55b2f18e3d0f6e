"""Spotify track links: metadata (title, artists, ISRC, duration) through spotipy.

Spotify serves no audio to us (and no previews, audio features or analysis
for new apps since Nov 2024): the song itself is matched in the catalog by
ISRC or title, or found elsewhere with a yt-dlp search. spotipy is
synchronous (requests), so callers run :meth:`SpotifyMetadata.track` in a
thread.
"""

from __future__ import annotations

import logging
import threading

import requests
import spotipy
from spotipy.cache_handler import MemoryCacheHandler
from spotipy.oauth2 import SpotifyClientCredentials, SpotifyOauthError

from workers.errors import FetchError, NotFoundError, TransientError
from workers.settings import FetchSettings
from workers.sources.base import TrackMeta

logger = logging.getLogger(__name__)


class SpotifyMetadata:
    """Client-credentials access to the Web API's ``tracks`` endpoint.

    One instance per worker process: the app token is cached in memory and
    renewed by spotipy when it expires.
    """

    def __init__(self, settings: FetchSettings) -> None:
        if not (settings.spotify_client_id and settings.spotify_client_secret):
            raise FetchError(
                "Spotify links need MIXWITH_SPOTIFY_CLIENT_ID and MIXWITH_SPOTIFY_CLIENT_SECRET; "
                "send a YouTube/SoundCloud link or upload the audio instead."
            )
        self._settings = settings
        self._auth = SpotifyClientCredentials(
            client_id=settings.spotify_client_id,
            client_secret=settings.spotify_client_secret,
            cache_handler=MemoryCacheHandler(),
            requests_timeout=settings.connect_timeout_s,
        )
        self._auth.OAUTH_TOKEN_URL = settings.spotify_token_url  # instance override: tests use a fake
        self._lock = threading.Lock()  # requests sessions are not thread safe

    def _client(self) -> spotipy.Spotify:
        token = self._auth.get_access_token(as_dict=False)
        sp = spotipy.Spotify(auth=token, requests_timeout=self._settings.connect_timeout_s, retries=0, status_retries=0)
        sp.prefix = self._settings.spotify_api_url
        return sp

    def track(self, track_id: str) -> TrackMeta:
        """Metadata of one track.

        Raises
        ------
        NotFoundError
            No such track.
        TransientError
            Spotify is rate limiting, failing or unreachable.
        FetchError
            Our credentials are refused, or anything else Spotify objects to.
        """
        try:
            with self._lock:
                data = self._client().track(track_id)
        except SpotifyOauthError as exc:
            logger.error("Spotify refused our client credentials: %s", exc)
            raise FetchError("Spotify refused our app credentials; ask the admin to check them.") from None
        except spotipy.SpotifyException as exc:
            if exc.http_status in (400, 404):
                raise NotFoundError("Spotify has no track with that link.") from None
            if exc.http_status == 429 or (exc.http_status or 0) >= 500:
                raise TransientError("Spotify is busy right now; try again in a minute.") from None
            raise FetchError(f"Spotify refused the request ({exc.http_status}).") from None
        except requests.RequestException as exc:
            raise TransientError(f"Spotify could not be reached ({type(exc).__name__}).") from None
        artists = tuple(a.get("name", "") for a in data.get("artists") or () if a.get("name"))
        duration_ms = data.get("duration_ms")
        return TrackMeta(
            title=data.get("name") or "",
            artists=artists,
            isrc=(data.get("external_ids") or {}).get("isrc"),
            duration_s=duration_ms / 1000.0 if duration_ms else None,
            spotify_id=data.get("id") or track_id,
        )
