"""Job records between front ends and workers: progress events and exactly-once answers.

A ``JobStore`` keeps, per request id, the progress events a bot shows and
the single answer. Two implementations share one contract:
``MemoryJobStore`` (everything in this process) and ``RedisJobStore``
(separate worker machines). The answer is written with set-if-absent, so a
job delivered twice (its first worker died, another took it over) is still
answered once; the first answer wins and later ones are dropped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from workers import errors as werrors
from workers.errors import MixwithError
from workers.messages import MixResult, Progress

logger = logging.getLogger(__name__)

TERMINAL = ("done", "failed")
INTERNAL_ERROR = "Something went wrong on our side while handling this request; it has been logged."


@dataclass(frozen=True)
class Answer:
    """The one answer to a job: a result, or an error a user can read.

    Attributes
    ----------
    request_id : str
    ok : bool
    result : dict
        The task's result (``MixResult.to_dict()`` for mix jobs); empty on failure.
    error : str
        One sentence for the user; empty on success.
    error_kind : str
        Name of the ``workers.errors`` class, so front ends can raise it again.
    timings : dict
        Seconds spent per stage, ``work`` (the job itself), ``total`` and ``deliveries``.
    worker : str
        ``host-pid`` of the worker that answered.
    """

    request_id: str
    ok: bool
    result: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    error_kind: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    worker: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "ok": self.ok, "result": self.result, "error": self.error,
                "error_kind": self.error_kind, "timings": self.timings, "worker": self.worker}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Answer":
        return cls(request_id=d["request_id"], ok=bool(d["ok"]), result=d.get("result") or {},
                   error=d.get("error") or "", error_kind=d.get("error_kind") or "", timings=d.get("timings") or {},
                   worker=d.get("worker") or "")

    def raise_for_error(self) -> None:
        """Raise the worker's error again in the caller (a MixwithError subclass)."""
        if self.ok:
            return
        cls = getattr(werrors, self.error_kind, None)
        if not (isinstance(cls, type) and issubclass(cls, MixwithError)):
            cls = MixwithError
        raise cls(self.error or INTERNAL_ERROR)


def progress_from_dict(d: dict[str, Any]) -> Progress:
    return Progress(request_id=d["request_id"], stage=d["stage"], message=d.get("message", ""), position=d.get("position"))


class JobStore(Protocol):
    """Where progress events and answers live."""

    async def submit(self, request_id: str, kind: str, *, upload: bytes | None = None) -> bool:
        """Note a new job as waiting (with its upload's bytes) and publish its ``queued`` event.

        Returns False, doing nothing, when this request id was submitted before.
        """

    async def position(self, request_id: str) -> int | None:
        """1-based place among waiting jobs; None once the job started."""

    async def start(self, request_id: str) -> tuple[int, Answer | None]:
        """Mark the job running: (deliveries so far, the answer if it was already answered)."""

    async def publish(self, event: Progress) -> None:
        """Append a progress event, unless the job is already answered."""

    async def finish(self, answer: Answer, *, drop_upload: bool = True) -> bool:
        """Store the answer and its terminal event; False when the job was already answered."""

    async def answer(self, request_id: str) -> Answer | None:
        """The stored answer, if any."""

    def events(self, request_id: str, *, poll_s: float = 1.0) -> AsyncIterator[Progress]:
        """All events of the job from the first, ending after the terminal one."""

    async def put_upload(self, request_id: str, data: bytes) -> None:
        """Keep an upload's bytes until a worker takes the job (workers may be other machines)."""

    async def get_upload(self, request_id: str) -> bytes | None: ...

    async def close(self) -> None: ...


def _queued_event(request_id: str, position: int | None) -> Progress:
    return Progress(request_id, "queued", "waiting for a worker", position=position)


def _terminal_event(answer: Answer) -> Progress:
    if answer.ok:
        return Progress(answer.request_id, "done", "")
    return Progress(answer.request_id, "failed", answer.error)


