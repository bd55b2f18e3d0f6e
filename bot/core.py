"""The platform-neutral /mixwith flow: chat request → job → reply, and reactions → feedback.

A front end (Discord, Slack) turns what a person typed or uploaded into a
:class:`ChatRequest`, hands it to :meth:`MixService.run` with a callback for
progress, and renders the returned :class:`Reply`. Everything the platforms
share lives here: input checks, rate limits, queue position, the job itself
(through a :class:`JobRunner`), the Spotify playlist, the database records
that let reactions find their request, and the one-sentence error texts.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import asyncpg

from db.queries import feedback as fbq
from workers.errors import InputError, MixwithError
from workers.messages import Candidate, MixOptions, MixRequest, MixResult, Progress
from workers.settings import BotSettings

logger = logging.getLogger(__name__)

MAX_COUNT = 20
Compat = Literal["good", "ok", "risky"]
ProgressCallback = Callable[[Progress], Awaitable[None]]

STAGE_TEXT: dict[str, str] = {
    "queued": "Queued",
    "fetching": "Fetching the audio",
    "identifying": "Looking it up in the catalog",
    "analysing": "Analysing tempo, key and energy",
    "ranking": "Ranking what mixes with it",
    "done": "Done",
    "failed": "Failed",
}


class RateLimited(MixwithError):
    """Too many requests from one user or one server/workspace."""


# --- requests and replies ---------------------------------------------------------------------


@dataclass(frozen=True)
class ChatRequest:
    """What a person asked for in chat.

    Attributes
    ----------
    platform : str
        ``discord`` or ``slack``.
    place : str
        Server (guild) or workspace id: the scope of the shared rate limit.
    channel : str
        Where the reply goes.
    user_id : str
    link : str or None
        A song link, or None when a clip was attached.
    clip : bytes or None
        The attached audio.
    clip_name : str
        The attachment's file name (kept for its extension).
    options : MixOptions
    """

    platform: str
    place: str
    channel: str
    user_id: str
    link: str | None = None
    clip: bytes | None = None
    clip_name: str = ""
    options: MixOptions = field(default_factory=MixOptions)


@dataclass(frozen=True)
class QuerySummary:
    """The input as the reply describes it."""

    title: str
    artist: str
    identified: bool
    bpm: float | None
    key: str
    camelot: str
    energy: int | None


@dataclass(frozen=True)
class TrackLine:
    """One track of the ordered set, ready to render."""

    rank: int
    title: str
    artist: str
    bpm: float
    key: str
    camelot: str
    energy: int
    score: float
    compat: Compat
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Reply:
    """Everything a platform renders for one request.

    ``error`` set means the request failed and ``error`` is the sentence to show.
    """

    request_id: str
    query: QuerySummary | None = None
    tracks: tuple[TrackLine, ...] = ()
    playlist_url: str | None = None
    notes: tuple[str, ...] = ()
    error: str | None = None

    @property
    def short_id(self) -> str:
        return self.request_id.split("-")[0]


def compatibility(c: Candidate) -> Compat:
    """Traffic light for a candidate from its key and tempo parts.

    Green: a harmonic move a DJ makes without thinking and a tempo within easy
    pitch range; red: clashing keys or out-of-range tempo; amber between.
    """
    key = c.components.get("key", 0.0)
    tempo = c.components.get("tempo", 0.0)
    if key >= 0.85 and tempo >= 0.5:
        return "good"
    if key <= 0.0 or tempo <= 0.0:
        return "risky"
    return "ok"


def _summary(query: dict[str, Any], *, input_name: str = "") -> QuerySummary:
    ident = query.get("identified")
    if isinstance(ident, dict):
        title, artist = str(ident.get("title") or ""), str(ident.get("artist") or "")
    elif input_name:
        # An unidentified upload's "title" is its spool file name; the user knows it by theirs.
        title, artist = input_name, ""
    else:
        title, artist = str(query.get("title") or ""), str(query.get("artist") or "")
    bpm = query.get("bpm")
    energy = query.get("energy")
    return QuerySummary(
        title=title,
        artist=artist,
        identified=bool(ident),
        bpm=float(bpm) if bpm is not None else None,
        key=str(query.get("key") or ""),
        camelot=str(query.get("camelot") or ""),
        energy=int(energy) if energy is not None else None,
    )


def build_reply(
    result: MixResult, *, playlist_url: str | None = None, notes: tuple[str, ...] = (), input_name: str = ""
) -> Reply:
    """Turn a worker's result into what the platforms render."""
    tracks = tuple(
        TrackLine(
            rank=i,
            title=c.title,
            artist=c.artist,
            bpm=c.bpm,
            key=c.key,
            camelot=c.camelot,
            energy=c.energy,
            score=c.score,
            compat=compatibility(c),
            reasons=tuple(c.reasons),
        )
        for i, c in enumerate(result.results, start=1)
    )
    return Reply(
        request_id=result.request_id,
        query=_summary(result.query, input_name=input_name),
        tracks=tracks,
        playlist_url=playlist_url,
        notes=tuple(result.notes) + notes,
    )


