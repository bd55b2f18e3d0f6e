"""The in-process queue end to end: real pipeline, real PostgreSQL, local media server."""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path

import pytest
import soundfile as sf

from db.queries import jobs as jobs_q
from db.queries import tracks as tracks_q
from engine.camelot import Key
from engine.synth import TrackSpec, render
from tests.fakes.media_server import media_server
from workers.broker import open_queue
from workers.tasks import start_engine_pool
from workers.catalog import process_file
from workers.errors import BlockedURLError, FetchError, InputError, TransientError
from workers.messages import MixOptions, MixRequest
from workers.settings import AudioSettings, FetchSettings, QueueSettings, Settings


@pytest.fixture
def qsettings(settings: Settings) -> Settings:
    """In-memory queue, loopback allowed for the local media server, quick retries."""
    return replace(
        settings,
        fetch=FetchSettings(allow_loopback_for_tests=True, timeout_s=10.0, max_bytes=5_000_000),
        queue=QueueSettings(broker_url="memory", job_timeout_s=60.0, retries=2, retry_backoff_s=0.05),
    )


@pytest.fixture(scope="module")
async def engine_pool():
    """One warmed-up engine process pool shared by this module's queues (a worker owns one for its life)."""
    executor = await start_engine_pool(AudioSettings(processes=1))
    yield executor
    executor.shutdown(cancel_futures=True)


@pytest.fixture(scope="module")
def analysed_library(tmp_path_factory) -> list[tuple[Path, dict]]:
    """Three synthesized tracks analysed once per module (house at 124/126 BPM, techno at 132)."""
    folder = tmp_path_factory.mktemp("library")
    specs = [("a.wav", "house", 124, Key(9, "minor"), 1), ("b.wav", "house", 126, Key(4, "minor"), 2),
             ("c.wav", "techno", 132, Key(2, "minor"), 3)]
    out = []
    for name, style, bpm, key, seed in specs:
        y = render(TrackSpec(style=style, bpm=bpm, key=key, duration_s=8, seed=seed), sr=22050)
        path = folder / name
        sf.write(path, y, 22050)
        res = process_file(str(path), AudioSettings())
        assert res.analysis is not None
        out.append((path, res.analysis))
    return out


@pytest.fixture
async def catalog(pool, analysed_library) -> list[int]:
    """The analysed library as catalog tracks in an empty database."""
    ids = []
    async with pool.acquire() as conn:
        for path, analysis in analysed_library:
            tid, _ = await tracks_q.add_analyzed_track(
                conn, content_hash=path.name, title=path.stem, artist="synth", album="", genre="",
                path=str(path), source="test", analysis=analysis)
            ids.append(tid)
    return ids


def _clip(write_track, name: str = "clip.wav", **kw) -> bytes:
    return write_track(name, bpm=125, key=Key(9, "minor"), seed=9, duration_s=8, **kw).read_bytes()


def _request(kind: str, ref: str, **kw) -> MixRequest:
    return MixRequest.new(platform="discord", place="g/c", user_id="u1", input_kind=kind, input_ref=ref,
                          options=MixOptions(count=3), **kw)


async def test_upload_job_reports_stages_and_answers_with_catalog_tracks(engine_pool, qsettings, catalog, pool, write_track):
    """An uploaded clip goes queued → fetching → analysing → ranking → done and is recorded in PostgreSQL."""
    async with open_queue(qsettings, executor=engine_pool) as client:
        req = _request("upload", "phone clip.wav")
        handle = await client.submit(req, upload=_clip(write_track))
        stages = [e.stage async for e in handle.events()]
        result = await handle.result()
    assert stages[0] == "queued" and stages[-1] == "done"
    assert [s for s in stages if s != "queued"] == ["fetching", "analysing", "ranking", "done"]
    assert 1 <= len(result.results) <= 3
    assert abs(result.query["bpm"] - 125) < 3
    async with pool.acquire() as conn:
        row = await jobs_q.get_request(conn, req.request_id)
        recs = await jobs_q.recommendations_of(conn, req.request_id)
    assert row.status == "done" and row.attempts == 1 and row.timings["total"] > 0
    assert [r["track_id"] for r in recs] == [c.track_id for c in result.results]
    assert list((qsettings.home / "uploads").iterdir()) == []  # retention 0: deleted after processing


async def test_same_request_id_runs_once(engine_pool, qsettings, catalog, pool, write_track):
    """Submitting one request twice (a retried command) gives one job and one answer."""
    async with open_queue(qsettings, executor=engine_pool) as client:
        req = _request("upload", "clip.wav")
        first = await client.submit(req, upload=_clip(write_track))
        second = await client.submit(req, upload=_clip(write_track))
        a, b = await first.result(), await second.result()
    assert second.duplicate and not first.duplicate
    assert a == b
    async with pool.acquire() as conn:
        assert (await jobs_q.get_request(conn, req.request_id)).attempts == 1


