"""The ``mixwith`` command: every subcommand a DJ or an operator runs.

Each command reads settings once, sets up logging, then calls one function in
``workers`` (or ``engine``). User errors print one sentence and exit 1; bugs
print a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bot.terminal import print_ingest, print_result
from db.errors import DatabaseError
from engine.errors import EngineError
from workers.errors import MixwithError
from workers.settings import Settings, SettingsError

logger = logging.getLogger("mixwith")
T = TypeVar("T")

USER_ERRORS = (MixwithError, EngineError, DatabaseError, SettingsError)


def _load_settings() -> Settings:
    from dotenv import load_dotenv

    load_dotenv(Path.cwd() / ".env", override=False)
    settings = Settings.from_env()
    logging.basicConfig(
        level=getattr(logging, settings.log_level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # the embedded server logs every pg_ctl call at INFO; a DJ needs none of it
    logging.getLogger("pgserver").setLevel(max(logging.WARNING, logging.getLogger().level))
    return settings


def _console(*, stderr: bool = False) -> Console:
    """A console that stays wide enough for the tables when output is piped."""
    console = Console(stderr=stderr)
    if not console.is_terminal:
        console = Console(stderr=stderr, width=140)
    return console


def _user_errors(fn: Callable[..., T]) -> Callable[..., T]:
    """Turn our user-facing errors into one line on stderr and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as exc:
            click.echo(f"mixwith: {getattr(exc, 'reason', None) or exc}", err=True)
            sys.exit(1)

    return wrapper


@contextlib.contextmanager
def _progress(console: Console, label: str, *, disable: bool = False) -> Iterator[Callable[[int, int, str], None]]:
    """A transient progress bar; yields the ``on_progress(done, total, path)`` callback the workers take."""
    with Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True, disable=disable or not console.is_terminal,
    ) as bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total, path: bar.update(task, completed=done, total=total)


async def _with_pool(settings: Settings, fn: Callable[[Any], Awaitable[T]]) -> T:
    from db.pool import create_pool

    pool = await create_pool(dsn=settings.database_url, pg_dir=settings.pg_dir)
    try:
        return await fn(pool)
    finally:
        await pool.close()


def _emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mixwith")
def cli() -> None:
    """mixwith: what mixes with this track?

    Build a catalog from your own music, then ask for tracks that mix with a
    song file, a phone recording or a link: ranked by key (Camelot), tempo
    and energy, with the reasons each one fits.
    """


# --- catalog ----------------------------------------------------------------


@cli.group()
def catalog() -> None:
    """Your music library: add folders, list, remove."""


@catalog.command("add")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable report.")
@_user_errors
def catalog_add(paths: tuple[Path, ...], as_json: bool) -> None:
    """Add audio files or whole folders (searched recursively).

    Reads mp3, m4a/aac, ogg, opus, flac, wav, aiff and webm; measures tempo,
    key and energy. Files already in the catalog are skipped, so it is safe to
    interrupt and run again. Files that cannot be read are listed at the end.
    """
    settings = _load_settings()
    console = _console(stderr=as_json)

    async def run(pool: Any) -> Any:
        from workers.catalog import add_to_catalog

        with _progress(console, "analysing", disable=as_json) as on_progress:
            return await add_to_catalog(pool, list(paths), settings=settings, on_progress=on_progress)

    update = asyncio.run(_with_pool(settings, run))
    if as_json:
        _emit_json(update.to_dict())
    else:
        print_ingest(console, update.ingest)
        if update.fingerprinted or update.fingerprint_failed:
            click.echo(f"fingerprinted {len(update.fingerprinted)} track(s) for identification"
                       + (f"; {len(update.fingerprint_failed)} failed" if update.fingerprint_failed else ""))
        if update.indexed:
            click.echo(f"sounds-like index: {update.indexed} track(s)")
        elif update.index_note:
            click.echo(update.index_note)


