"""Typed settings read once from the environment.

Every key is documented in ``.env.example``. ``Settings.from_env()`` is called
by entry points (CLI, bots, workers) and the frozen result is passed down;
nothing else reads the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from engine.audio import DecodeLimits


class SettingsError(ValueError):
    """An environment variable holds a value we cannot use."""


def _get(env: Mapping[str, str], key: str, default: str) -> str:
    value = env.get(key, "").strip()
    return value if value else default


def _int(env: Mapping[str, str], key: str, default: int) -> int:
    raw = _get(env, key, str(default))
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{key} must be a whole number, got {raw!r}") from None


def _float(env: Mapping[str, str], key: str, default: float) -> float:
    raw = _get(env, key, str(default))
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{key} must be a number, got {raw!r}") from None


def _bool(env: Mapping[str, str], key: str, default: bool) -> bool:
    raw = _get(env, key, "1" if default else "0").lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{key} must be true or false, got {raw!r}")


@dataclass(frozen=True)
class AudioSettings:
    """Decoding and analysis bounds."""

    sample_rate: int = 22050
    max_bytes: int = 200 * 1024 * 1024
    max_duration_s: float = 20 * 60.0
    min_duration_s: float = 1.0
    decode_timeout_s: float = 120.0
    analysis_seconds: float = 240.0
    processes: int = 2

    @property
    def limits(self) -> DecodeLimits:
        return DecodeLimits(
            max_bytes=self.max_bytes,
            max_duration_s=self.max_duration_s,
            min_duration_s=self.min_duration_s,
            timeout_s=self.decode_timeout_s,
        )


@dataclass(frozen=True)
class RankSettings:
    """Weights of the named parts of a recommendation score (see engine.rank)."""

    w_key: float = 0.35
    w_tempo: float = 0.30
    w_energy: float = 0.10
    w_sound: float = 0.15
    w_coplay: float = 0.10
    pitch_range_pct: float = 6.0
    camelot_rules: tuple[str, ...] = ("same", "+1", "-1", "relative", "diagonal", "+2")


# --- identification (issue 4) ---------------------------------------------------
@dataclass(frozen=True)
class IdentifySettings:
    """Clip identification against the catalog's fingerprint index.

    Attributes
    ----------
    index_dir : Path or None
        The fingerprint index directory; None puts it under the data home.
    query_seconds : float
        Only the first this-many seconds of a clip are fingerprinted.
    accept_confidence : float
        Calibrated confidence (0–1) needed to call a clip a catalog track.
    max_segments : int
        Small index segments merged beyond this many (incremental adds).
    """

    index_dir: Path | None = None
    query_seconds: float = 30.0
    accept_confidence: float = 0.8
    max_segments: int = 8


@dataclass(frozen=True)
class Settings:
    """All of mixwith's settings.

    Attributes
    ----------
    home : Path
        Data directory (embedded database, indexes, models, caches).
    database_url : str or None
        A PostgreSQL DSN; None starts an embedded server under ``home``.
    """

    home: Path
    database_url: str | None = None
    log_level: str = "INFO"
    audio: AudioSettings = field(default_factory=AudioSettings)
    rank: RankSettings = field(default_factory=RankSettings)
    identify: IdentifySettings = field(default_factory=IdentifySettings)

    @property
    def fingerprint_dir(self) -> Path:
        """The fingerprint index directory (shared by every worker process)."""
        return self.identify.index_dir or self.home / "fingerprints"

    @property
    def pg_dir(self) -> Path:
        return self.home / "pg"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """Read settings from ``env`` (default: ``os.environ``).

        Raises
        ------
        SettingsError
            Naming the variable and the bad value.
        """
        env = os.environ if env is None else env
        default_home = Path(os.path.expanduser("~/.local/share/mixwith"))
        audio = AudioSettings(
            sample_rate=_int(env, "MIXWITH_SAMPLE_RATE", AudioSettings.sample_rate),
            max_bytes=_int(env, "MIXWITH_MAX_FILE_BYTES", AudioSettings.max_bytes),
            max_duration_s=_float(env, "MIXWITH_MAX_DURATION_S", AudioSettings.max_duration_s),
            min_duration_s=_float(env, "MIXWITH_MIN_DURATION_S", AudioSettings.min_duration_s),
            decode_timeout_s=_float(env, "MIXWITH_DECODE_TIMEOUT_S", AudioSettings.decode_timeout_s),
            analysis_seconds=_float(env, "MIXWITH_ANALYSIS_SECONDS", AudioSettings.analysis_seconds),
            processes=max(1, _int(env, "MIXWITH_PROCESSES", os.cpu_count() or 1)),
        )
        rules = tuple(r.strip() for r in _get(env, "MIXWITH_CAMELOT_RULES", ",".join(RankSettings.camelot_rules)).split(",") if r.strip())
        rank = RankSettings(
            w_key=_float(env, "MIXWITH_W_KEY", RankSettings.w_key),
            w_tempo=_float(env, "MIXWITH_W_TEMPO", RankSettings.w_tempo),
            w_energy=_float(env, "MIXWITH_W_ENERGY", RankSettings.w_energy),
            w_sound=_float(env, "MIXWITH_W_SOUND", RankSettings.w_sound),
            w_coplay=_float(env, "MIXWITH_W_COPLAY", RankSettings.w_coplay),
            pitch_range_pct=_float(env, "MIXWITH_PITCH_RANGE_PCT", RankSettings.pitch_range_pct),
            camelot_rules=rules,
        )
        fp_dir = _get(env, "MIXWITH_FP_INDEX_DIR", "")
        identify = IdentifySettings(
            index_dir=Path(os.path.expanduser(fp_dir)) if fp_dir else None,
            query_seconds=_float(env, "MIXWITH_IDENTIFY_QUERY_SECONDS", IdentifySettings.query_seconds),
            accept_confidence=_float(env, "MIXWITH_IDENTIFY_ACCEPT_CONFIDENCE", IdentifySettings.accept_confidence),
            max_segments=max(2, _int(env, "MIXWITH_FP_MAX_SEGMENTS", IdentifySettings.max_segments)),
        )
        if not 0.0 < identify.accept_confidence < 1.0:
            raise SettingsError(
                f"MIXWITH_IDENTIFY_ACCEPT_CONFIDENCE must be between 0 and 1, got {identify.accept_confidence}"
            )
        return cls(
            home=Path(os.path.expanduser(_get(env, "MIXWITH_HOME", str(default_home)))),
            database_url=env.get("DATABASE_URL") or None,
            log_level=_get(env, "MIXWITH_LOG_LEVEL", "INFO").upper(),
            audio=audio,
            rank=rank,
            identify=identify,
        )