async def test_direct_link_is_fetched_once_then_served_from_the_cache(engine_pool, qsettings, catalog, write_track):
    """A second request for the same link reuses the cached analysis instead of downloading again."""
    async with media_server(audio=_clip(write_track)) as media, open_queue(qsettings, executor=engine_pool) as client:
        url = media.url("/audio.wav")
        r1 = await client.mix(_request("link", url))
        r2 = await client.mix(_request("link", url + "#again"))
    assert media.hits == ["/audio.wav"]
    assert r1.query["bpm"] == r2.query["bpm"]


async def test_a_cached_answer_is_not_served_for_an_address_now_refused(engine_pool, qsettings, catalog, write_track):
    """Once loopback is refused again, a link answered earlier from 127.0.0.1 is refused, not served from the cache."""
    async with media_server(audio=_clip(write_track)) as media:
        url = media.url("/audio.wav")
        async with open_queue(qsettings, executor=engine_pool) as client:
            await client.mix(_request("link", url))
        strict = replace(qsettings, fetch=replace(qsettings.fetch, allow_loopback_for_tests=False))
        async with open_queue(strict, executor=engine_pool) as client:
            with pytest.raises(BlockedURLError, match="loopback"):
                await client.mix(_request("link", url))
    assert media.hits == ["/audio.wav"]


async def test_transient_failures_are_retried_with_backoff(engine_pool, qsettings, catalog, write_track):
    """A host answering 503 twice and then the audio gives a result after two retries."""
    async with media_server(audio=_clip(write_track)) as media, open_queue(qsettings, executor=engine_pool) as client:
        handle = await client.submit(_request("link", media.url("/flaky.wav?fails=2&id=t1")))
        messages = [e.message async for e in handle.events()]
        result = await handle.result()
    assert media.failures["t1"] == 3
    assert sum("Trying again" in m for m in messages) == 2
    assert result.results


async def test_a_transient_failure_that_persists_fails_after_the_retries(engine_pool, qsettings):
    """When every attempt fails transiently, the job fails after 1 + retries attempts."""
    async with media_server() as media, open_queue(qsettings, executor=engine_pool) as client:
        with pytest.raises(TransientError, match="503"):
            await client.mix(_request("link", media.url("/flaky.wav?fails=99&id=t2")))
    assert media.failures["t2"] == 3


async def test_permanent_failures_are_not_retried(engine_pool, qsettings):
    """A 404 fails at once with the reason, and the host is asked exactly once."""
    async with media_server() as media, open_queue(qsettings, executor=engine_pool) as client:
        with pytest.raises(FetchError, match="does not exist"):
            await client.mix(_request("link", media.url("/error/404")))
    assert media.hits == ["/error/404"]


async def test_a_job_over_its_time_limit_fails_with_a_timeout(engine_pool, qsettings):
    """A host that dribbles bytes makes the job fail at the per-job timeout, not hang."""
    settings = replace(qsettings, queue=replace(qsettings.queue, job_timeout_s=1.0, retries=0))
    async with media_server() as media, open_queue(settings, executor=engine_pool) as client:
        with pytest.raises(TransientError, match="longer than 1 s"):
            await client.mix(_request("link", media.url("/slow.wav")))


async def test_hostile_link_fails_with_the_guard_reason(engine_pool, qsettings):
    """A link into private space fails with the SSRF guard's sentence."""
    async with open_queue(qsettings, executor=engine_pool) as client:
        with pytest.raises(BlockedURLError, match="169.254.169.254, a link-local address"):
            await client.mix(_request("link", "http://169.254.169.254/latest/meta-data/"))


async def test_an_upload_that_is_not_audio_is_refused(engine_pool, qsettings):
    """Bytes that are not an audio container fail with a clear input error."""
    async with open_queue(qsettings, executor=engine_pool) as client:
        with pytest.raises(InputError, match="not audio"):
            await client.mix(_request("upload", "notes.pdf"), upload=b"%PDF-1.7 not audio at all")


async def test_a_chat_request_cannot_name_a_local_file(engine_pool, qsettings):
    """Only the CLI may name files on the worker's disk."""
    async with open_queue(qsettings, executor=engine_pool) as client:
        with pytest.raises(InputError, match="command line"):
            await client.mix(_request("file", "/etc/passwd"))


