"""Fetchers against local servers: link table, direct downloads, yt-dlp, Spotify metadata, uploads."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import replace

import pytest
import soundfile as sf

from tests.fakes import spotify_api as fake_spotify
from tests.fakes.media_server import media_server, wav_bytes
from workers.errors import BlockedURLError, FetchError, InputError, NotFoundError, TransientError
from workers.settings import FetchSettings
from workers.sources.direct import fetch_direct, make_session
from workers.sources.links import parse_link
from workers.sources.spotify import SpotifyMetadata
from workers.sources.upload import UploadSpool, sniff_audio
from workers.sources.ytdlp import fetch_ytdlp

LOCAL = FetchSettings(allow_loopback_for_tests=True, timeout_s=20.0, connect_timeout_s=3.0, max_bytes=1_000_000)
TRACK_ID = "4uLU6hMCjMI75M1A2tKUQC"


@pytest.mark.parametrize(
    ("text", "service", "key"),
    [
        ("https://open.spotify.com/track/4uLU6hMCjMI75M1A2tKUQC?si=abc", "spotify", "spotify:4uLU6hMCjMI75M1A2tKUQC"),
        ("https://open.spotify.com/intl-de/track/4uLU6hMCjMI75M1A2tKUQC", "spotify", "spotify:4uLU6hMCjMI75M1A2tKUQC"),
        ("spotify:track:4uLU6hMCjMI75M1A2tKUQC", "spotify", "spotify:4uLU6hMCjMI75M1A2tKUQC"),
        ("https://www.youtube.com/watch?v=dQw4w9WgXcQ&t=42", "youtube", "youtube:dQw4w9WgXcQ"),
        ("https://youtu.be/dQw4w9WgXcQ?si=x", "youtube", "youtube:dQw4w9WgXcQ"),
        ("<https://music.youtube.com/watch?list=RD&v=dQw4w9WgXcQ>", "youtube", "youtube:dQw4w9WgXcQ"),
        ("https://soundcloud.com/Artist-Name/Some-Track?in=x", "soundcloud", "soundcloud:soundcloud.com/artist-name/some-track"),
        ("https://artist.bandcamp.com/track/song-name", "bandcamp", "bandcamp:artist.bandcamp.com/track/song-name"),
        ("HTTPS://Example.COM:443/a.mp3#frag", "direct", "direct:https://example.com/a.mp3"),
    ],
)
def test_links_are_recognised_from_the_table(text, service, key):
    """Each service's link forms map to one service and one normalised cache key."""
    link = parse_link(text)
    assert (link.service, link.source_key) == (service, key)


@pytest.mark.parametrize(("text", "error"), [("", InputError), ("just some words", InputError),
                                             ("ftp://example.com/a.mp3", BlockedURLError), ("x" * 3000, InputError)])
def test_unusable_links_are_refused(text, error):
    """Empty text, prose, other schemes and overlong input each get a specific error."""
    with pytest.raises(error):
        parse_link(text)


# --- direct downloads -----------------------------------------------------------------------


async def test_direct_audio_is_streamed_to_disk(tmp_path):
    """A direct audio link is saved byte for byte, named by its content type."""
    async with media_server() as media, make_session(LOCAL) as session:
        got = await fetch_direct(media.url("/audio.wav"), session=session, work_dir=tmp_path, settings=LOCAL)
    assert got.path.suffix == ".wav" and got.path.read_bytes() == media.audio


@pytest.mark.parametrize("honest", ["1", "0"])
async def test_oversize_downloads_are_refused_and_removed(tmp_path, honest):
    """A file over the byte limit is refused whether or not the server declares its size."""
    async with media_server() as media, make_session(LOCAL) as session:
        with pytest.raises(FetchError, match="limit"):
            await fetch_direct(media.url(f"/big.wav?bytes=3000000&honest={honest}"), session=session,
                               work_dir=tmp_path, settings=LOCAL)
    assert list(tmp_path.iterdir()) == []