@catalog.command("list")
@click.option("--search", "-s", help="Only tracks whose title or artist contains this.")
@click.option("--limit", type=click.IntRange(min=1), help="Show at most this many.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_user_errors
def catalog_list(search: str | None, limit: int | None, as_json: bool) -> None:
    """List the tracks in your catalog with BPM, key and energy."""
    settings = _load_settings()

    async def run(pool: Any) -> Any:
        from db.queries.tracks import list_tracks

        async with pool.acquire() as conn:
            return await list_tracks(conn, search=search, limit=limit)

    rows = asyncio.run(_with_pool(settings, run))
    if as_json:
        _emit_json([
            {"track_id": r.id, "title": r.title, "artist": r.artist, "path": r.path, "bpm": r.bpm,
             "key": r.key, "camelot": r.camelot, "energy": r.energy}
            for r in rows
        ])
        return
    from rich.table import Table

    table = Table(header_style="bold")
    for col in ("ID", "Artist", "Title", "BPM", "Key", "E"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r.id), r.artist, r.title, f"{r.bpm:.1f}" if r.bpm else "-",
                      f"{r.camelot} {r.key}" if r.camelot else "-", str(r.energy or "-"))
    _console().print(table)
    click.echo(f"{len(rows)} track(s)")


@catalog.command("remove")
@click.argument("targets", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_user_errors
def catalog_remove(targets: tuple[str, ...], as_json: bool) -> None:
    """Remove tracks by ID, or every track under a file or folder path."""
    settings = _load_settings()

    async def run(pool: Any) -> list[int]:
        from db.queries.tracks import remove_by_path_prefix, remove_tracks

        removed: list[int] = []
        async with pool.acquire() as conn:
            ids = [int(t) for t in targets if t.isdigit()]
            if ids:
                removed += await remove_tracks(conn, ids)
            for t in targets:
                if not t.isdigit():
                    removed += await remove_by_path_prefix(conn, str(Path(t).expanduser().resolve()))
        # identification: removed tracks leave the fingerprint index too
        from workers.identify import unindex_tracks

        await unindex_tracks(pool, settings, removed)
        return removed

    removed = asyncio.run(_with_pool(settings, run))
    if as_json:
        _emit_json({"removed": removed})
    else:
        click.echo(f"removed {len(removed)} track(s)")
    if not removed:
        raise MixwithError("nothing matched: give track IDs from `mixwith catalog list` or a path in the catalog")


@catalog.command("reindex")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_user_errors
def catalog_reindex(as_json: bool) -> None:
    """Fingerprint the whole catalog again (needed after an upgrade changes the fingerprint format)."""
    settings = _load_settings()

    async def run(pool: Any) -> Any:
        from workers.identify import reindex_catalog

        return await reindex_catalog(pool, settings)

    update = asyncio.run(_with_pool(settings, run))
    if as_json:
        _emit_json({"fingerprinted": list(update.indexed),
                    "fingerprint_failed": [{"track_id": t, "reason": r} for t, r in update.failed],
                    "index_version": update.version})
    else:
        click.echo(f"fingerprinted {len(update.indexed)} track(s) for identification"
                   + (f"; {len(update.failed)} failed" if update.failed else ""))


# --- analysis and recommendations --------------------------------------------


@cli.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_user_errors
def analyze(file: Path, as_json: bool) -> None:
    """Measure the tempo (BPM), key (with Camelot code) and energy of FILE."""
    settings = _load_settings()
    from workers.catalog import process_file

    res = process_file(str(file), settings.audio)
    if res.error or res.analysis is None:
        raise MixwithError(f"{file.name}: {res.error}")
    a = res.analysis
    if as_json:
        _emit_json(a)
    else:
        # bpm 0.0 is the engine's "no beat" (a drone, an ambient piece)
        tempo = "no clear tempo" if not a["bpm"] else f"{a['bpm']:.1f} BPM"
        if a["bpm"] and a["bpm_alternates"]:
            tempo += f" (or {', '.join(f'{b:g}' for b in a['bpm_alternates'])})"
        click.echo(
            f"{file.name}: {tempo}, "
            f"{a['key']} ({a['camelot']}, Open Key {a['open_key']}), energy {a['energy']}/10, "
            f"{a['loudness_lufs']:.1f} LUFS, {a['duration']:.0f} s"
        )


@cli.command()
@click.argument("source")
@click.option("--count", "-n", default=10, show_default=True, type=click.IntRange(1, 100), help="How many tracks.")
@click.option("--bpm-min", type=float, help="Only tracks at or above this BPM.")
@click.option("--bpm-max", type=float, help="Only tracks at or below this BPM.")
@click.option("--key-lock", is_flag=True, help="Only harmonically compatible keys.")
@click.option("--exclude-same-artist", is_flag=True, help="Leave out the query's own artist.")
@click.option("--order", is_flag=True, help="Order the tracks into a playable set after SOURCE.")
@click.option("--arc", type=click.Choice(["build", "peak", "cooldown", "flat"]), help="Energy arc of the ordered set (implies --order).")
@click.option("--export", "export_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the set as .m3u8 or rekordbox .xml.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_user_errors
def recommend(
    source: str, count: int, bpm_min: float | None, bpm_max: float | None, key_lock: bool,
    exclude_same_artist: bool, as_json: bool, order: bool = False, arc: str | None = None,
    export_path: Path | None = None,
) -> None:
    """Tracks from your catalog that mix well with SOURCE (a file or a link)."""
    settings = _load_settings()
    from workers.messages import MixOptions

    options = MixOptions(count=count, bpm_min=bpm_min, bpm_max=bpm_max, key_lock=key_lock,
                         exclude_same_artist=exclude_same_artist, order=order or arc is not None, arc=arc)
    path = Path(source).expanduser()
    is_link = "://" in source or source.startswith("spotify:")
    if not is_link and not path.is_file():
        raise MixwithError(f"no such file: {source}")

    async def run(pool: Any) -> Any:
        from workers.pipeline import recommend_file

        return await recommend_file(pool, path, settings=settings, options=options)

    async def run_link() -> Any:
        # links go through the job queue: SSRF-guarded fetchers, caches, the same pipeline
        from workers.broker import open_queue
        from workers.messages import MixRequest

        async with open_queue(settings) as client:
            request = MixRequest.new(platform="cli", input_kind="link", input_ref=source, options=options)
            return await client.mix(request)

    result = asyncio.run(run_link() if is_link else _with_pool(settings, run))
    if export_path is not None:
        from workers.mixes import export_playlist

        export_playlist(result.results, export_path, name=f"mixwith: {path.stem}")
    if as_json:
        _emit_json(result.to_dict())
    else:
        print_result(_console(), result)
        if export_path is not None:
            click.echo(f"set written to {export_path}")


# --- mix history and collaborative filtering (issue 6) -------------------------


@cli.group()
def mixes() -> None:
    """DJ mix histories: what DJs played together."""


@mixes.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--fuzzy-cutoff", type=click.FloatRange(0, 100),
              help="Smallest artist/title similarity (0-100) accepted as the same track [MIXWITH_FUZZY_CUTOFF, 90].")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable report.")
@_user_errors
def mixes_import(files: tuple[Path, ...], fuzzy_cutoff: float | None, as_json: bool) -> None:
    """Import tracklist CSVs, M3U/M3U8 playlists, rekordbox XML and sample-relation CSVs."""
    settings = _load_settings()
    fuzzy_cutoff = settings.mixes.fuzzy_cutoff if fuzzy_cutoff is None else fuzzy_cutoff

    async def run(pool: Any) -> Any:
        from workers.mixes import import_files

        return await import_files(pool, files, fuzzy_cutoff=fuzzy_cutoff,
                                  max_bytes=settings.mixes.max_import_bytes)

    report = asyncio.run(_with_pool(settings, run))
    if as_json:
        _emit_json(report.to_dict())
        return
    click.echo(
        f"{report.mixes} mixes ({report.entries} entries) and {report.relations} sample relations from "
        f"{report.files} files; matched {report.matched_by_id} by id, {report.matched_by_name} by name, "
        f"{report.matched_fuzzy} fuzzily; {report.stubs_created} new stub tracks"
    )
    for e in report.errors:
        click.echo(f"  skipped {e}", err=True)


@cli.group()
def train() -> None:
    """Train models from the stored data."""


@train.command("als")
@click.option("--view", type=click.Choice(["item", "mix"]), default="item", show_default=True,
              help="item: track×track co-occurrence (plus samples and feedback); mix: mix×track.")
@click.option("--factors", type=click.IntRange(1, 512), help="Latent factors (default from engine.als.AlsParams).")
@click.option("--iterations", type=click.IntRange(1, 100), help="ALS sweeps.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_user_errors
def train_als(view: str, factors: int | None, iterations: int | None, as_json: bool) -> None:
    """Train implicit ALS on the mix history and make it the active model."""
    settings = _load_settings()
    from engine.als import AlsParams, CooccurrenceParams

    m = settings.mixes
    params = AlsParams(factors=factors or m.als_factors, iterations=iterations or m.als_iterations, cg_steps=m.als_cg_steps,
                       regularization=m.als_regularization, alpha=m.als_alpha)
    cooc = CooccurrenceParams(window=m.cooc_window, decay=m.cooc_decay, bpm_boost=m.cooc_bpm_boost)

    async def run(pool: Any) -> Any:
        from workers.mixes import train_from_history

        return await train_from_history(pool, models_dir=settings.models_dir, view=view,  # type: ignore[arg-type]
                                        params=params, cooccurrence=cooc, relation_weight=m.relation_weight,
                                        feedback_weight=m.feedback_weight, threads=settings.audio.processes)

    report = asyncio.run(_with_pool(settings, run))
    if as_json:
        _emit_json(report.to_dict())
        return
    click.echo(
        f"ALS {report.version}: {report.interactions} interactions over {report.tracks} tracks from "
        f"{report.mixes} mixes ({report.relations} sample relations, {report.feedback_pairs} rated pairs) "
        f"in {report.seconds:.1f} s on {report.device}; saved to {report.path}"
    )


# --- identification (issue 4) -------------------------------------------------


@cli.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_user_errors
def identify(file: Path, as_json: bool) -> None:
    """Name the catalog track playing in FILE (a phone clip of a few seconds), or say it is not in the catalog.

    Copes with room echo, crowd noise, phone microphones and a pitch fader
    within ±3.5 %. The answer carries where in the track the clip starts and
    a calibrated confidence.
    """
    settings = _load_settings()
    path = file.expanduser()
    if not path.is_file():
        raise MixwithError(f"no such file: {file}")

    async def run(pool: Any) -> Any:
        from workers.identify import identify_clip

        return await identify_clip(pool, path, settings=settings)

    found = asyncio.run(_with_pool(settings, run))
    if as_json:
        _emit_json(found)
        return
    m = found["match"]
    if m is None:
        click.echo(f"{path.name}: not in the catalog")
        return
    who = f"{m['artist']} – {m['title']}" if m["artist"] else m["title"]
    speed = f", played at {m['speed'] * 100:.1f} % speed" if abs(m["speed"] - 1.0) > 1e-6 else ""
    click.echo(f"{path.name}: {who} (track {m['track_id']}) from {m['offset']:.1f} s{speed}, "
               f"confidence {m['confidence']:.2f}")


# --- demo and database --------------------------------------------------------


@cli.command()
@click.option("--tracks", default=48, show_default=True, type=click.IntRange(2, 500), help="Size of the demo catalog.")
@click.option("--seconds", default=30.0, show_default=True, type=click.FloatRange(5, 300), help="Length of each demo track.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_user_errors
def demo(tracks: int, seconds: float, as_json: bool) -> None:
    """Build a demo catalog offline and answer a phone memo of one of its tracks."""
    settings = _load_settings()
    console = _console(stderr=as_json)
    started = time.monotonic()

    async def run(pool: Any) -> Any:
        from workers.demo import run_demo

        console.print(f"Rendering {tracks} demo tracks into {settings.home / 'demo' / 'tracks'} …")
        with _progress(console, "analysing") as on_progress:
            return await run_demo(pool, settings=settings, count=tracks, duration_s=seconds, on_progress=on_progress)

    out = asyncio.run(_with_pool(settings, run))
    if as_json:
        d = out.result.to_dict()
        d["memo"] = {"path": str(out.memo_path), "excerpt_of": out.memo_of.title, "artist": out.memo_of.artist}
        d["ingest"] = out.ingest.to_dict()
        _emit_json(d)
        return
    print_ingest(console, out.ingest.ingest)
    s = out.memo_of.spec
    console.print(
        f"\nQuery: [bold]{out.memo_path.name}[/bold], a noisy phone recording of "
        f"“{out.memo_of.artist} – {out.memo_of.title}” ({s.style}, {s.bpm:g} BPM, {s.key.name} = {s.key.camelot})\n"
    )
    print_result(console, out.result)
    console.print(f"\ndone in {time.monotonic() - started:.1f} s. Try it on your music: mixwith catalog add ~/Music")


# --- queue worker (issue 7) -------------------------------------------------


@cli.command()
@_user_errors
def worker() -> None:
    """Run a queue worker: takes /mixwith jobs from Redis (MIXWITH_BROKER=redis://...).

    Start as many as you like, on any machine that reaches Redis and the
    database; a job whose worker dies is taken over by another. Stops on
    Ctrl-C or SIGTERM.
    """
    from workers.broker import run_worker

    settings = _load_settings()
    if not settings.queue.is_redis:
        raise MixwithError("mixwith worker needs MIXWITH_BROKER=redis://host:6379/0; the default in-process queue runs inside the bot")
    asyncio.run(run_worker(settings))

# --- end queue worker -------------------------------------------------------


@cli.group("db")
def db_group() -> None:
    """Database maintenance."""


@db_group.command("upgrade")
@_user_errors
def db_upgrade() -> None:
    """Apply pending schema migrations (also done automatically on start)."""
    settings = _load_settings()

    async def run(pool: Any) -> None:
        return None

    asyncio.run(_with_pool(settings, run))
    click.echo("database schema is up to date")


# --- sounds-like: training the embedder and building its index (issue 5) -----------


@cli.group()
def train() -> None:
    """Train mixwith's own models on your audio."""


@train.command("embedder")
@click.option("--manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Train on a manifest (id, path, group, seconds per line) instead of the catalog.")
@click.option("--steps", default=900, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--batch", default=32, show_default=True, type=click.IntRange(2, 4096), help="Tracks per batch.")
@click.option("--seed", default=0, show_default=True, type=int, help="Initial weights and every batch.")
@click.option("--split-seed", default=None, type=int,
              help="Seed of the held-out split (recorded in the sidecar; the bench queries it) [default: --seed].")
@click.option("--extra-manifest", "extra_manifests", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Training-only tracks (same format; package = group), never held out. Repeatable.")
@click.option("--group-weight", default=0.3, show_default=True, type=click.FloatRange(0, 10),
              help="Weight of same-group (package/album) positives in the loss; 0 = tracks only.")
@click.option("--holdout", default=0.2, show_default=True, type=click.FloatRange(0, 0.9),
              help="Share of each group held out for the validation metric.")
@click.option("--version", "version", default=None, help="Version name (default: sounds-like-<date>).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Weights file (default: <home>/models/<version>.pt).")
@click.option("--resume/--no-resume", default=True, show_default=True, help="Continue from the checkpoint if present.")
@click.option("--activate/--no-activate", default=True, show_default=True, help="Make it the active embedder.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_user_errors
def train_embedder_cmd(manifest: Path | None, steps: int, batch: int, seed: int, split_seed: int | None,
                       extra_manifests: tuple[Path, ...], group_weight: float, holdout: float, version: str | None,
                       out: Path | None, resume: bool, activate: bool, as_json: bool) -> None:
    """Self-supervised training of the sounds-like CNN (two windows of one track are positives)."""
    settings = _load_settings()
    from engine.embed.train import TrainConfig
    from workers.embedding import ManifestEntry, record_embedder, train_from_manifest

    version = version or time.strftime("sounds-like-%Y%m%d-%H%M%S")
    out = out or settings.models_dir / f"{version}.pt"
    if out.exists() and not resume:
        # indexes and stored vectors are kept per version name: new weights under an old name would reuse them
        raise MixwithError(f"{out} exists: version {version!r} is taken; pick another --version (or --resume it)")
    ckpt = settings.home / "cache" / "train" / f"{version}.ckpt" if resume else None
    command = "mixwith train embedder " + " ".join(sys.argv[3:])

    async def catalog_entries(pool: Any) -> list[ManifestEntry]:
        from db.queries import tracks as tracks_q

        async with pool.acquire() as conn:
            rows = await tracks_q.list_tracks(conn)
        return [ManifestEntry(str(r.id), Path(r.path), r.album or r.artist or "catalog") for r in rows if r.path]

    source: Any = manifest if manifest is not None else asyncio.run(_with_pool(settings, catalog_entries))
    if not source:
        raise MixwithError("the catalog is empty: add music with `mixwith catalog add` or pass --manifest")
    path, meta = train_from_manifest(
        source if isinstance(source, list) else str(source), cache_dir=settings.home / "cache" / "audio16k",
        out_path=out, version=version, config=TrainConfig(steps=steps, batch_tracks=batch, seed=seed,
                                                       split_seed=split_seed, group_weight=group_weight,
                                                       extra_manifests=tuple(str(m) for m in extra_manifests)),
        device=settings.embed.device, threads=settings.embed.threads or None, holdout_fraction=holdout,
        checkpoint_path=ckpt, command=command, limits=settings.audio.limits,
    )

    async def record(pool: Any) -> None:
        await record_embedder(pool, path=path, meta=meta, activate=activate)

    asyncio.run(_with_pool(settings, record))
    summary = {"version": version, "weights": str(path), "val": meta["val"], "train_seconds": meta["train_seconds"]}
    if as_json:
        _emit_json(summary)
    else:
        click.echo(f"saved {path} ({version}) in {meta['train_seconds']:.0f} s; held-out retrieval: {meta['val']}")
        click.echo(f"use it: MIXWITH_EMBED_WEIGHTS={path} mixwith index build")


@cli.group("index")
def index_group() -> None:
    """The sounds-like index (Annoy)."""


@index_group.command("build")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_user_errors
def index_build(as_json: bool) -> None:
    """Embed new catalog tracks and atomically swap in a fresh sounds-like index."""
    settings = _load_settings()
    console = _console(stderr=as_json)

    async def run(pool: Any) -> Any:
        from workers.embedding import build_catalog_index, open_embedder

        embedder, version = open_embedder(settings.embed)
        with _progress(console, "embedding") as on_progress:
            return await build_catalog_index(
                pool, settings=settings, embedder=embedder, model_version=version, on_progress=on_progress
            )

    report = asyncio.run(_with_pool(settings, run))
    if as_json:
        _emit_json(report.to_dict())
    else:
        console.print(f"index {report.model_version}: {report.n_items} tracks ({report.mode}), "
                      f"{report.embedded} embedded, {report.reused} reused -> {report.build_dir}")
        for tid, reason in report.failed:
            console.print(f"  track {tid}: {reason}")
# --- bots (issue 8) -----------------------------------------------------------


@cli.command()
@click.argument("platform", type=click.Choice(["discord", "slack"]))
@_user_errors
def serve(platform: str) -> None:
    """Run the chat bot for PLATFORM (settings and tokens from .env)."""
    settings = _load_settings()
    from bot import serve as serving

    run = serving.run_discord if platform == "discord" else serving.run_slack
    try:
        asyncio.run(run(settings))
    except KeyboardInterrupt:
        pass


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="mixwith")


if __name__ == "__main__":
    main()
