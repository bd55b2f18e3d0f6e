"""Messages passed between front ends and workers.

Frozen dataclasses with a named constructor and ``to_dict``/``from_dict`` so
they survive any broker. ``MixResult.to_dict()`` is the public JSON contract
of ``mixwith recommend --json``: extend it, never rename fields.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

InputKind = Literal["link", "upload", "file"]
Stage = Literal["queued", "fetching", "identifying", "analysing", "ranking", "done", "failed"]


@dataclass(frozen=True)
class MixOptions:
    """What the user asked for besides the input."""

    count: int = 10
    bpm_min: float | None = None
    bpm_max: float | None = None
    key_lock: bool = False
    energy: Literal["up", "down", "steady"] | None = None
    order: bool = True
    exclude_same_artist: bool = False
    # energy arc of the ordered set: build, peak, cooldown or flat (None: from ``energy``)
    arc: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MixOptions":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class MixRequest:
    """One ``/mixwith`` (or ``mixwith recommend``) request.

    Attributes
    ----------
    request_id : str
        UUID; jobs are idempotent by it.
    platform : str
        ``cli``, ``discord`` or ``slack``.
    place : str
        Guild/channel or workspace/channel, for rate limits and replies.
    user_id : str
    input_kind : {"link", "upload", "file"}
    input_ref : str
        The URL, the uploaded file's name, or a local path.
    upload_path : str or None
        Where an upload's bytes were spooled for the workers.
    options : MixOptions
    """

    request_id: str
    platform: str
    place: str
    user_id: str
    input_kind: InputKind
    input_ref: str
    upload_path: str | None = None
    options: MixOptions = field(default_factory=MixOptions)

    @classmethod
    def new(
        cls,
        *,
        platform: str,
        input_kind: InputKind,
        input_ref: str,
        place: str = "",
        user_id: str = "",
        upload_path: str | None = None,
        options: MixOptions | None = None,
    ) -> "MixRequest":
        return cls(
            request_id=str(uuid.uuid4()),
            platform=platform,
            place=place,
            user_id=user_id,
            input_kind=input_kind,
            input_ref=input_ref,
            upload_path=upload_path,
            options=options or MixOptions(),
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["options"] = self.options.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MixRequest":
        d = dict(d)
        d["options"] = MixOptions.from_dict(d.get("options") or {})
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Candidate:
    """One recommended track with its score and the reasons it fits."""

    rank: int
    track_id: int
    title: str
    artist: str
    path: str | None
    bpm: float
    key: str
    camelot: str
    energy: int
    score: float
    reasons: tuple[str, ...] = ()
    components: dict[str, float] = field(default_factory=dict)
    sources: tuple[str, ...] = ()
    spotify_id: str | None = None
    isrc: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["reasons"] = list(self.reasons)
        d["sources"] = list(self.sources)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Candidate":
        d = dict(d)
        d["reasons"] = tuple(d.get("reasons") or ())
        d["sources"] = tuple(d.get("sources") or ())
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class MixResult:
    """The answer to a MixRequest.

    Attributes
    ----------
    request_id : str
    query : dict
        The input's analysis (``engine.analysis.Analysis.to_dict()``), its
        title/artist when known, and ``identified`` (a catalog match or None).
    results : tuple of Candidate
        Ranked (or set-ordered) recommendations.
    notes : tuple of str
        Things the user should know ("not in the catalog: ranked by its sound").
    """

    request_id: str
    query: dict[str, Any]
    results: tuple[Candidate, ...]
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "query": self.query,
            "results": [c.to_dict() for c in self.results],
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MixResult":
        return cls(
            request_id=d["request_id"],
            query=d["query"],
            results=tuple(Candidate.from_dict(c) for c in d["results"]),
            notes=tuple(d.get("notes") or ()),
        )


@dataclass(frozen=True)
class Progress:
    """A job's progress, as the bots show it."""

    request_id: str
    stage: Stage
    message: str = ""
    position: int | None = None  # place in the queue while queued

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