# --- options ------------------------------------------------------------------------------------

_URL = re.compile(r"https?://[^\s<>|]+", re.IGNORECASE)


def find_link(text: str) -> str | None:
    """The first http(s) link in ``text`` (Slack wraps links in ``<…|label>``)."""
    m = _URL.search(text or "")
    return m.group(0).rstrip(".,)>") if m else None


def make_options(
    *,
    count: int = 10,
    bpm_min: float | None = None,
    bpm_max: float | None = None,
    key_lock: bool = False,
    energy: str | None = None,
) -> MixOptions:
    """Checked options; raises InputError with a sentence naming the bad value."""
    if not 1 <= count <= MAX_COUNT:
        raise InputError(f"count must be between 1 and {MAX_COUNT}, not {count}.")
    for name, v in (("bpm_min", bpm_min), ("bpm_max", bpm_max)):
        if v is not None and not 40 <= v <= 250:
            raise InputError(f"{name} must be a tempo between 40 and 250 BPM, not {v:g}.")
    if bpm_min is not None and bpm_max is not None and bpm_min > bpm_max:
        raise InputError(f"The BPM range {bpm_min:g}–{bpm_max:g} is empty: the minimum is above the maximum.")
    if energy is not None and energy not in ("up", "down", "steady"):
        raise InputError(f"energy must be up, down or steady, not {energy!r}.")
    return MixOptions(count=count, bpm_min=bpm_min, bpm_max=bpm_max, key_lock=key_lock, energy=energy)  # type: ignore[arg-type]


_SLACK_LINK = re.compile(r"<(https?://[^>|\s]+)(?:\|[^>]*)?>", re.IGNORECASE)
_BPM_RANGE = re.compile(r"^(?:bpm=)?(\d{2,3}(?:\.\d+)?)\s*[-–]\s*(\d{2,3}(?:\.\d+)?)$", re.IGNORECASE)


def parse_text_options(text: str) -> tuple[str | None, MixOptions]:
    """Link and options from a text command: ``<link> count=8 bpm=120-128 key_lock energy=up``."""
    text = _SLACK_LINK.sub(r"\1", text or "")  # Slack sends <url|label>
    link = find_link(text)
    rest = _URL.sub(" ", text)
    kw: dict[str, Any] = {}
    for word in rest.split():
        low = word.lower()
        if m := _BPM_RANGE.match(low):
            kw["bpm_min"], kw["bpm_max"] = float(m.group(1)), float(m.group(2))
        elif low in ("key_lock", "keylock", "key-lock"):
            kw["key_lock"] = True
        elif low.startswith("count="):
            try:
                kw["count"] = int(low.split("=", 1)[1])
            except ValueError:
                raise InputError(f"count must be a whole number, not {word.split('=', 1)[1]!r}.") from None
        elif low.startswith("energy="):
            kw["energy"] = low.split("=", 1)[1]
        elif low.isdigit():
            kw["count"] = int(low)
        else:
            raise InputError(
                f"I don't understand {word!r}: try `/mixwith <link> count=8 bpm=120-128 key_lock energy=up`."
            )
    return link, make_options(**kw)


