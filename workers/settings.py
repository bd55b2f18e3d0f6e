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


@dataclass(frozen=True)
class MixSettings:
    """Mix-history import, collaborative filtering and ranking knobs (issue 6; see engine.als, engine.rank)."""

    fuzzy_cutoff: float = 90.0
    max_import_bytes: int = 50 * 1024 * 1024
    als_factors: int = 32
    als_iterations: int = 10
    als_regularization: float = 0.05
    als_alpha: float = 2.0
    cooc_window: int = 3
    cooc_decay: float = 0.5
    cooc_bpm_boost: float = 0.5
    relation_weight: float = 2.0
    feedback_weight: float = 1.0
    flow: float = 1.0
    sweetness: float = 1.0
    smoothness: float = 1.0
    max_per_artist: int = 2

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "MixSettings":
        d = cls()
        return cls(
            fuzzy_cutoff=_float(env, "MIXWITH_FUZZY_CUTOFF", d.fuzzy_cutoff),
            max_import_bytes=_int(env, "MIXWITH_MAX_IMPORT_BYTES", d.max_import_bytes),
            als_factors=_int(env, "MIXWITH_ALS_FACTORS", d.als_factors),
            als_iterations=_int(env, "MIXWITH_ALS_ITERATIONS", d.als_iterations),
            als_regularization=_float(env, "MIXWITH_ALS_REGULARIZATION", d.als_regularization),
            als_alpha=_float(env, "MIXWITH_ALS_ALPHA", d.als_alpha),
            cooc_window=_int(env, "MIXWITH_COOC_WINDOW", d.cooc_window),
            cooc_decay=_float(env, "MIXWITH_COOC_DECAY", d.cooc_decay),
            cooc_bpm_boost=_float(env, "MIXWITH_COOC_BPM_BOOST", d.cooc_bpm_boost),
            relation_weight=_float(env, "MIXWITH_RELATION_WEIGHT", d.relation_weight),
            feedback_weight=_float(env, "MIXWITH_FEEDBACK_WEIGHT", d.feedback_weight),
            flow=_float(env, "MIXWITH_FLOW", d.flow),
            sweetness=_float(env, "MIXWITH_SWEETNESS", d.sweetness),
            smoothness=_float(env, "MIXWITH_SMOOTHNESS", d.smoothness),
            max_per_artist=_int(env, "MIXWITH_MAX_PER_ARTIST", d.max_per_artist),
        )


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
    mixes: MixSettings = field(default_factory=MixSettings)

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
        return cls(
            home=Path(os.path.expanduser(_get(env, "MIXWITH_HOME", str(default_home)))),
            database_url=env.get("DATABASE_URL") or None,
            log_level=_get(env, "MIXWITH_LOG_LEVEL", "INFO").upper(),
            audio=audio,
            rank=rank,
            mixes=MixSettings.from_env(env),
        )