async def test_slow_servers_hit_the_time_limit(tmp_path):
    """A server that dribbles bytes is cut off at the fetch timeout as a transient failure."""
    settings = replace(LOCAL, timeout_s=0.8)
    async with media_server() as media, make_session(settings) as session:
        t0 = time.monotonic()
        with pytest.raises(TransientError, match="longer than 0.8 s"):
            await fetch_direct(media.url("/slow.wav"), session=session, work_dir=tmp_path, settings=settings)
    assert time.monotonic() - t0 < 5


async def test_pages_that_are_not_audio_are_refused(tmp_path):
    """An HTML page behind a link is refused by content type."""
    async with media_server() as media, make_session(LOCAL) as session:
        with pytest.raises(FetchError, match="not an audio file"):
            await fetch_direct(media.url("/page.html"), session=session, work_dir=tmp_path, settings=LOCAL)


async def test_redirect_chains_are_bounded(tmp_path):
    """A link that keeps redirecting stops after the configured number of hops."""
    settings = replace(LOCAL, max_redirects=2)
    async with media_server() as media, make_session(settings) as session:
        url = media.url("/audio.wav")
        for _ in range(4):
            url = media.url("/redirect?to=") + url
        with pytest.raises(FetchError, match="redirects more than 2"):
            await fetch_direct(url, session=session, work_dir=tmp_path, settings=settings)


# --- yt-dlp ------------------------------------------------------------------------------------


async def test_ytdlp_generic_extractor_fetches_only_the_first_seconds(tmp_path):
    """yt-dlp's generic extractor on a local audio URL keeps only the preview window."""
    audio = wav_bytes(seconds=6.0)
    settings = replace(LOCAL, preview_s=2.0)
    async with media_server(audio=audio) as media:
        got = await fetch_ytdlp(media.url("/audio.wav"), service="direct", extractors=("generic",),
                                work_dir=tmp_path, settings=settings)
    info = sf.info(got.path)
    assert 1.5 <= info.duration <= 3.0
    assert media.hits and all(h == "/audio.wav" for h in media.hits)


async def test_ytdlp_oversize_output_is_refused(tmp_path):
    """yt-dlp's silent skip of an oversize file becomes a clear size error."""
    settings = replace(LOCAL, max_bytes=20_000, preview_s=0)
    async with media_server(audio=wav_bytes(seconds=6.0)) as media:
        with pytest.raises(FetchError, match="larger than"):
            await fetch_ytdlp(media.url("/audio.wav"), service="direct", extractors=("generic",),
                              work_dir=tmp_path, settings=settings)


async def test_ytdlp_cannot_reach_private_addresses(tmp_path):
    """yt-dlp (through the egress proxy) is refused a loopback host and a redirect into private space."""
    async with media_server(host="127.0.0.1") as media, media_server(host="127.0.0.2") as canary:
        closed = replace(LOCAL, allow_loopback_for_tests=False)
        with pytest.raises(BlockedURLError, match="loopback"):
            await fetch_ytdlp(canary.url("/audio.wav"), service="direct", extractors=("generic",),
                              work_dir=tmp_path, settings=closed)
        with pytest.raises(BlockedURLError, match="127.0.0.2"):
            await fetch_ytdlp(media.url("/redirect?to=" + canary.url("/audio.wav")), service="direct",
                              extractors=("generic",), work_dir=tmp_path, settings=LOCAL)
    assert canary.hits == []


async def test_ytdlp_only_runs_the_allowed_extractors(tmp_path):
    """A YouTube fetch refuses a URL that only the generic extractor would take."""
    async with media_server() as media:
        with pytest.raises(InputError, match="not one I can fetch"):
            await fetch_ytdlp(media.url("/audio.wav"), service="youtube", work_dir=tmp_path, settings=LOCAL)
    assert media.hits == []


# --- Spotify -------------------------------------------------------------------------------------


def _spotify_settings(fake) -> FetchSettings:
    return replace(LOCAL, spotify_client_id=fake_spotify.CLIENT_ID, spotify_client_secret=fake_spotify.CLIENT_SECRET,
                   spotify_api_url=fake.api_url, spotify_token_url=fake.token_url)


