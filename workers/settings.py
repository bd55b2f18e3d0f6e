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
    min_duration_s: float = 3.0
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
    tempo_clash: float = 0.3
    max_candidates: int = 5000
    camelot_rules: tuple[str, ...] = ("same", "+1", "-1", "relative", "diagonal", "+2")


# --- workers: fetching sources and the task queue (issue 7) ---------------------------------


@dataclass(frozen=True)
class FetchSettings:
    """Bounds on fetching untrusted links and uploads.

    Attributes
    ----------
    max_bytes : int
        Largest download or upload kept; bigger ones are refused.
    preview_s : float
        Only the first seconds of a streamed song are downloaded (yt-dlp ``download_ranges``).
    timeout_s : float
        Wall-clock limit for one fetch.
    connect_timeout_s : float
        Limit for opening one connection.
    max_redirects : int
        Redirects followed, each one re-checked by the SSRF guard.
    allow_loopback_for_tests : bool
        Let 127.0.0.1 through the SSRF guard. Tests only; default off.
    cache_ttl_s : float
        How long fetched previews and analyses are reused for the same source.
    upload_retention_s : float
        How long uploads are kept after processing; 0 deletes them at once.
    spotify_client_id, spotify_client_secret : str
        Client-credentials app for track metadata (title, artists, ISRC).
    spotify_api_url, spotify_token_url : str
        Web API and token endpoints (tests point them at a local fake).
    """

    max_bytes: int = 50 * 1024 * 1024
    preview_s: float = 60.0
    timeout_s: float = 90.0
    connect_timeout_s: float = 10.0
    max_redirects: int = 5
    allow_loopback_for_tests: bool = False
    cache_ttl_s: float = 7 * 24 * 3600.0
    upload_retention_s: float = 0.0
    spotify_client_id: str = ""
    spotify_client_secret: str = ""
    spotify_api_url: str = "https://api.spotify.com/v1/"
    spotify_token_url: str = "https://accounts.spotify.com/api/token"


@dataclass(frozen=True)
class QueueSettings:
    """The task queue.

    Attributes
    ----------
    broker_url : str
        ``memory`` (jobs run in this process, engine work in a local process
        pool) or ``redis://host:port/db`` for separate ``mixwith worker`` machines.
    job_timeout_s : float
        A job running longer is failed with a timeout.
    retries : int
        Extra attempts for transient failures only (timeouts, 5xx, resets).
    retry_backoff_s : float
        First retry delay; doubles with each attempt.
    concurrency : int
        Jobs one worker process runs at once.
    claim_idle_s : float
        A Redis job unacknowledged this long (its worker died) is taken over
        by another worker; must exceed ``job_timeout_s``.
    shutdown_grace_s : float
        On SIGTERM a worker takes no new job and finishes its running ones
        for up to this long; the rest are taken over by other workers.
    result_ttl_s : float
        How long answers and progress events stay in Redis.
    batch_size, batch_wait_ms : int, float
        Micro-batching of embedding work from concurrent jobs.
    queue_name : str
        Redis stream (and key prefix) of this deployment.
    """

    broker_url: str = "memory"
    job_timeout_s: float = 300.0
    retries: int = 2
    retry_backoff_s: float = 2.0
    concurrency: int = 4
    claim_idle_s: float = 360.0
    shutdown_grace_s: float = 30.0
    result_ttl_s: float = 24 * 3600.0
    batch_size: int = 16
    batch_wait_ms: float = 20.0
    queue_name: str = "mixwith"

    @property
    def is_redis(self) -> bool:
        return self.broker_url.startswith(("redis://", "rediss://", "unix://"))