class MemoryJobStore:
    """Job records for the in-process queue."""

    def __init__(self) -> None:
        self._waiting: dict[str, float] = {}
        self._seen: set[str] = set()
        self._starts: dict[str, int] = {}
        self._events: dict[str, list[Progress]] = {}
        self._answers: dict[str, Answer] = {}
        self._uploads: dict[str, bytes] = {}
        self._changed = asyncio.Condition()

    async def put_upload(self, request_id: str, data: bytes) -> None:
        self._uploads[request_id] = data

    async def get_upload(self, request_id: str) -> bytes | None:
        return self._uploads.get(request_id)

    async def submit(self, request_id: str, kind: str, *, upload: bytes | None = None) -> bool:
        if request_id in self._seen:
            return False
        self._seen.add(request_id)
        self._waiting[request_id] = time.monotonic()
        if upload is not None:
            self._uploads[request_id] = upload
        await self.publish(_queued_event(request_id, await self.position(request_id)))
        return True

    async def position(self, request_id: str) -> int | None:
        if request_id not in self._waiting:
            return None
        mine = self._waiting[request_id]
        return 1 + sum(1 for t in self._waiting.values() if t < mine)

    async def start(self, request_id: str) -> tuple[int, Answer | None]:
        self._waiting.pop(request_id, None)
        self._starts[request_id] = self._starts.get(request_id, 0) + 1
        return self._starts[request_id], self._answers.get(request_id)

    async def publish(self, event: Progress) -> None:
        if event.request_id in self._answers:
            return
        async with self._changed:
            self._events.setdefault(event.request_id, []).append(event)
            self._changed.notify_all()

    async def finish(self, answer: Answer, *, drop_upload: bool = True) -> bool:
        if drop_upload:
            self._uploads.pop(answer.request_id, None)
        async with self._changed:
            if answer.request_id in self._answers:
                return False
            self._answers[answer.request_id] = answer
            self._waiting.pop(answer.request_id, None)
            self._events.setdefault(answer.request_id, []).append(_terminal_event(answer))
            self._changed.notify_all()
            return True

    async def answer(self, request_id: str) -> Answer | None:
        return self._answers.get(request_id)

    async def events(self, request_id: str, *, poll_s: float = 1.0) -> AsyncIterator[Progress]:
        seen = 0
        while True:
            async with self._changed:
                await self._changed.wait_for(lambda: len(self._events.get(request_id, ())) > seen)
                new = self._events[request_id][seen:]
            seen += len(new)
            for event in new:
                yield event
                if event.stage in TERMINAL:
                    return

    async def close(self) -> None:
        return None


# Each script is one round trip and atomic, so a kill between steps leaves no half-made state.
# Submit once: KEYS job, waiting, events, upload; ARGV kind, ttl, request id, now, queued-event json
# (its position is filled in here), upload bytes or ''. Returns the position, or 0 if seen before.
_SUBMIT_LUA = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
if ARGV[6] ~= '' then
  redis.call('SET', KEYS[4], ARGV[6], 'EX', ARGV[2])
end
local position = redis.call('ZRANK', KEYS[2], ARGV[3]) + 1
local event = cjson.decode(ARGV[5])
event['position'] = position
redis.call('XADD', KEYS[3], '*', 'data', cjson.encode(event))
redis.call('EXPIRE', KEYS[3], ARGV[2])
return position
"""
# Start: KEYS waiting, runs, answer; ARGV request id, ttl. Returns {deliveries, answer or false}.
_START_LUA = """
redis.call('ZREM', KEYS[1], ARGV[1])
local runs = redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return {runs, redis.call('GET', KEYS[3])}
"""
# Answer once: the answer key is set only if absent, and only then is the terminal event appended.
_FINISH_LUA = """
if ARGV[5] == '1' then
  redis.call('DEL', KEYS[4])
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[3]) then
  redis.call('XADD', KEYS[2], '*', 'data', ARGV[2])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
  redis.call('ZREM', KEYS[3], ARGV[4])
  return 1
end
return 0
"""
# Progress after the answer (a duplicate delivery still running) is dropped.
_PUBLISH_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('XADD', KEYS[2], '*', 'data', ARGV[1])
  redis.call('EXPIRE', KEYS[2], ARGV[2])
  return 1
end
return 0
"""