# --- reactions ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reaction:
    """A reaction's meaning: name stored, value, and the rank it points at (None: whole reply)."""

    name: str
    value: int
    rank: int | None = None


_KEYCAPS = ("1️⃣", "2️⃣", "3️⃣", "4️⃣", "5️⃣", "6️⃣", "7️⃣", "8️⃣", "9️⃣", "🔟")
_SLACK_NUMBERS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "keycap_ten")
REACTIONS: dict[str, Reaction] = {
    "👍": Reaction("up", 1), "+1": Reaction("up", 1), "thumbsup": Reaction("up", 1),
    "👎": Reaction("down", -1), "-1": Reaction("down", -1), "thumbsdown": Reaction("down", -1),
    "🔥": Reaction("fire", 2), "fire": Reaction("fire", 2),
    **{k: Reaction("pick", 1, i) for i, k in enumerate(_KEYCAPS, start=1)},
    **{k: Reaction("pick", 1, i) for i, k in enumerate(_SLACK_NUMBERS, start=1)},
}
FEEDBACK_EMOJI: tuple[str, ...] = ("👍", "👎", "🔥")


def parse_reaction(text: str) -> Reaction | None:
    """Meaning of a Discord emoji or Slack reaction name; None for reactions we ignore.

    Skin tones are dropped (Slack ``+1::skin-tone-3``, Discord modifier code points).
    """
    base = text.split("::", 1)[0].strip(":")
    base = re.sub("[\U0001F3FB-\U0001F3FF]", "", base)
    return REACTIONS.get(base)


# --- rate limits --------------------------------------------------------------------------------