def _fetch_settings(env: Mapping[str, str]) -> FetchSettings:
    d = FetchSettings
    return FetchSettings(
        max_bytes=_int(env, "MIXWITH_FETCH_MAX_BYTES", d.max_bytes),
        preview_s=_float(env, "MIXWITH_FETCH_PREVIEW_S", d.preview_s),
        timeout_s=_float(env, "MIXWITH_FETCH_TIMEOUT_S", d.timeout_s),
        connect_timeout_s=_float(env, "MIXWITH_FETCH_CONNECT_TIMEOUT_S", d.connect_timeout_s),
        max_redirects=_int(env, "MIXWITH_FETCH_MAX_REDIRECTS", d.max_redirects),
        allow_loopback_for_tests=_bool(env, "MIXWITH_ALLOW_LOOPBACK_FOR_TESTS", d.allow_loopback_for_tests),
        cache_ttl_s=_float(env, "MIXWITH_CACHE_TTL_S", d.cache_ttl_s),
        upload_retention_s=_float(env, "MIXWITH_UPLOAD_RETENTION_S", d.upload_retention_s),
        spotify_client_id=_get(env, "MIXWITH_SPOTIFY_CLIENT_ID", ""),
        spotify_client_secret=_get(env, "MIXWITH_SPOTIFY_CLIENT_SECRET", ""),
        spotify_api_url=_get(env, "MIXWITH_SPOTIFY_API_URL", d.spotify_api_url),
        spotify_token_url=_get(env, "MIXWITH_SPOTIFY_TOKEN_URL", d.spotify_token_url),
    )


def _queue_settings(env: Mapping[str, str]) -> QueueSettings:
    d = QueueSettings
    timeout = _float(env, "MIXWITH_JOB_TIMEOUT_S", d.job_timeout_s)
    queue = QueueSettings(
        broker_url=_get(env, "MIXWITH_BROKER", d.broker_url),
        job_timeout_s=timeout,
        retries=max(0, _int(env, "MIXWITH_JOB_RETRIES", d.retries)),
        retry_backoff_s=_float(env, "MIXWITH_RETRY_BACKOFF_S", d.retry_backoff_s),
        concurrency=max(1, _int(env, "MIXWITH_WORKER_CONCURRENCY", d.concurrency)),
        claim_idle_s=_float(env, "MIXWITH_CLAIM_IDLE_S", timeout + 60.0),
        shutdown_grace_s=max(0.0, _float(env, "MIXWITH_SHUTDOWN_GRACE_S", d.shutdown_grace_s)),
        result_ttl_s=_float(env, "MIXWITH_RESULT_TTL_S", d.result_ttl_s),
        batch_size=max(1, _int(env, "MIXWITH_EMBED_BATCH_SIZE", d.batch_size)),
        batch_wait_ms=_float(env, "MIXWITH_EMBED_BATCH_WAIT_MS", d.batch_wait_ms),
        queue_name=_get(env, "MIXWITH_QUEUE_NAME", d.queue_name),
    )
    if queue.broker_url != "memory" and not queue.is_redis:
        raise SettingsError(f"MIXWITH_BROKER must be 'memory' or a redis:// URL, got {queue.broker_url!r}")
    if queue.is_redis and queue.claim_idle_s <= queue.job_timeout_s:
        raise SettingsError("MIXWITH_CLAIM_IDLE_S must be longer than MIXWITH_JOB_TIMEOUT_S")
    return queue

# --- end workers (issue 7) ---------------------------------------------------------------------


# --- sounds-like embedder and index (issue 5) ------------------------------------


@dataclass(frozen=True)
class EmbedSettings:
    """The sounds-like CNN and its Annoy index.

    Attributes
    ----------
    weights : str
        Path of the embedder weights; empty means the bundled default weights.
    device : str
        ``auto`` (CUDA when present), ``cuda`` or ``cpu``.
    threads : int
        Torch CPU threads; 0 means every core this process may use.
    batch_size : int
        3 s windows per forward pass.
    max_seconds : float
        Only the first this-many seconds of a track are embedded.
    index_trees : int
        Annoy trees per index build.
    index_exact_below : int
        Catalogs smaller than this are searched exactly (numpy), not with Annoy.
    index_search_k : int
        Annoy nodes inspected per query (-1: Annoy's default, trees × k).
    candidates : int
        Sounds-like neighbours fetched per recommendation.
    """

    weights: str = ""
    device: str = "auto"
    threads: int = 0
    batch_size: int = 64
    max_seconds: float = 240.0
    index_trees: int = 50
    index_exact_below: int = 2000
    index_search_k: int = 10000
    candidates: int = 200


