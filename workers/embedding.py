"""Embedding jobs: decode-once audio cache, track embedding for ingest, training and index builds.

The engine stays pure (arrays in, vectors out); this module owns the files
around it: a cache of decoded audio (clean and AAC round-tripped) keyed by
file identity, so training and benchmarks decode each file once.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engine.audio import DecodeLimits, load
from engine.errors import DecodeError, ParameterError

if TYPE_CHECKING:  # torch stays out of processes that never embed
    from collections.abc import Mapping

    from engine.embed.model import Embedder
    from engine.index import VectorIndex
    from workers.settings import EmbedSettings, Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ManifestEntry:
    """One row of a dev-set manifest (id, path, source package, seconds)."""

    track_id: str
    path: Path
    package: str


def read_manifest(path: str | os.PathLike[str]) -> list[ManifestEntry]:
    """Read a tab-separated manifest: ``id, path, package, seconds`` per line."""
    entries = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) < 3:
            raise ValueError(f"manifest line needs id, path, package: {line!r}")
        entries.append(ManifestEntry(parts[0], Path(parts[1]), parts[2]))
    return entries


def _cache_key(path: Path, *, sr: int, kind: str) -> str:
    st = path.stat()
    ident = f"{path.resolve()}|{st.st_size}|{int(st.st_mtime)}|{sr}|{kind}"
    return hashlib.sha1(ident.encode()).hexdigest()[:20]


def aac_roundtrip(y: np.ndarray, *, sr: int, bitrate_kbps: int = 32, timeout_s: float = 120.0) -> np.ndarray:
    """Encode ``y`` to AAC at ``bitrate_kbps`` with ffmpeg and decode it back (phone-codec damage).

    Returns an array of the same length as ``y`` (the codec's priming delay removed).
    """
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise DecodeError("ffmpeg is not installed")
    raw = np.ascontiguousarray(y, dtype="<f4").tobytes()
    enc = subprocess.run(
        [exe, "-nostdin", "-v", "error", "-f", "f32le", "-ar", str(sr), "-ac", "1", "-i", "pipe:0",
         "-c:a", "aac", "-b:a", f"{bitrate_kbps}k", "-f", "adts", "pipe:1"],
        input=raw, capture_output=True, timeout=timeout_s, check=False,
    )
    if enc.returncode != 0:
        raise DecodeError(f"AAC encode failed: {enc.stderr.decode(errors='replace')[-200:]}")
    dec = subprocess.run(
        [exe, "-nostdin", "-v", "error", "-f", "aac", "-i", "pipe:0", "-f", "f32le", "-ac", "1",
         "-ar", str(sr), "pipe:1"],
        input=enc.stdout, capture_output=True, timeout=timeout_s, check=False,
    )
    out = np.frombuffer(dec.stdout, dtype="<f4").astype(np.float32)
    if dec.returncode != 0 or out.size == 0:
        raise DecodeError("AAC decode failed")
    # AAC adds 1024 samples of priming at the start; realign and match the length.
    out = out[1024:]
    if out.size < y.size:
        out = np.pad(out, (0, y.size - out.size))
    return out[: y.size]


def cached_audio(
    path: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str],
    sr: int,
    codec: bool = False,
    limits: DecodeLimits = DecodeLimits(),
) -> np.ndarray:
    """Decoded mono audio at ``sr`` (``codec=True``: after an AAC round trip), cached as float16 npy.

    The cache key includes the file's size and mtime, so an edited file is decoded again.
    """
    p = Path(path)
    cdir = Path(cache_dir)
    cdir.mkdir(parents=True, exist_ok=True)
    target = cdir / f"{_cache_key(p, sr=sr, kind='aac32' if codec else 'clean')}.npy"
    if target.is_file():
        return np.load(target).astype(np.float32)
    if codec:
        y = aac_roundtrip(cached_audio(p, cache_dir=cdir, sr=sr, limits=limits), sr=sr)
    else:
        y = load(p, sr=sr, limits=limits)
    # Write then rename so a killed process never leaves a half file under the final name.
    tmp = target.with_suffix(f".tmp{os.getpid()}.npy")
    np.save(tmp, np.clip(y, -65000, 65000).astype(np.float16))
    os.replace(tmp, target)
    return y


def genre_tag(path: str | os.PathLike[str]) -> str | None:
    """The file's genre tag (first value, lower-cased), or None when it has none."""
    try:
        import mutagen

        f = mutagen.File(path, easy=True)
    except Exception:  # mutagen raises many types on odd files; no tag is the answer
        return None
    if f is None or not f.tags:
        return None
    values = f.tags.get("genre") or []
    return values[0].strip().lower() or None if values else None


@dataclass(frozen=True)
class DevSet:
    """Decoded tracks of a manifest, split into training and held-out parts."""

    entries: list[ManifestEntry]
    clean: list[np.ndarray]
    codec: list[np.ndarray]
    genres: list[str | None]
    held_out: frozenset[str]

    def indices(self, *, held_out: bool) -> list[int]:
        return [i for i, e in enumerate(self.entries) if (e.track_id in self.held_out) == held_out]


def load_devset(
    manifest: str | os.PathLike[str] | list[ManifestEntry],
    *,
    cache_dir: str | os.PathLike[str],
    sr: int,
    min_seconds: float = 5.0,
    holdout_fraction: float = 0.2,
    seed: int = 0,
    limits: DecodeLimits = DecodeLimits(),
    limit: int | None = None,
) -> DevSet:
    """Decode (once, cached) every manifest track of at least ``min_seconds`` and split off a held-out part.

    Files that fail to decode are logged and skipped (sound effects under a
    second are common in game soundtracks).
    """
    from engine.embed.train import holdout_split

    entries, clean, codec, genres = [], [], [], []
    rows = manifest if isinstance(manifest, list) else read_manifest(manifest)
    for e in rows[:limit]:
        try:
            y = cached_audio(e.path, cache_dir=cache_dir, sr=sr, limits=limits)
            if len(y) < min_seconds * sr:
                logger.info("skipping %s: %.1f s is under %.1f s", e.track_id, len(y) / sr, min_seconds)
                continue
            yc = cached_audio(e.path, cache_dir=cache_dir, sr=sr, codec=True, limits=limits)
        except DecodeError as exc:
            logger.info("skipping %s: %s", e.track_id, exc.reason)
            continue
        entries.append(e)
        clean.append(y.astype(np.float16))
        codec.append(yc.astype(np.float16))
        genres.append(genre_tag(e.path))
    held = holdout_split([e.track_id for e in entries], [e.package for e in entries],
                         fraction=holdout_fraction, seed=seed)
    return DevSet(entries=entries, clean=clean, codec=codec, genres=genres, held_out=frozenset(held))


def train_from_manifest(
    manifest: str | os.PathLike[str] | list[ManifestEntry],
    *,
    cache_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    version: str,
    config: "TrainConfig | None" = None,
    device: str = "auto",
    threads: int | None = None,
    holdout_fraction: float = 0.2,
    checkpoint_path: str | os.PathLike[str] | None = None,
    command: str = "",
    limits: DecodeLimits = DecodeLimits(),
) -> tuple[Path, dict]:
    """Train the sounds-like CNN on a manifest's audio (held-out part excluded) and save versioned weights.

    Returns the weights path and the sidecar written beside it (version,
    command, held-out split seed and ids, training history, final validation metric).
    The held-out tracks are ``holdout_split(..., seed=config.holdout_seed)`` of
    ``manifest`` alone. Tracks of ``config.extra_manifests`` only join the training
    part, grouped by their package: the held-out split, and so every evaluation
    on it, is the same with or without them.
    """
    import time

    import torch

    from engine.device import configure_cpu_threads, select_device
    from engine.embed.features import SAMPLE_RATE
    from engine.embed.model import count_parameters, save_model
    from engine.embed.train import TrainConfig, TrainTrack, train_embedder

    config = config or TrainConfig()
    dev = select_device(device)
    if dev.type == "cpu":
        configure_cpu_threads(threads)
    ds = load_devset(manifest, cache_dir=cache_dir, sr=SAMPLE_RATE, holdout_fraction=holdout_fraction,
                     seed=config.holdout_seed, limits=limits)
    extras = [load_devset(m, cache_dir=cache_dir, sr=SAMPLE_RATE, holdout_fraction=0.0, limits=limits)
              for m in config.extra_manifests]
    _check_extra_ids(ds, extras)
    genres = sorted({g for g in ds.genres if g})
    # A supervised head needs at least two classes to learn anything.
    label_of = {g: i for i, g in enumerate(genres)} if len(genres) >= 2 else {}
    train_idx, val_idx = ds.indices(held_out=False), ds.indices(held_out=True)
    extra_rows = [(x, i) for x in extras for i in range(len(x.entries))]
    # Groups (package / album) come from the training tracks only: held-out tracks stay unseen.
    group_of = {g: i for i, g in enumerate(sorted({ds.entries[i].package for i in train_idx}
                                                  | {x.entries[i].package for x, i in extra_rows}))}
    tracks = [TrainTrack(clean=ds.clean[i], codec=ds.codec[i], label=label_of.get(ds.genres[i] or ""),
                         group=group_of[ds.entries[i].package]) for i in train_idx]
    # No genre label on extra tracks: their tags mostly restate the package (already the group)
    # and would switch on the supervised head the main set alone may not have.
    tracks += [TrainTrack(clean=x.clean[i], codec=x.codec[i], group=group_of[x.entries[i].package])
               for x, i in extra_rows]
    val = [TrainTrack(clean=ds.clean[i], codec=ds.codec[i]) for i in val_idx]
    logger.info("training on %d tracks (%d extra; %.1f h), %d held out, %d genre classes", len(tracks),
                len(extra_rows), sum(len(t.clean) for t in tracks) / SAMPLE_RATE / 3600, len(val), len(label_of))
    t0 = time.perf_counter()
    result = train_embedder(tracks, config=config, val=val, device=dev, checkpoint_path=checkpoint_path)
    extra = {
        "command": command,
        "train_config": {k: getattr(config, k) for k in config.__dataclass_fields__},
        "trained_on": {"manifest": str(manifest) if not isinstance(manifest, list) else "catalog", "tracks": len(tracks),
                       "split_seed": config.holdout_seed, "holdout_fraction": holdout_fraction,
                       "held_out_ids": sorted(ds.entries[i].track_id for i in val_idx),
                       "genres": genres if label_of else [],
                       "extra": [_extra_description(m, x, sr=SAMPLE_RATE) for m, x in zip(config.extra_manifests, extras)]},
        "parameters": count_parameters(result.model),
        "train_seconds": round(time.perf_counter() - t0, 1),
        "device": dev.type,
        "torch": torch.__version__,
        "val": result.val,
        "history": result.history,
    }
    path = save_model(result.model, out_path, version=version, extra=extra)
    from engine.embed.model import read_sidecar

    return path, read_sidecar(path)


def _check_extra_ids(main: DevSet, extras: list[DevSet]) -> None:
    """Refuse extra tracks whose id repeats one already loaded: held-out ids must name one track each."""
    seen = {e.track_id for e in main.entries}
    for x in extras:
        clash = sorted(seen & {e.track_id for e in x.entries})
        if clash:
            raise ParameterError(f"extra manifest ids repeat earlier ones (e.g. {', '.join(clash[:3])})")
        seen |= {e.track_id for e in x.entries}


def _extra_description(manifest: str, x: DevSet, *, sr: int) -> dict:
    """What a training-only manifest contributed: its path and content hash, and tracks per package."""
    packages = Counter(e.package for e in x.entries)
    return {"manifest": str(manifest), "sha256": hashlib.sha256(Path(manifest).read_bytes()).hexdigest(),
            "tracks": len(x.entries), "seconds": round(sum(len(y) for y in x.clean) / sr, 1),
            "packages": dict(sorted(packages.items()))}


def weights_held_out(meta: dict, ids: list[str], groups: list[str], *,
                     split_seed: int | None = None) -> tuple[int, frozenset[str]]:
    """The held-out tracks to evaluate weights on, and the split seed they come from.

    The weights' own split is the seed their sidecar records (``trained_on.split_seed``,
    else ``train_config.split_seed``, else ``train_config.seed``: sidecars from before
    the split seed existed used the training seed) and its recorded ids. Another
    ``split_seed`` is allowed only when every track it holds out was held out from
    these weights too; otherwise the evaluation would query tracks they trained on.

    Parameters
    ----------
    meta : dict
        The weights' sidecar (:func:`engine.embed.model.read_sidecar`).
    ids, groups : list of str
        Every evaluated track and its group (package), as :func:`load_devset` kept them.
    split_seed : int or None
        The split asked for; ``None`` = the weights' own.

    Raises
    ------
    ParameterError
        When the asked split holds out tracks these weights trained on.
    """
    from engine.embed.train import holdout_split

    trained_on, cfg = meta.get("trained_on", {}), meta.get("train_config", {})
    own_seed = trained_on.get("split_seed")
    if own_seed is None:
        own_seed = cfg.get("split_seed") if cfg.get("split_seed") is not None else cfg.get("seed", 0)
    fraction = float(trained_on.get("holdout_fraction", 0.2))
    recorded = trained_on.get("held_out_ids")
    own = frozenset(recorded) if recorded else frozenset(holdout_split(ids, groups, fraction=fraction, seed=own_seed))
    if split_seed is None or split_seed == own_seed:
        return int(own_seed), own
    asked = frozenset(holdout_split(ids, groups, fraction=fraction, seed=split_seed))
    seen = sorted(asked - own)
    if seen:
        raise ParameterError(f"split seed {split_seed} holds out {len(seen)} tracks these weights trained on "
                             f"(e.g. {', '.join(seen[:3])}); they were trained on split seed {own_seed}")
    return int(split_seed), asked


# --- serving: embedding tracks, building and querying the index ---------------------


@dataclass(frozen=True)
class TrackEmbedding:
    """A track's sounds-like vector and its window vectors, from one embedder version."""

    model_version: str
    vector: np.ndarray  # (embed_dim,), unit length
    windows: np.ndarray  # (n_windows, embed_dim)

    def to_dict(self) -> dict:
        return {"model_version": self.model_version, "vector": [round(float(x), 6) for x in self.vector],
                "n_windows": int(len(self.windows))}


def open_embedder(settings: "EmbedSettings") -> tuple["Embedder", str]:
    """Load the configured weights (bundled default when unset) on the configured device.

    Called once at startup; the returned embedder is passed to the functions below.
    Returns the embedder and its model version.
    """
    from engine.device import configure_cpu_threads, select_device
    from engine.embed.model import DEFAULT_WEIGHTS, Embedder

    device = select_device(settings.device)
    if device.type == "cpu":
        configure_cpu_threads(settings.threads or None)
    path = Path(settings.weights).expanduser() if settings.weights else DEFAULT_WEIGHTS
    embedder, meta = Embedder.from_path(path, device=device, batch_size=settings.batch_size)
    return embedder, str(meta["version"])


@functools.lru_cache(maxsize=2)
def process_embedder(settings: "EmbedSettings") -> tuple["Embedder", str]:
    """The embedder of an engine process (a pool worker), loaded by its first file and kept.

    One torch thread per process: the pool's processes are the parallelism, and
    each using every core would only make them fight over the cores.
    """
    return open_embedder(dataclasses.replace(settings, threads=1))


def embed_audio(y: np.ndarray, *, sr: int, embedder: "Embedder", model_version: str,
                max_seconds: float | None = None) -> TrackEmbedding:
    """Embed mono audio at any rate (resampled to the model's rate): track vector + window vectors.

    Windows overlap by half (hop :data:`engine.embed.model.HOP_S`), as for every track vector.
    """
    from engine.audio import resample
    from engine.embed.model import HOP_S, mean_vector

    if max_seconds is not None:
        y = y[: int(max_seconds * sr)]
    if sr != embedder.sr:
        y = resample(y, orig_sr=sr, target_sr=embedder.sr)
    windows = embedder.embed_windows(y, sr=embedder.sr, hop_s=HOP_S)

    return TrackEmbedding(model_version=model_version, vector=mean_vector(windows), windows=windows)


CLIP_HOP_S = 1.0
"""Hop between a query clip's windows: overlapping, so a 10 s memo gives 8 views."""


def clip_windows(y: np.ndarray, *, sr: int, embedder: "Embedder") -> np.ndarray:
    """The audio windows a query clip is embedded with, ``(n, window_samples)`` at the model's rate."""
    from engine.audio import resample

    if sr != embedder.sr:
        y = resample(y, orig_sr=sr, target_sr=embedder.sr)
    return embedder.frame(y, sr=embedder.sr, hop_s=CLIP_HOP_S)


def embed_clip(y: np.ndarray, *, sr: int, embedder: "Embedder", model_version: str) -> TrackEmbedding:
    """Embed a short query clip with overlapping windows (:data:`CLIP_HOP_S`)."""
    from engine.embed.model import mean_vector

    windows = embedder.embed_batch(clip_windows(y, sr=sr, embedder=embedder))
    return TrackEmbedding(model_version=model_version, vector=mean_vector(windows), windows=windows)


def embed_file(path: str | os.PathLike[str], *, embedder: "Embedder", model_version: str,
               limits: DecodeLimits = DecodeLimits(), max_seconds: float = 240.0) -> TrackEmbedding:
    """Decode a file straight at the model's rate and embed its first ``max_seconds``.

    Ingest can call this beside the analysis (or :func:`embed_audio` on audio it
    already decoded) and keep ``to_dict()`` in its per-file extras.
    """
    y = load(path, sr=embedder.sr, limits=limits, max_seconds=max_seconds)
    return embed_audio(y, sr=embedder.sr, embedder=embedder, model_version=model_version)


def sound_scores(index: "VectorIndex", vector: np.ndarray, *, k: int, exclude: frozenset[int] = frozenset(),
                 windows: np.ndarray | None = None) -> dict[int, float]:
    """Sounds-like neighbours as ``{track_id: similarity in [0, 1]}`` for the ranker.

    With a clip's ``windows`` and an index that keeps window vectors, tracks are matched
    window by window (:meth:`engine.index.VectorIndex.query_windows`); otherwise by ``vector``.
    """
    if windows is not None and index.has_windows:
        hits = index.query_windows(windows, k=k, exclude=exclude)
    else:
        hits = index.query(vector, k=k, exclude=exclude)
    return {n.item_id: max(0.0, min(1.0, n.similarity)) for n in hits}


@dataclass(frozen=True)
class IndexReport:
    """Outcome of one ``index build``."""

    model_version: str
    build_dir: str
    n_items: int
    embedded: int
    reused: int
    failed: tuple[tuple[int, str], ...]
    mode: str

    def to_dict(self) -> dict:
        return {"model_version": self.model_version, "build_dir": self.build_dir, "n_items": self.n_items,
                "embedded": self.embedded, "reused": self.reused, "mode": self.mode,
                "failed": [{"track_id": t, "reason": r} for t, r in self.failed]}


async def build_catalog_index(
    pool,
    *,
    settings: "Settings",
    embedder: "Embedder",
    model_version: str,
    on_progress=None,
    fresh: "Mapping[int, TrackEmbedding] | None" = None,
) -> IndexReport:
    """Embed every catalog track without a stored vector, build a new index and swap it in atomically.

    Vectors are kept in ``track_vectors`` per model version (and, for builds
    made before that table was written, read back from the live index), so a
    rebuild after ``catalog add`` embeds only the new files. Catalogs below
    ``index_exact_below`` also keep window vectors in the build (read back from
    the live build on a rebuild; a track whose windows are missing is embedded
    again), which clip queries match against. A new model
    version finds no rows of its own and embeds everything. The build is
    recorded in ``model_versions`` (kind ``annoy``) and made active.

    ``fresh`` holds tracks embedded just now with this model version (by
    ``catalog add``, from the decode its analysis made); they are stored and
    indexed without decoding their files again.
    """
    import asyncio

    from db.queries import models as models_q
    from db.queries import tracks as tracks_q
    from db.queries import vectors as vectors_q
    from engine.index import VectorIndex, build_index, live_build

    es = settings.embed
    root = settings.index_dir
    async with pool.acquire() as conn:
        rows = await tracks_q.list_tracks(conn)
        stored = await vectors_q.for_version(conn, model_version)
    # Small (exact-search) catalogs also keep every track's window vectors, so a clip can be matched
    # against the passage it came from rather than a whole-track mean (index.query_windows).
    keep_windows = len(rows) < es.index_exact_below
    known: dict[int, np.ndarray] = {}
    known_windows: dict[int, np.ndarray] = {}
    missing = any(r.id not in stored for r in rows)
    # the live index matters for tracks the table lacks (builds from before it was written) and for windows
    if (missing or keep_windows) and live_build(root, model_version) is not None:
        old = VectorIndex.load(root, model_version)
        if missing:
            ids, vecs = old.vectors()
            known = {int(i): v for i, v in zip(ids, vecs)}
        old_windows = old.window_vectors() if keep_windows else None
        if old_windows is not None:
            wrows, wins = old_windows
            old_ids = np.asarray(old.ids)
            order = np.argsort(wrows, kind="stable")
            cuts = np.flatnonzero(np.diff(wrows[order])) + 1
            for part in np.split(order, cuts):
                known_windows[int(old_ids[wrows[part[0]]])] = wins[part]
        old.close()
    known.update((tid, np.asarray(v, np.float32)) for tid, v in stored.items())
    loop = asyncio.get_running_loop()
    vectors: dict[int, np.ndarray] = {}
    windows: dict[int, np.ndarray] = {}
    failed: list[tuple[int, str]] = []
    embedded = 0
    fresh = {} if fresh is None else fresh
    for n, row in enumerate(rows, 1):
        got = fresh.get(row.id)
        if got is not None and got.model_version == model_version and (not keep_windows or len(got.windows)):
            vectors[row.id] = known.get(row.id, got.vector)
            if keep_windows:
                windows[row.id] = got.windows
            embedded += 1
        elif row.id in known and (not keep_windows or row.id in known_windows):
            vectors[row.id] = known[row.id]
            if keep_windows:
                windows[row.id] = known_windows[row.id]
        elif not row.path:
            if row.id in known:
                vectors[row.id] = known[row.id]
            else:
                failed.append((row.id, "no audio file (a linked track): nothing to embed"))
        else:
            try:
                te = await loop.run_in_executor(None, lambda p=row.path: embed_file(
                    p, embedder=embedder, model_version=model_version, limits=settings.audio.limits,
                    max_seconds=es.max_seconds))
                vectors[row.id] = known.get(row.id, te.vector)
                if keep_windows:  # a large catalog's build has no window vectors: do not hold them
                    windows[row.id] = te.windows
                embedded += 1
            except DecodeError as exc:
                if row.id in known:  # the stored vector still serves; only its windows are missing
                    vectors[row.id] = known[row.id]
                else:
                    failed.append((row.id, exc.reason))
        if on_progress:
            on_progress(n, len(rows), row.path)
    if not vectors:
        from workers.errors import MixwithError

        raise MixwithError("the catalog has no tracks to index: add some with `mixwith catalog add`")
    ids = np.array(sorted(vectors), dtype=np.int64)
    mat = np.stack([vectors[i] for i in ids])
    async with pool.acquire() as conn:
        await vectors_q.upsert(conn, model_version=model_version,
                               vectors=((int(i), vectors[int(i)].tolist()) for i in ids if int(i) not in stored))
    win_mat = win_rows = None
    if keep_windows:
        # a track without windows (no audio file, or it failed to decode) stands in with its mean vector
        parts = [windows.get(int(i), vectors[int(i)][None]) for i in ids]
        win_mat = np.concatenate(parts).astype(np.float32)
        win_rows = np.concatenate([np.full(len(p), r) for r, p in enumerate(parts)])
    build_dir = await loop.run_in_executor(None, lambda: build_index(
        mat, ids, root=root, model_version=model_version, n_trees=es.index_trees,
        exact_below=es.index_exact_below, windows=win_mat, window_rows=win_rows))
    mode = "exact" if len(ids) < es.index_exact_below else "annoy"
    report = IndexReport(model_version=model_version, build_dir=str(build_dir), n_items=len(ids), embedded=embedded,
                         reused=len(ids) - embedded, failed=tuple(failed), mode=mode)
    async with pool.acquire() as conn:
        await models_q.register(conn, kind="annoy", version=f"{model_version}/{build_dir.name}",
                                artifact_path=str(build_dir), metrics={"n_items": len(ids), "mode": mode})
    return report


async def record_embedder(pool, *, path: str | os.PathLike[str], meta: dict, activate: bool = True) -> None:
    """Record trained weights in ``model_versions`` (kind ``embedder``) with their metrics."""
    from db.queries import models as models_q

    trained_on = meta.get("trained_on", {})
    # the training set in brief (the held-out ids stay in the sidecar): which manifests, which split
    training_set = {k: trained_on[k] for k in ("manifest", "tracks", "split_seed", "extra") if k in trained_on}
    metrics = {"val": meta.get("val"), "train_seconds": meta.get("train_seconds"),
               "parameters": meta.get("parameters"), "command": meta.get("command"), "training_set": training_set}
    async with pool.acquire() as conn:
        await models_q.register(conn, kind="embedder", version=str(meta["version"]),
                                artifact_path=str(Path(path).resolve()), metrics=metrics, activate=activate)


def sounds_like_file(
    path: str | os.PathLike[str],
    *,
    settings: "Settings",
    embedder: "Embedder",
    model_version: str,
    index: "VectorIndex",
    exclude: frozenset[int] = frozenset(),
) -> dict[int, float]:
    """Cold-start sounds-like scores for a file (a phone clip or a whole track) against the catalog index.

    Clips under a minute are embedded with overlapping windows (1 s hop), longer audio
    window by window; the result feeds ``engine.rank.score_candidates(sound=...)``.
    """
    es = settings.embed
    y = load(path, sr=embedder.sr, limits=settings.audio.limits, max_seconds=es.max_seconds)
    if len(y) < 60 * embedder.sr:
        te = embed_clip(y, sr=embedder.sr, embedder=embedder, model_version=model_version)
        return sound_scores(index, te.vector, k=es.candidates, exclude=exclude, windows=te.windows)
    te = embed_audio(y, sr=embedder.sr, embedder=embedder, model_version=model_version)
    return sound_scores(index, te.vector, k=es.candidates, exclude=exclude)
