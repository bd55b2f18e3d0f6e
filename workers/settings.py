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


# --- bots (issue 8): chat front ends, rate limits, Spotify -----------------------------------


@dataclass(frozen=True)
class BotSettings:
    """Limits shared by the chat front ends.

    Attributes
    ----------
    user_per_minute, place_per_minute : int
        Requests allowed per user, and per server/workspace, in any 60 s window.
    user_active : int
        Jobs one user may have running at once.
    max_upload_bytes : int
        Largest clip accepted from chat (checked before downloading).
    job_timeout_s : float
        A job taking longer is reported as failed.
    progress_interval_s : float
        Minimum time between progress edits of one reply (platform rate limits).
    spool_dir : Path or None
        Where uploaded clips are written for the workers (default: ``home/uploads``).
    """

    user_per_minute: int = 5
    place_per_minute: int = 30
    user_active: int = 2
    max_upload_bytes: int = 25 * 1024 * 1024
    job_timeout_s: float = 600.0
    progress_interval_s: float = 1.5
    spool_dir: Path | None = None


@dataclass(frozen=True)
class DiscordSettings:
    """Discord application credentials; ``guild_id`` syncs commands to one server instantly."""

    token: str = ""
    guild_id: int | None = None
    sync_commands: bool = True


@dataclass(frozen=True)
class SlackSettings:
    """Slack app credentials: Socket Mode when ``app_token`` is set, else HTTP on ``port``."""

    bot_token: str = ""
    signing_secret: str = ""
    app_token: str = ""
    port: int = 3000
    api_url: str = "https://slack.com/api/"


@dataclass(frozen=True)
class SpotifySettings:
    """The bot-owned Spotify account that creates every playlist (empty: no playlists)."""

    client_id: str = ""
    client_secret: str = ""
    refresh_token: str = ""
    api_url: str = "https://api.spotify.com/v1/"
    accounts_url: str = "https://accounts.spotify.com/api/token"
    timeout_s: float = 10.0
    public: bool = False

    @property
    def configured(self) -> bool:
        return bool(self.client_id and self.client_secret and self.refresh_token)


def _bots_from_env(env: Mapping[str, str]) -> dict[str, object]:
    """The bot-related groups of ``Settings``, read from ``env``."""
    guild = _get(env, "MIXWITH_DISCORD_GUILD_ID", "")
    if guild and not guild.isdigit():
        raise SettingsError(f"MIXWITH_DISCORD_GUILD_ID must be a server id (digits), got {guild!r}")
    spool = _get(env, "MIXWITH_SPOOL_DIR", "")
    return {
        "bots": BotSettings(
            user_per_minute=_int(env, "MIXWITH_RATE_USER_PER_MIN", BotSettings.user_per_minute),
            place_per_minute=_int(env, "MIXWITH_RATE_PLACE_PER_MIN", BotSettings.place_per_minute),
            user_active=_int(env, "MIXWITH_RATE_USER_ACTIVE", BotSettings.user_active),
            max_upload_bytes=_int(env, "MIXWITH_MAX_UPLOAD_BYTES", BotSettings.max_upload_bytes),
            job_timeout_s=_float(env, "MIXWITH_JOB_TIMEOUT_S", BotSettings.job_timeout_s),
            progress_interval_s=_float(env, "MIXWITH_PROGRESS_INTERVAL_S", BotSettings.progress_interval_s),
            spool_dir=Path(os.path.expanduser(spool)) if spool else None,
        ),
        "discord": DiscordSettings(
            token=_get(env, "DISCORD_TOKEN", ""),
            guild_id=int(guild) if guild else None,
            sync_commands=_bool(env, "MIXWITH_DISCORD_SYNC", True),
        ),
        "slack": SlackSettings(
            bot_token=_get(env, "SLACK_BOT_TOKEN", ""),
            signing_secret=_get(env, "SLACK_SIGNING_SECRET", ""),
            app_token=_get(env, "SLACK_APP_TOKEN", ""),
            port=_int(env, "MIXWITH_SLACK_PORT", SlackSettings.port),
            api_url=_get(env, "MIXWITH_SLACK_API_URL", SlackSettings.api_url),
        ),
        "spotify": SpotifySettings(
            client_id=_get(env, "SPOTIFY_CLIENT_ID", ""),
            client_secret=_get(env, "SPOTIFY_CLIENT_SECRET", ""),
            refresh_token=_get(env, "SPOTIFY_REFRESH_TOKEN", ""),
            api_url=_get(env, "MIXWITH_SPOTIFY_API_URL", SpotifySettings.api_url),
            accounts_url=_get(env, "MIXWITH_SPOTIFY_ACCOUNTS_URL", SpotifySettings.accounts_url),
            timeout_s=_float(env, "MIXWITH_SPOTIFY_TIMEOUT_S", SpotifySettings.timeout_s),
            public=_bool(env, "MIXWITH_SPOTIFY_PUBLIC", False),
        ),
    }


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
    # bots (issue 8)
    bots: BotSettings = field(default_factory=BotSettings)
    discord: DiscordSettings = field(default_factory=DiscordSettings)
    slack: SlackSettings = field(default_factory=SlackSettings)
    spotify: SpotifySettings = field(default_factory=SpotifySettings)

    @property
    def pg_dir(self) -> Path:
        return self.home / "pg"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def spool_dir(self) -> Path:
        """Where chat uploads are written for the workers (bots, issue 8)."""
        return self.bots.spool_dir or self.home / "uploads"

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
            **_bots_from_env(env),  # bots (issue 8)
        )