def _embed_from_env(env: Mapping[str, str]) -> EmbedSettings:
    d = EmbedSettings
    device = _get(env, "MIXWITH_EMBED_DEVICE", d.device).lower()
    if device not in ("auto", "cuda", "cpu"):
        raise SettingsError(f"MIXWITH_EMBED_DEVICE must be auto, cuda or cpu, got {device!r}")
    return EmbedSettings(
        weights=_get(env, "MIXWITH_EMBED_WEIGHTS", d.weights),
        device=device,
        threads=max(0, _int(env, "MIXWITH_EMBED_THREADS", d.threads)),
        batch_size=max(1, _int(env, "MIXWITH_EMBED_BATCH", d.batch_size)),
        max_seconds=_float(env, "MIXWITH_EMBED_MAX_SECONDS", d.max_seconds),
        index_trees=max(1, _int(env, "MIXWITH_INDEX_TREES", d.index_trees)),
        index_exact_below=max(0, _int(env, "MIXWITH_INDEX_EXACT_BELOW", d.index_exact_below)),
        index_search_k=_int(env, "MIXWITH_INDEX_SEARCH_K", d.index_search_k),
        candidates=max(1, _int(env, "MIXWITH_SOUNDS_LIKE_CANDIDATES", d.candidates)),
    )
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
class MixSettings:
    """Mix-history import, collaborative filtering and ranking knobs (issue 6; see engine.als, engine.rank)."""

    fuzzy_cutoff: float = 90.0
    max_import_bytes: int = 50 * 1024 * 1024
    als_factors: int = 32
    als_iterations: int = 10
    als_cg_steps: int = 2
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
    artist_repeat_penalty: float = 0.15

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "MixSettings":
        d = cls()
        return cls(
            fuzzy_cutoff=_float(env, "MIXWITH_FUZZY_CUTOFF", d.fuzzy_cutoff),
            max_import_bytes=_int(env, "MIXWITH_MAX_IMPORT_BYTES", d.max_import_bytes),
            als_factors=_int(env, "MIXWITH_ALS_FACTORS", d.als_factors),
            als_iterations=_int(env, "MIXWITH_ALS_ITERATIONS", d.als_iterations),
            als_cg_steps=_int(env, "MIXWITH_ALS_CG_STEPS", d.als_cg_steps),
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
            artist_repeat_penalty=_float(env, "MIXWITH_ARTIST_REPEAT_PENALTY", d.artist_repeat_penalty),
        )
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
        Calibrated confidence (0–1) needed to call a clip a catalog track (default: the shipped
        calibration's, ``engine.fingerprint.Calibration.accept_confidence``).
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
    mixes: MixSettings = field(default_factory=MixSettings)
    fetch: FetchSettings = field(default_factory=FetchSettings)
    queue: QueueSettings = field(default_factory=QueueSettings)
    embed: EmbedSettings = field(default_factory=EmbedSettings)
    # bots (issue 8)
    bots: BotSettings = field(default_factory=BotSettings)
    discord: DiscordSettings = field(default_factory=DiscordSettings)
    slack: SlackSettings = field(default_factory=SlackSettings)
    spotify: SpotifySettings = field(default_factory=SpotifySettings)
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

    @property
    def index_dir(self) -> Path:
        """Sounds-like indexes, one sub-directory per embedder version."""
        return self.home / "index"

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
            tempo_clash=_float(env, "MIXWITH_TEMPO_CLASH_PENALTY", RankSettings.tempo_clash),
            max_candidates=max(1, _int(env, "MIXWITH_MAX_CANDIDATES", RankSettings.max_candidates)),
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
            mixes=MixSettings.from_env(env),
            fetch=_fetch_settings(env),
            queue=_queue_settings(env),
            embed=_embed_from_env(env),
            **_bots_from_env(env),  # bots (issue 8)
            identify=identify,
        )