def _with_spotify(settings: Settings, fake) -> Settings:
    from tests.fakes import spotify_api as fake_spotify

    return replace(settings, fetch=replace(settings.fetch, spotify_client_id=fake_spotify.CLIENT_ID,
                                           spotify_client_secret=fake_spotify.CLIENT_SECRET,
                                           spotify_api_url=fake.api_url, spotify_token_url=fake.token_url))


async def test_spotify_link_to_a_catalog_song_needs_no_download(engine_pool, qsettings, catalog):
    """A Spotify track matching a catalog track (title and artist) is answered from the catalog."""
    from tests.fakes import spotify_api as fake_spotify

    tid = "0" * 21 + "b"
    async with fake_spotify.spotify_api() as fake:
        fake.tracks[tid] = fake_spotify.track_object(tid, name="B", artists=["Synth", "Other"], isrc="GBAAA2400001")
        async with open_queue(_with_spotify(qsettings, fake), executor=engine_pool) as client:
            result = await client.mix(_request("link", f"https://open.spotify.com/track/{tid}"))
    assert result.query["track_id"] == catalog[1]
    assert catalog[1] not in [c.track_id for c in result.results]
    assert fake.track_requests == [tid]


async def test_spotify_song_outside_the_catalog_falls_back_to_search_and_explains(engine_pool, qsettings, catalog):
    """A Spotify song not in the catalog is searched with yt-dlp; offline, the user is told to upload a clip."""
    from tests.fakes import spotify_api as fake_spotify

    tid = "1" * 22
    async with fake_spotify.spotify_api() as fake:
        fake.tracks[tid] = fake_spotify.track_object(tid, name="Unknown Song", artists=["Nobody"], isrc="USXXX0000001")
        async with open_queue(_with_spotify(qsettings, fake), executor=engine_pool) as client:
            with pytest.raises(FetchError, match="“Unknown Song” is not in the catalog.*upload a clip"):
                await client.mix(_request("link", f"spotify:track:{tid}"))


async def test_unusable_audio_is_explained_with_the_users_file_name(engine_pool, qsettings, catalog):
    """A clip too short to analyse fails naming the user's file, not the worker's spool path."""
    from tests.fakes.media_server import wav_bytes

    async with open_queue(qsettings, executor=engine_pool) as client:
        with pytest.raises(InputError, match=r"^tiny\.wav: .*short"):
            await client.mix(_request("upload", "tiny.wav"), upload=wav_bytes(seconds=1.5))


async def test_waiting_jobs_are_told_their_place_in_line(engine_pool, qsettings, catalog, write_track):
    """Jobs submitted together start with queued events at positions 1, 2, 3 and all finish."""
    settings = replace(qsettings, queue=replace(qsettings.queue, concurrency=1))
    clip = _clip(write_track)
    async with open_queue(settings, executor=engine_pool) as client:
        handles = [await client.submit(_request("upload", f"c{i}.wav"), upload=clip) for i in range(3)]
        firsts, lasts = [], []
        for h in handles:
            events = [e async for e in h.events()]
            firsts.append(events[0])
            lasts.append(events[-1].stage)
    assert [(e.stage, e.position) for e in firsts] == [("queued", 1), ("queued", 2), ("queued", 3)]
    assert lasts == ["done"] * 3


async def test_ingest_jobs_add_files_to_the_catalog(engine_pool, qsettings, pool, write_track, tmp_path):
    """An ingest job analyses a folder on the worker and reports what it added."""
    folder = tmp_path / "crate"
    write_track("x.wav", bpm=120, seed=4, folder=folder, duration_s=6)
    write_track("y.wav", bpm=128, seed=5, folder=folder, duration_s=6)
    async with open_queue(qsettings, executor=engine_pool) as client:
        handle = await client.submit_ingest([str(folder)], request_id=str(uuid.uuid4()))
        answer = await handle.answer()
    assert answer.ok and len(answer.result["added"]) == 2 and answer.result["failed"] == []


async def test_a_track_added_by_an_ingest_job_is_identified_in_a_memo(engine_pool, qsettings, pool, write_track, tmp_path):
    """After an ingest job, a phone memo of one of its tracks is named as that track, as after `catalog add`."""
    import numpy as np

    from engine.degrade import phone_memo, write_aac

    folder = tmp_path / "crate"
    write_track("Artist A - Warehouse.wav", style="house", bpm=124, key=Key(9, "minor"), seed=21, duration_s=24,
                folder=folder)
    track = write_track("Artist B - Basement.wav", style="techno", bpm=132, key=Key(4, "minor"), seed=22,
                        duration_s=24, folder=folder)
    y, sr = sf.read(track, dtype="float32")
    memo = phone_memo(y[6 * sr : 14 * sr], sr=sr, rng=np.random.default_rng(3), snr_db=10.0, rt60_s=0.4)
    clip = write_aac(memo, sr=sr, path=tmp_path / "memo.m4a", bitrate_kbps=64).read_bytes()
    async with open_queue(qsettings, executor=engine_pool) as client:
        ingest = await (await client.submit_ingest([str(folder)], request_id=str(uuid.uuid4()))).answer()
        assert ingest.ok, ingest
        added = {Path(a["path"]).name: a["track_id"] for a in ingest.result["added"]}
        result = await client.mix(_request("upload", "memo.m4a"), upload=clip)
    assert result.query["identified"] is not None
    assert result.query["identified"]["track_id"] == added[track.name]


