"""Playlists on the bot's Spotify account, against a local fake of Spotify's accounts and Web API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from bot.core import ChatRequest, MixService
from bot.spotify import SpotifyPlaylists
from tests.bot.conftest import CatalogTrack, memo_of
from tests.fakes.spotify_accounts import FakeSpotify, FakeTrack, spotify_id
from workers.settings import SpotifySettings


@pytest.fixture
async def spotify(catalog: list[CatalogTrack]) -> AsyncIterator[FakeSpotify]:
    # Every catalog track but the last is on Spotify by ISRC; the last only by title and artist.
    tracks = [FakeTrack(spotify_id(t.title), t.title, t.artist, f"QZTST26{i:05d}") for i, t in enumerate(catalog[:-1])]
    tracks.append(FakeTrack(spotify_id(catalog[-1].title), catalog[-1].title, catalog[-1].artist, None))
    f = FakeSpotify(tracks=tracks)
    await f.start()
    yield f
    await f.close()


def _settings(f: FakeSpotify, **kw: str) -> SpotifySettings:
    base = dict(client_id=f.client_id, client_secret=f.client_secret, refresh_token=f.refresh_token,
                api_url=f.api_url, accounts_url=f.accounts_url, timeout_s=5.0)
    base.update(kw)
    return SpotifySettings(**base)  # type: ignore[arg-type]


async def _ask(service: MixService, track: CatalogTrack, tmp_path) -> object:
    clip = memo_of(track, tmp_path / "memo.m4a").read_bytes()
    return await service.run(ChatRequest("discord", "g1", "c1", "u1", clip=clip, clip_name="memo.m4a"))


async def test_reply_links_a_playlist_of_the_set(spotify, pool, make_service: Callable[..., MixService], catalog, tmp_path) -> None:
    """The reply's playlist link opens a playlist holding the set's tracks in order."""
    service = make_service(playlists=SpotifyPlaylists(_settings(spotify), pool=pool))
    reply = await _ask(service, catalog[0], tmp_path)
    assert reply.error is None and reply.playlist_url
    pid = reply.playlist_url.rsplit("/", 1)[-1]
    by_title = {t.name: t.id for t in spotify.tracks}
    assert spotify.playlists[pid]["items"] == [f"spotify:track:{by_title[t.title]}" for t in reply.tracks]
    assert reply.query.title in spotify.playlists[pid]["name"]


async def test_lookups_are_cached(spotify, pool, make_service, catalog, tmp_path) -> None:
    """A second reply with the same tracks searches Spotify no more, even from a fresh client."""
    await _ask(make_service(playlists=SpotifyPlaylists(_settings(spotify), pool=pool)), catalog[1], tmp_path)
    before = len(spotify.searches)
    await _ask(make_service(playlists=SpotifyPlaylists(_settings(spotify), pool=pool)), catalog[1], tmp_path)
    assert before > 0 and len(spotify.searches) == before


async def test_spotify_down_still_replies_and_says_why(spotify, pool, make_service, catalog, tmp_path) -> None:
    """With Spotify answering 503 the set still comes, without a link, with a note saying why."""
    spotify.fail_status = 503
    service = make_service(playlists=SpotifyPlaylists(_settings(spotify), pool=None))
    reply = await _ask(service, catalog[2], tmp_path)
    assert reply.error is None and reply.tracks and reply.playlist_url is None
    assert any(n.startswith("No Spotify playlist this time: Spotify is busy") for n in reply.notes)


async def test_revoked_refresh_token_is_explained(spotify, make_service, catalog, tmp_path) -> None:
    """A refused refresh token gives a note about the bot's Spotify login."""
    service = make_service(playlists=SpotifyPlaylists(_settings(spotify, refresh_token="revoked"), pool=None))
    reply = await _ask(service, catalog[3], tmp_path)
    assert reply.playlist_url is None
    assert any("Spotify login was refused" in n for n in reply.notes)


async def test_no_spotify_configured_says_so(make_service, catalog, tmp_path) -> None:
    """Without Spotify settings the reply carries the set and says there is no playlist."""
    reply = await _ask(make_service(), catalog[4], tmp_path)
    assert reply.tracks and reply.playlist_url is None
    assert any("not configured" in n for n in reply.notes)