class RedisJobStore:
    """Job records in Redis, shared by front ends and every worker machine.

    Keys (``<q>`` is the queue name): ``<q>:job:<id>`` submitted marker,
    ``<q>:waiting`` sorted set for queue positions, ``<q>:ev:<id>`` event
    stream, ``<q>:ans:<id>`` the answer, ``<q>:runs:<id>`` delivery count.
    Everything expires after ``ttl_s``.
    """

    def __init__(self, url: str, *, prefix: str, ttl_s: float) -> None:
        from redis.asyncio import Redis

        self._redis = Redis.from_url(url)
        self._p = prefix
        self._ttl = max(1, int(ttl_s))
        self._finish = self._redis.register_script(_FINISH_LUA)
        self._submit = self._redis.register_script(_SUBMIT_LUA)
        self._start = self._redis.register_script(_START_LUA)
        self._publish = self._redis.register_script(_PUBLISH_LUA)

    @property
    def redis(self) -> Any:
        return self._redis

    def _k(self, kind: str, request_id: str = "") -> str:
        return f"{self._p}:{kind}:{request_id}" if request_id else f"{self._p}:{kind}"

    async def submit(self, request_id: str, kind: str, *, upload: bytes | None = None) -> bool:
        position = await self._submit(
            keys=[self._k("job", request_id), self._k("waiting"), self._k("ev", request_id), self._k("up", request_id)],
            args=[kind, self._ttl, request_id, time.time(), json.dumps(_queued_event(request_id, None).to_dict()),
                  upload if upload is not None else b""],
        )
        return int(position) > 0

    async def position(self, request_id: str) -> int | None:
        rank = await self._redis.zrank(self._k("waiting"), request_id)
        return None if rank is None else int(rank) + 1

    async def start(self, request_id: str) -> tuple[int, Answer | None]:
        runs, raw = await self._start(
            keys=[self._k("waiting"), self._k("runs", request_id), self._k("ans", request_id)], args=[request_id, self._ttl]
        )
        return int(runs), (Answer.from_dict(json.loads(raw)) if raw else None)

    async def publish(self, event: Progress) -> None:
        await self._publish(
            keys=[self._k("ans", event.request_id), self._k("ev", event.request_id)],
            args=[json.dumps(event.to_dict()), self._ttl],
        )

    async def finish(self, answer: Answer, *, drop_upload: bool = True) -> bool:
        rid = answer.request_id
        done = await self._finish(
            keys=[self._k("ans", rid), self._k("ev", rid), self._k("waiting"), self._k("up", rid)],
            args=[json.dumps(answer.to_dict()), json.dumps(_terminal_event(answer).to_dict()), self._ttl, rid,
                  "1" if drop_upload else "0"],
        )
        return bool(done)

    async def answer(self, request_id: str) -> Answer | None:
        raw = await self._redis.get(self._k("ans", request_id))
        return None if raw is None else Answer.from_dict(json.loads(raw))

    async def events(self, request_id: str, *, poll_s: float = 1.0) -> AsyncIterator[Progress]:
        last = "0-0"
        key = self._k("ev", request_id)
        while True:
            got = await self._redis.xread({key: last}, block=max(1, int(poll_s * 1000)), count=100)
            for _stream, entries in got or []:
                for entry_id, fields in entries:
                    last = entry_id
                    event = progress_from_dict(json.loads(fields[b"data"]))
                    yield event
                    if event.stage in TERMINAL:
                        return

    async def put_upload(self, request_id: str, data: bytes) -> None:
        await self._redis.set(self._k("up", request_id), data, ex=self._ttl)

    async def get_upload(self, request_id: str) -> bytes | None:
        return await self._redis.get(self._k("up", request_id))

    async def close(self) -> None:
        await self._redis.aclose()


class JobHandle:
    """A submitted job: follow its progress, await its answer."""

    def __init__(self, store: JobStore, request_id: str, *, duplicate: bool, position_poll_s: float = 2.0) -> None:
        self._store = store
        self.request_id = request_id
        self.duplicate = duplicate  # the request id was submitted before: this follows the first job
        self._poll = position_poll_s

    async def events(self) -> AsyncIterator[Progress]:
        """Progress events from ``queued`` (with position) to ``done`` or ``failed``.

        While the job waits, a fresh ``queued`` event is synthesised when its
        position changes, so a bot can show "3rd in line" counting down.
        """
        stream = self._store.events(self.request_id, poll_s=self._poll).__aiter__()
        last_position: int | None = None
        pending: asyncio.Task[Progress] | None = None
        try:
            while True:
                if pending is None:
                    pending = asyncio.ensure_future(stream.__anext__())
                done, _ = await asyncio.wait({pending}, timeout=self._poll)
                if pending in done:
                    try:
                        event = pending.result()
                    except StopAsyncIteration:
                        return
                    pending = None
                    if event.stage == "queued":
                        last_position = event.position
                    yield event
                    if event.stage in TERMINAL:
                        return
                    continue
                position = await self._store.position(self.request_id)
                if position is not None and position != last_position:
                    last_position = position
                    yield Progress(self.request_id, "queued", f"{position} in line", position=position)
        finally:
            if pending is not None:
                pending.cancel()
            await stream.aclose()  # type: ignore[attr-defined]

    async def answer(self, *, timeout_s: float | None = None) -> Answer:
        """Wait for the answer (success or failure) without raising for failures."""
        async with asyncio.timeout(timeout_s):
            async for _event in self._store.events(self.request_id, poll_s=self._poll):
                pass
        found = await self._store.answer(self.request_id)
        if found is None:  # events expired before we looked
            raise MixwithError("The answer to this request has expired.")
        return found

    async def result(self, *, timeout_s: float | None = None) -> MixResult:
        """The MixResult; raises the worker's MixwithError subclass when the job failed."""
        found = await self.answer(timeout_s=timeout_s)
        found.raise_for_error()
        return MixResult.from_dict(found.result)