async def test_an_ingest_job_leaves_the_request_processes_to_requests(engine_pool, qsettings, write_track, tmp_path):
    """A library import runs in engine processes of its own: /mixwith requests never queue behind its files, and
    the request processes are not left holding the import's models."""
    from concurrent.futures import Executor

    submitted: list[str] = []

    class Recording(Executor):
        """The request pool, noting what is run in it."""

        def submit(self, fn, /, *args, **kwargs):
            submitted.append(getattr(fn, "__name__", repr(fn)))
            return engine_pool.submit(fn, *args, **kwargs)

    folder = tmp_path / "crate"
    for i, style in enumerate(("house", "techno")):
        write_track(f"Artist - Track {i}.wav", style=style, seed=30 + i, duration_s=12, folder=folder)
    async with open_queue(qsettings, executor=Recording()) as client:
        ingest = await (await client.submit_ingest([str(folder)], request_id=str(uuid.uuid4()))).answer()
    assert ingest.ok, ingest
    assert len(ingest.result["added"]) == 2
    assert "process_file" not in submitted


async def test_a_retrained_model_is_picked_up_without_restarting_the_worker(
    engine_pool, qsettings, catalog, pool, tmp_path, write_track
):
    """After `train als` activates a new version, the running worker loads it and keeps answering."""
    import workers.tasks as tasks_mod
    from workers.mixes import import_files, train_from_history

    examples = Path(__file__).resolve().parents[2] / "examples"
    async with open_queue(qsettings, executor=engine_pool) as client:
        worker = client.local_worker
        assert worker is not None and worker.resources.als is None
        await import_files(pool, [examples / "mixes.csv"])
        await train_from_history(pool, models_dir=tmp_path / "models")
        worker._resources_checked -= tasks_mod.RELOAD_CHECK_S  # as if the check interval had passed
        assert await worker.reload_resources() is True
        assert worker.resources.als is not None
        assert await worker.reload_resources(force=False) is False  # nothing new: no reload
        result = await client.mix(_request("upload", "clip.wav"), upload=_clip(write_track))
    assert 1 <= len(result.results) <= 3


async def test_concurrent_clips_share_one_embedding_pass(engine_pool, qsettings, catalog, pool, write_track):
    """Two unknown clips in flight together are embedded in one forward pass and rank as when sent alone."""
    import asyncio

    from workers.embedding import build_catalog_index, open_embedder

    embedder, version = open_embedder(qsettings.embed)
    await build_catalog_index(pool, settings=qsettings, embedder=embedder, model_version=version)
    clips = [write_track(f"clip{i}.wav", style=style, bpm=bpm, seed=30 + i, duration_s=8)
             for i, (style, bpm) in enumerate([("house", 125), ("drum & bass", 172)])]

    def sounds(result) -> list[tuple[int, float]]:
        return [(c.track_id, c.components["sound"]) for c in result.results]

    together = replace(qsettings, queue=replace(qsettings.queue, concurrency=2, batch_wait_ms=5000.0))
    async with open_queue(together, executor=engine_pool) as client:
        batched = await asyncio.gather(*(client.mix(_request("upload", c.name), upload=c.read_bytes()) for c in clips))
        sizes = client.local_worker.batched(f"embed:{version}", embedder.embed_sets).batch_sizes
    assert sizes == [2]
    alone = replace(qsettings, queue=replace(qsettings.queue, concurrency=1, batch_wait_ms=0.0))
    async with open_queue(alone, executor=engine_pool) as client:
        single = [await client.mix(_request("upload", c.name), upload=c.read_bytes()) for c in clips]
    assert all(any(s for _, s in sounds(r)) for r in single)  # the sound term is in play
    for b, s in zip(batched, single):
        assert [t for t, _ in sounds(b)] == [t for t, _ in sounds(s)]
        assert [v for _, v in sounds(b)] == pytest.approx([v for _, v in sounds(s)], abs=1e-4)
