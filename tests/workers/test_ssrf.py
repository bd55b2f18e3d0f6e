"""The SSRF guard: hostile links are refused with a reason and never reach a local canary."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest

from tests.fakes.media_server import media_server
from workers.errors import BlockedURLError
from workers.settings import FetchSettings
from workers.sources.direct import fetch_direct, make_session
from workers.sources.links import address_problem, check_url

SETTINGS = FetchSettings(timeout_s=5.0, connect_timeout_s=2.0, max_bytes=1_000_000)


def hostile_urls(port: int) -> list[str]:
    """Links a hostile user could paste; every one aims at our own network (mostly at the canary)."""
    p = port
    return [
        f"http://127.0.0.1:{p}/",
        f"https://127.0.0.1:{p}/",
        f"http://localhost:{p}/",
        f"http://LOCALHOST:{p}/",
        f"http://localhost.:{p}/",
        f"http://api.localhost:{p}/",
        f"http://127.1:{p}/",
        f"http://2130706433:{p}/",
        f"http://0x7f000001:{p}/",
        f"http://0177.0.0.1:{p}/",
        f"http://0x7f.0.0.1:{p}/",
        f"http://017700000001:{p}/",
        f"http://127.000.000.001:{p}/",
        f"http://[::1]:{p}/",
        f"http://[::ffff:127.0.0.1]:{p}/",
        f"http://[::ffff:7f00:1]:{p}/",
        f"http://[0:0:0:0:0:ffff:127.0.0.1]:{p}/",
        f"http://[::127.0.0.1]:{p}/",
        f"http://[2002:7f00:1::]:{p}/",
        f"http://[64:ff9b::127.0.0.1]:{p}/",
        f"http://[fe80::1%25lo]:{p}/",
        f"http://0.0.0.0:{p}/",
        f"http://0:{p}/",
        f"http://[::]:{p}/",
        "http://10.0.0.1/",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:a9fe:a9fe]/latest/meta-data/",
        "http://[fe80::1]/",
        "http://[fd00::1]/",
        "http://224.0.0.1/",
        "http://[ff02::1]/",
        "http://255.255.255.255/",
        "http://240.0.0.1/",
        "http://100.64.0.1/",
        "http://192.0.2.1/",
        "file:///etc/passwd",
        f"ftp://127.0.0.1:{p}/",
        f"gopher://127.0.0.1:{p}/_GET",
        f"dict://127.0.0.1:{p}/",
        f"http://example.com@127.0.0.1:{p}/",
        f"http://user:pw@127.0.0.1:{p}/",
        f"http://127.0.0.1:{p}/a b",
        f"http://127.0.0.1:{p}/\r\nX-Injected: 1",
        "http:///nohost",
    ]


async def test_hostile_urls_are_refused_and_never_reach_the_canary(tmp_path):
    """At least 30 hostile links are refused with a reason, and the canary sees no request."""
    async with media_server(host="127.0.0.1") as canary:
        urls = hostile_urls(canary.port)
        assert len(urls) >= 30
        reasons = {}
        async with make_session(SETTINGS) as session:
            for url in urls:
                with pytest.raises(BlockedURLError) as info:
                    await fetch_direct(url, session=session, work_dir=tmp_path, settings=SETTINGS)
                reasons[url] = str(info.value)
        assert canary.hits == []
        assert all(r.endswith(".") and len(r) > 20 for r in reasons.values())
        assert "loopback" in reasons[f"http://2130706433:{canary.port}/"]
        assert "wrapping 127.0.0.1" in reasons[f"http://[::ffff:127.0.0.1]:{canary.port}/"]
        assert "link-local" in reasons["http://169.254.169.254/latest/meta-data/"]
        assert "http and https" in reasons["file:///etc/passwd"]


async def test_loopback_opt_in_lets_only_127_0_0_1_through(tmp_path):
    """With the test opt-in, 127.0.0.1 is fetched but the rest of the loopback net stays closed."""
    settings = replace(SETTINGS, allow_loopback_for_tests=True)
    async with media_server(host="127.0.0.1") as media, media_server(host="127.0.0.2") as canary:
        async with make_session(settings) as session:
            got = await fetch_direct(media.url("/audio.wav"), session=session, work_dir=tmp_path, settings=settings)
            assert got.path.read_bytes() == media.audio
            with pytest.raises(BlockedURLError, match="loopback"):
                await fetch_direct(canary.url("/audio.wav"), session=session, work_dir=tmp_path, settings=settings)
        assert canary.hits == []


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.2:{canary}/audio.wav",
        "http://[::1]:{canary}/audio.wav",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/audio.wav",
        "http://0x7f000002:{canary}/audio.wav",
        "file:///etc/passwd",
    ],
)
async def test_redirects_into_private_space_are_refused(tmp_path, target):
    """A public-looking link that redirects into private space is stopped at the redirect."""
    settings = replace(SETTINGS, allow_loopback_for_tests=True)
    async with media_server(host="127.0.0.1") as media, media_server(host="127.0.0.2") as canary:
        hop = target.format(canary=canary.port)
        url = media.url("/redirect?to=" + hop)
        async with make_session(settings) as session:
            with pytest.raises(BlockedURLError):
                await fetch_direct(url, session=session, work_dir=tmp_path, settings=settings)
        assert canary.hits == []
        assert media.hits and media.hits[0].startswith("/redirect")


async def test_connection_uses_the_checked_answer_not_a_second_lookup(tmp_path):
    """A DNS answer that changes after the check (rebinding) is checked again where the connection is made."""
    settings = replace(SETTINGS, allow_loopback_for_tests=True)
    async with media_server(host="127.0.0.1") as media, media_server(host="127.0.0.2") as canary:
        answers = iter(["127.0.0.1", "127.0.0.2", "127.0.0.2", "127.0.0.2"])

        def rebinding(host: str, port: int) -> list[str]:
            return [next(answers)]

        url = f"http://rebind.test:{canary.port}/audio.wav"
        async with make_session(settings, resolver=rebinding) as session:
            with pytest.raises(BlockedURLError, match="resolves to 127.0.0.2"):
                await fetch_direct(url, session=session, work_dir=tmp_path, settings=settings, resolver=rebinding)
        assert canary.hits == []

        def stable(host: str, port: int) -> list[str]:
            return ["127.0.0.1"]

        async with make_session(settings, resolver=stable) as session:
            got = await fetch_direct(
                f"http://media.test:{media.port}/audio.wav", session=session, work_dir=tmp_path, settings=settings, resolver=stable
            )
        assert got.path.read_bytes() == media.audio


def test_a_name_with_one_private_address_is_refused():
    """A host is refused when any of its addresses is private, even if another one is public."""
    with pytest.raises(BlockedURLError, match="10.1.2.3, a private address"):
        check_url("https://mixed.example/a.mp3", resolver=lambda h, p: ["93.184.216.34", "10.1.2.3"])
    assert check_url("https://public.example/a.mp3", resolver=lambda h, p: ["93.184.216.34"]).addresses == ("93.184.216.34",)


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700::1111", "1.1.1.1"])
def test_public_addresses_pass(address):
    """Ordinary public addresses are not refused."""
    assert address_problem(ipaddress.ip_address(address)) is None