class RateLimiter:
    """Sliding-window limits per user and per place, plus concurrent jobs per user.

    Held by one :class:`MixService` (one process serves one platform), so the
    counts live in memory.
    """

    def __init__(self, settings: BotSettings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._s = settings
        self._clock = clock
        self._user: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        self._place: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        self._active: collections.Counter[str] = collections.Counter()

    @staticmethod
    def _wait(window: collections.deque[float], limit: int, now: float) -> float:
        while window and now - window[0] >= 60.0:
            window.popleft()
        return 0.0 if len(window) < limit else 60.0 - (now - window[0])

    @contextlib.contextmanager
    def slot(self, *, user: str, place: str) -> Iterator[None]:
        """Hold one job slot for ``user``; raises RateLimited with when to retry."""
        now = self._clock()
        if self._active[user] >= self._s.user_active:
            raise RateLimited(
                f"You already have {self._active[user]} mixes running; wait for one to finish."
            )
        wait = self._wait(self._user[user], self._s.user_per_minute, now)
        if wait > 0:
            raise RateLimited(f"Slow down: you can ask again in {wait:.0f} s.")
        wait = self._wait(self._place[place], self._s.place_per_minute, now)
        if wait > 0:
            raise RateLimited(f"This server is busy with requests; try again in {wait:.0f} s.")
        self._user[user].append(now)
        self._place[place].append(now)
        self._active[user] += 1
        try:
            yield
        finally:
            self._active[user] -= 1


# --- running jobs -------------------------------------------------------------------------------


class JobRunner(Protocol):
    """Runs a MixRequest: yields Progress events and ends with the MixResult.

    A failing job raises from the iterator: ``MixwithError`` for user
    problems, anything else for bugs.
    """

    def submit(self, request: MixRequest) -> AsyncIterator[Progress | MixResult]: ...


class QueueRunner:
    """A JobRunner on the workers' queue (``workers.broker.open_queue``): the production path.

    Uploads travel as bytes with the job (workers may run on other machines);
    progress, queue position and the answer come back through the job store.
    """

    def __init__(self, client: Any) -> None:
        self._client = client  # workers.tasks.JobClient

    async def submit(self, request: MixRequest) -> AsyncIterator[Progress | MixResult]:
        upload = None
        if request.upload_path is not None:
            upload = await asyncio.to_thread(Path(request.upload_path).read_bytes)
            request = dataclasses.replace(request, upload_path=None)
        handle = await self._client.submit(request, upload=upload)
        async for event in handle.events():
            if event.stage in ("done", "failed"):
                break
            yield event
        yield await handle.result()  # raises the worker's MixwithError for failed jobs


# --- the service ---------------------------------------------------------------------------------


class PlaylistMaker(Protocol):
    """Creates a playlist for a result (see bot.spotify.SpotifyPlaylists)."""

    async def create(self, result: MixResult, *, title: str) -> str: ...


INTERNAL_ERROR = "Something went wrong on our side (request {rid}); it has been logged and we'll look at it."


class MixService:
    """One per bot process: runs requests and records reactions.

    Parameters
    ----------
    runner : JobRunner
    settings : BotSettings
    spool_dir : Path
        Where clips are written for the workers.
    pool : asyncpg.Pool or None
        Without a database, replies still work but reactions are not stored.
    playlists : PlaylistMaker or None
        None: replies carry no playlist link and say so.
    playlist_missing : str
        Why there is no playlist when ``playlists`` is None.
    """

    def __init__(
        self,
        *,
        runner: JobRunner,
        settings: BotSettings,
        spool_dir: Path,
        pool: asyncpg.Pool | None = None,
        playlists: PlaylistMaker | None = None,
        playlist_missing: str = "Spotify is not configured on this bot, so there is no playlist.",
        playlist_timeout_s: float = 20.0,
    ) -> None:
        self.runner = runner
        self.settings = settings
        self.spool_dir = spool_dir
        self.pool = pool
        self.playlists = playlists
        self.playlist_missing = playlist_missing
        self.playlist_timeout_s = playlist_timeout_s
        self.limiter = RateLimiter(settings)
        self._tasks: set[asyncio.Task[Any]] = set()

    # Front ends start replies in the background after acknowledging; keeping
    # the tasks here stops them being garbage-collected mid-flight.
    def spawn(self, coro: Awaitable[Any], *, name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("background task %s failed", task.get_name(), exc_info=task.exception())

    async def drain(self, timeout_s: float | None = None) -> None:
        """Wait for running replies (shutdown, tests)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)

    def check_clip(self, *, size: int, name: str) -> None:
        """Refuse oversize clips before downloading them."""
        if size > self.settings.max_upload_bytes:
            mb = self.settings.max_upload_bytes / 1e6
            raise InputError(f"{name} is {size / 1e6:.1f} MB; clips up to {mb:.0f} MB are accepted.")

    def _spool(self, rid: str, chat: ChatRequest) -> Path:
        assert chat.clip is not None
        self.check_clip(size=len(chat.clip), name=chat.clip_name or "The clip")
        suffix = Path(chat.clip_name).suffix.lower()
        if not re.fullmatch(r"\.[a-z0-9]{1,5}", suffix):
            suffix = ".bin"
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        path = self.spool_dir / f"{rid}{suffix}"
        path.write_bytes(chat.clip)
        return path

    def _request(self, chat: ChatRequest) -> tuple[MixRequest, Path | None]:
        if chat.clip is not None and chat.link:
            raise InputError("Give me a link or a clip, not both.")
        if chat.clip is not None:
            if not chat.clip:
                raise InputError(f"{chat.clip_name or 'The clip'} is empty.")
            req = MixRequest.new(
                platform=chat.platform, input_kind="upload", input_ref=chat.clip_name or "clip",
                place=f"{chat.place}/{chat.channel}", user_id=chat.user_id, options=chat.options,
            )
            path = self._spool(req.request_id, chat)
            return dataclasses.replace(req, upload_path=str(path)), path
        if not chat.link:
            raise InputError("Give me a song link or attach an audio clip.")
        if not find_link(chat.link) or find_link(chat.link) != chat.link.strip():
            raise InputError(f"{chat.link[:80]!r} is not a link; paste a song's http(s) address.")
        req = MixRequest.new(
            platform=chat.platform, input_kind="link", input_ref=chat.link.strip(),
            place=f"{chat.place}/{chat.channel}", user_id=chat.user_id, options=chat.options,
        )
        return req, None

    async def run(self, chat: ChatRequest, on_progress: ProgressCallback | None = None) -> Reply:
        """Run one request to its reply; never raises for user or job errors.

        ``on_progress`` is called with the first event and then at most every
        ``progress_interval_s`` (stage changes included), so platforms are not
        edited faster than their rate limits allow.
        """
        rid = "-"
        path: Path | None = None
        try:
            with self.limiter.slot(user=f"{chat.platform}:{chat.user_id}", place=f"{chat.platform}:{chat.place}"):
                # Spooling a clip is file I/O: off the loop that acknowledges other commands.
                req, path = await asyncio.to_thread(self._request, chat)
                rid = req.request_id
                await self._record_request(req)
                result = await asyncio.wait_for(self._collect(req, on_progress), self.settings.job_timeout_s)
                reply = await self._with_playlist(result, chat)
                await self._record_reply(req, result, None)
                return reply
        except asyncio.TimeoutError:
            msg = f"The mix took longer than {self.settings.job_timeout_s:.0f} s and was stopped; try a shorter clip."
            await self._record_failure(rid, msg)
            return Reply(request_id=rid, error=msg)
        except MixwithError as exc:
            await self._record_failure(rid, str(exc))
            return Reply(request_id=rid, error=str(exc))
        except Exception:
            logger.exception("request %s from %s:%s failed", rid, chat.platform, chat.user_id)
            msg = INTERNAL_ERROR.format(rid=rid.split("-")[0])
            await self._record_failure(rid, msg)
            return Reply(request_id=rid, error=msg)
        finally:
            if path is not None:
                path.unlink(missing_ok=True)

    async def _collect(self, req: MixRequest, on_progress: ProgressCallback | None) -> MixResult:
        last_sent = float("-inf")
        async for event in self.runner.submit(req):
            if isinstance(event, MixResult):
                return event
            now = time.monotonic()
            if on_progress is not None and now - last_sent >= self.settings.progress_interval_s:
                last_sent = now
                try:
                    await on_progress(event)
                except Exception:  # a failed progress edit must not lose the reply
                    logger.warning("progress update for %s failed", req.request_id, exc_info=True)
        raise RuntimeError(f"job {req.request_id} ended without a result")

    async def _with_playlist(self, result: MixResult, chat: ChatRequest) -> Reply:
        name = chat.clip_name if chat.clip is not None else ""
        if not result.results:
            return build_reply(result, input_name=name)
        if self.playlists is None:
            return build_reply(result, input_name=name, notes=(self.playlist_missing,))
        q = _summary(result.query, input_name=name)
        title = f"mixwith: {q.title}" if q.title else f"mixwith {result.request_id.split('-')[0]}"
        try:
            url = await asyncio.wait_for(self.playlists.create(result, title=title), self.playlist_timeout_s)
        except MixwithError as exc:
            logger.warning("no playlist for %s: %s", result.request_id, exc)
            return build_reply(result, input_name=name, notes=(f"No Spotify playlist this time: {exc}",))
        except asyncio.TimeoutError:
            return build_reply(result, input_name=name, notes=("No Spotify playlist this time: Spotify did not answer in time.",))
        except Exception:
            logger.exception("playlist for %s failed", result.request_id)
            return build_reply(result, input_name=name, notes=("No Spotify playlist this time: Spotify returned an error.",))
        return build_reply(result, input_name=name, playlist_url=url)

    # --- database -------------------------------------------------------------------------------

    async def _record_request(self, req: MixRequest) -> None:
        if self.pool is None:
            return
        async with self.pool.acquire() as conn:
            await fbq.insert_request(
                conn, request_id=req.request_id, platform=req.platform, place=req.place, user_id=req.user_id,
                input_kind=req.input_kind, input_ref=req.input_ref, options=req.options.to_dict(),
            )

    async def _record_reply(self, req: MixRequest, result: MixResult, error: str | None) -> None:
        if self.pool is None:
            return
        ident = result.query.get("identified")
        ident_id = ident.get("track_id") if isinstance(ident, dict) else None
        query = {k: v for k, v in result.query.items() if isinstance(v, (str, int, float, bool, list, dict, type(None)))}
        recs = [(i, c.track_id, c.score, dict(c.components), c.reasons) for i, c in enumerate(result.results, 1)]
        async with self.pool.acquire() as conn:
            await fbq.finish_request(
                conn, request_id=req.request_id, error=error, query=query,
                identified_track_id=int(ident_id) if ident_id is not None else None, recommendations=recs,
            )

    async def _record_failure(self, rid: str, error: str) -> None:
        if self.pool is None or rid == "-":
            return
        try:
            async with self.pool.acquire() as conn:
                await fbq.finish_request(conn, request_id=rid, error=error, query=None, identified_track_id=None)
        except Exception:
            logger.warning("could not record the failure of %s", rid, exc_info=True)

    async def attach_reply(self, *, request_id: str, reply_ref: str) -> None:
        """Link the platform message that shows a reply to its request."""
        if self.pool is None:
            return
        async with self.pool.acquire() as conn:
            await fbq.set_reply_ref(conn, request_id=request_id, reply_ref=reply_ref)

    async def react(
        self,
        *,
        platform: str,
        reply_ref: str,
        user_id: str,
        reaction: str,
        added: bool,
        event_id: str | None = None,
    ) -> bool:
        """Store (or undo) a reaction on a reply; True when feedback changed.

        Redelivered events change nothing: ``event_id`` is claimed once, and
        the feedback table holds one row per user, reply, reaction and track.
        """
        meaning = parse_reaction(reaction)
        if meaning is None or self.pool is None:
            return False
        async with self.pool.acquire() as conn:
            rid = await fbq.request_for_reply(conn, platform=platform, reply_ref=reply_ref)
            if rid is None:
                return False
            track_id = None
            if meaning.rank is not None:
                track_id = await fbq.track_at_rank(conn, request_id=rid, rank=meaning.rank)
                if track_id is None:
                    return False
            async with conn.transaction():
                if event_id is not None and not await fbq.claim_event(conn, platform=platform, event_id=event_id):
                    logger.info("event %s redelivered; ignored", event_id)
                    return False
                if added:
                    changed = await fbq.add_feedback(
                        conn, platform=platform, request_id=rid, user_id=user_id,
                        reaction=meaning.name, value=meaning.value, track_id=track_id,
                    )
                else:
                    changed = await fbq.remove_feedback(
                        conn, platform=platform, request_id=rid, user_id=user_id,
                        reaction=meaning.name, track_id=track_id,
                    )
        logger.info("feedback %s %s on %s by %s: %s", "+" if added else "-", meaning.name, rid, user_id, changed)
        return changed


def progress_text(p: Progress) -> str:
    """One line a person reads while waiting."""
    if p.stage == "queued" and p.position:
        return f"⏳ Queued — #{p.position} in line"
    text = STAGE_TEXT.get(p.stage, p.stage.capitalize())
    return f"⏳ {text}{' — ' + p.message if p.message and p.stage != 'queued' else ''}…"