async def test_spotify_metadata_comes_from_the_web_api():
    """Title, artists, ISRC and duration are read through spotipy; the app token is fetched once."""
    async with fake_spotify.spotify_api() as fake:
        fake.tracks[TRACK_ID] = fake_spotify.track_object(TRACK_ID, name="Strobe", artists=["deadmau5", "Guest"],
                                                          isrc="USUS11000356", duration_ms=634000)
        meta = SpotifyMetadata(_spotify_settings(fake))
        first = await asyncio.to_thread(meta.track, TRACK_ID)
        again = await asyncio.to_thread(meta.track, TRACK_ID)
    assert first == again
    assert (first.title, first.artists, first.isrc, first.duration_s) == ("Strobe", ("deadmau5", "Guest"), "USUS11000356", 634.0)
    assert fake.token_requests == 1


@pytest.mark.parametrize(("status", "error"), [(None, NotFoundError), (503, TransientError), (429, TransientError)])
async def test_spotify_failures_are_classified(status, error):
    """A missing track is NotFound; rate limits and outages are transient (retried by the queue)."""
    async with fake_spotify.spotify_api() as fake:
        if status:
            fake.fail[TRACK_ID] = status
        meta = SpotifyMetadata(_spotify_settings(fake))
        with pytest.raises(error):
            await asyncio.to_thread(meta.track, TRACK_ID)


async def test_spotify_bad_credentials_are_reported_to_the_admin():
    """Wrong client credentials give a message naming the credentials, not a crash."""
    async with fake_spotify.spotify_api() as fake:
        meta = SpotifyMetadata(replace(_spotify_settings(fake), spotify_client_secret="wrong"))
        with pytest.raises(FetchError, match="credentials"):
            await asyncio.to_thread(meta.track, TRACK_ID)


def test_spotify_without_credentials_says_what_to_set():
    """Without an app configured, Spotify links explain which settings are missing."""
    with pytest.raises(FetchError, match="MIXWITH_SPOTIFY_CLIENT_ID"):
        SpotifyMetadata(FetchSettings())


# --- uploads ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("head", "ext"), [(b"RIFF\0\0\0\0WAVEfmt ", ".wav"), (b"ID3\x04\0\0\0\0\0\0", ".mp3"),
                                           (b"\xff\xfb\x90\x00", ".mp3"), (b"fLaC\0\0\0\x22", ".flac"),
                                           (b"OggS\0\x02\0\0", ".ogg"), (b"\0\0\0\x20ftypM4A ", ".m4a"),
                                           (b"\x1a\x45\xdf\xa3\x9f", ".webm")])
def test_upload_containers_are_recognised_by_their_bytes(head, ext):
    """The container is read from magic bytes, not from the file name."""
    assert sniff_audio(head + b"\0" * 16) == ext


def test_uploads_are_deleted_after_processing_or_after_retention(tmp_path):
    """With retention 0 an upload is deleted when released; otherwise the sweep removes old ones."""
    now_spool = UploadSpool(tmp_path / "a", max_bytes=1_000_000, retention_s=0)
    got = now_spool.write("req-1", wav_bytes(seconds=0.5), filename="my clip.wav")
    assert got.path.exists() and got.source_key.startswith("upload:")
    now_spool.release(got.path)
    assert not got.path.exists()

    kept = UploadSpool(tmp_path / "b", max_bytes=1_000_000, retention_s=3600)
    old = kept.write("req-2", wav_bytes(seconds=0.5))
    kept.release(old.path)
    assert old.path.exists()
    os.utime(old.path, (time.time() - 7200, time.time() - 7200))
    assert kept.sweep() == 1 and not old.path.exists()


def test_oversize_and_fake_uploads_are_refused(tmp_path):
    """Uploads over the limit or that are not audio are refused before touching the decoder."""
    spool = UploadSpool(tmp_path, max_bytes=1000)
    with pytest.raises(InputError, match="limit"):
        spool.write("r", b"RIFF" + b"\0" * 2000)
    with pytest.raises(InputError, match="not audio"):
        UploadSpool(tmp_path, max_bytes=10**6).write("r", b"<html>hello</html>")
