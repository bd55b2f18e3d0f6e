"""Decoding audio files to mono float32 at the analysis rate.

FFmpeg, in this process through PyAV or as an ffmpeg subprocess, reads every
common container; libsndfile (soundfile) is the last resort, because some real
Ogg files defeat ffmpeg 5.1. PyAV goes first: it saves starting a process
(70-150 ms CPU, most of the cost of a phone clip), and since it resamples in
large chunks a whole track costs it about 30 % less CPU than the subprocess
(notes/issue-4.md, session 8). The subprocess is its fallback (PyAV not
installed, or a file one build refuses).
Every limit is an argument so the caller's settings decide them.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from functools import partial
from math import gcd
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engine.errors import DecodeError, ParameterError

if TYPE_CHECKING:
    import av
    from av.container import InputContainer

logger = logging.getLogger(__name__)

AUDIO_EXTENSIONS = frozenset(
    {".mp3", ".m4a", ".aac", ".mp4", ".ogg", ".oga", ".opus", ".flac", ".wav", ".aif", ".aiff", ".webm"}
)
# Below this RMS (about -70 dBFS) a clip carries no music we could analyse.
SILENCE_RMS = 3e-4


@dataclass(frozen=True)
class DecodeLimits:
    """Explicit bounds for one decode.

    Attributes
    ----------
    max_bytes : int
        Files larger than this are refused before reading.
    max_duration_s : float
        Inputs longer than this are refused ("longer than 20 min").
    min_duration_s : float
        Inputs shorter than this are refused ("too short").
    timeout_s : float
        Wall-clock limit for the decoder.
    """

    max_bytes: int = 200 * 1024 * 1024
    max_duration_s: float = 20 * 60.0
    min_duration_s: float = 1.0
    timeout_s: float = 60.0


class _DecodeTimeout(DecodeError):
    """The decoder ran out of wall-clock time."""


def _fmt_duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}:{s:02d}"


def too_short(duration_s: float, *, minimum_s: float) -> DecodeError:
    """The error for audio below ``minimum_s``.

    The length is truncated, not rounded, so a clip just under the minimum never
    reads as long as it ("0.1 s; need at least 0.1 s").
    """
    digits = 1 if duration_s >= 1.0 else 2
    shown = np.floor(duration_s * 10**digits + 1e-9) / 10**digits  # 0.29 * 100 is 28.999…
    return DecodeError(f"too short ({shown:.{digits}f} s; need at least {minimum_s:g} s)")


def load(
    path: str | os.PathLike[str],
    *,
    sr: int = 22050,
    limits: DecodeLimits = DecodeLimits(),
    max_seconds: float | None = None,
    check_silence: bool = True,
) -> np.ndarray:
    """Decode a file to mono float32 at ``sr``.

    Parameters
    ----------
    path : path-like
        Audio file in any container ffmpeg or libsndfile reads.
    sr : int > 0
        Target sample rate in Hz.
    limits : DecodeLimits
        Size, duration and time bounds.
    max_seconds : float or None
        Keep only the first ``max_seconds`` of audio (the analysis window);
        the duration limit is still checked against the whole file.
    check_silence : bool
        Raise ``DecodeError("silent")`` for digital or near silence.

    Returns
    -------
    y : np.ndarray [shape=(n,), dtype=float32]

    Raises
    ------
    DecodeError
        With a reason a person understands.
    """
    if sr <= 0:
        raise ParameterError(f"sr must be positive, got {sr}")
    p = Path(path)
    if not p.is_file():
        raise DecodeError(f"no such file: {p.name}")
    size = p.stat().st_size
    if size == 0:
        raise DecodeError("empty file (0 bytes)")
    if size > limits.max_bytes:
        raise DecodeError(
            f"file is {size / 1e6:.0f} MB, over the {limits.max_bytes / 1e6:.0f} MB limit"
        )

    # PyAV's open reads the header anyway (and the in-process decoder reuses it): its duration saves
    # a second parse by mutagen (~0.5 ms of a phone clip's ~10 ms); mutagen where it has none
    container = _open_pyav(p)
    try:
        declared = _container_duration(container)
        if declared is None:
            declared = _declared_duration(p)
        return _load_declared(p, container, declared, sr=sr, limits=limits, max_seconds=max_seconds,
                              check_silence=check_silence)
    finally:
        if container is not None:
            container.close()


def _load_declared(
    p: Path, container: InputContainer | None, declared: float | None, *, sr: int, limits: DecodeLimits,
    max_seconds: float | None, check_silence: bool,
) -> np.ndarray:
    """``load`` once the header's duration (``declared``, None when unknown) is known."""
    if declared is not None and declared > limits.max_duration_s:
        raise DecodeError(
            f"longer than {limits.max_duration_s / 60:.0f} min ({_fmt_duration(declared)})"
        )

    if max_seconds is not None and max_seconds <= 0:
        raise ParameterError(f"max_seconds must be positive, got {max_seconds}")
    # Decode one second past the limit so an over-long file shows itself. When
    # the header vouches for the length, the analysis window is all we need.
    read_s = limits.max_duration_s + 1.0
    if max_seconds is not None and declared is not None:
        read_s = min(read_s, max_seconds + 1.0)
    y = _decode_any(p, sr=sr, seconds=read_s, timeout_s=limits.timeout_s, container=container)

    # NaN/inf from a broken float stream would poison every feature downstream
    if not np.isfinite(y).all():
        y = np.nan_to_num(y, nan=0.0, posinf=0.0, neginf=0.0)
    duration = len(y) / sr
    if duration > limits.max_duration_s:
        raise DecodeError(f"longer than {limits.max_duration_s / 60:.0f} min")
    expected = None if declared is None else min(declared, read_s)  # maybe only the window was read
    if expected is not None and expected > 2.0 and duration < 0.9 * expected - 1.0:
        raise DecodeError(
            f"truncated: the header says {_fmt_duration(declared or 0.0)} but only "
            f"{_fmt_duration(duration)} decodes"
        )
    if duration < limits.min_duration_s:
        raise too_short(duration, minimum_s=limits.min_duration_s)
    if max_seconds is not None:
        y = y[: int(max_seconds * sr)]
    if check_silence and is_silent(y):
        raise DecodeError("silent: no audio above -70 dBFS")
    return y


def is_silent(y: np.ndarray, *, threshold_rms: float = SILENCE_RMS) -> bool:
    """Return True when ``y`` holds no meaningful signal.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
    threshold_rms : float
        Linear RMS under which the signal counts as silence.
    """
    if y.size == 0:
        return True
    return float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) < threshold_rms


def _open_pyav(path: Path) -> InputContainer | None:
    """The file opened by PyAV (header read, streams found), or None when PyAV is not installed or
    cannot open it (``_decode_pyav`` then opens it again and says why)."""
    try:
        import av
    except ImportError:
        return None
    try:
        return av.open(str(path), metadata_errors="replace")
    except av.error.FFmpegError:
        return None


def _container_duration(container: InputContainer | None) -> float | None:
    """Duration FFmpeg read from the header of an opened file, if any (agrees with mutagen's to ~60 ms on
    the dev set's AAC, MP3, Vorbis, Opus and FLAC files)."""
    duration = getattr(container, "duration", None)
    return duration / 1e6 if duration else None  # in AV_TIME_BASE (microseconds)


def _declared_duration(path: Path) -> float | None:
    """Duration the container's header claims, if mutagen can read it."""
    try:
        import mutagen

        info = mutagen.File(path)
    except Exception:  # mutagen raises many types on junk; a missing header is fine
        return None
    if info is None or getattr(info, "info", None) is None:
        return None
    length = getattr(info.info, "length", None)
    return float(length) if length else None


def _decode_any(
    path: Path, *, sr: int, seconds: float, timeout_s: float, container: InputContainer | None = None
) -> np.ndarray:
    """PyAV (on ``container`` when the file is already open), the ffmpeg process, then libsndfile;
    the first decoder's error when all fail."""
    decoders = [("PyAV", partial(_decode_pyav, container=container)), ("ffmpeg", _decode_ffmpeg),
                ("libsndfile", _decode_sndfile)]
    first: DecodeError | None = None
    for name, decode in decoders:
        try:
            y = decode(path, sr=sr, seconds=seconds, timeout_s=timeout_s)
        except _DecodeTimeout:
            raise  # the wall-clock budget is spent: no second attempt
        except _Unavailable:
            continue
        except DecodeError as exc:
            first = first or exc
            continue
        if first is not None:
            logger.info("%s decoded %s after an earlier decoder failed (%s)", name, path.name, first.reason)
        return y
    raise first or DecodeError("no decoder available (install PyAV or ffmpeg)")


class _Unavailable(DecodeError):
    """The decoder is not installed here; not a verdict on the file."""


# ffmpeg's own default (-max_error_rate): more failed packets than this share and the file is corrupt
_MAX_ERROR_RATE = 2 / 3
# decoded samples (per channel) handed to PyAV's resampler at once: 16 k was fastest of 4-64 k, a whole
# 30 s file in one call was slower still
_RESAMPLE_CHUNK = 16384
# sample formats PyAV converts to and from numpy, with their sample types (s64 is not among them:
# resampled frame by frame)
_NDARRAY_FORMATS = {"u8": "u1", "s16": "i2", "s32": "i4", "flt": "f4", "dbl": "f8"}
_NDARRAY_FORMATS |= {name + "p": dtype for name, dtype in _NDARRAY_FORMATS.items()}


def _frame_samples(frame: av.AudioFrame) -> np.ndarray:
    """``frame.to_ndarray()`` (a row per plane) as views of the frame's planes, without ``np.vstack``:
    ~5 us less per codec frame, over 150 frames in a 10 s clip."""
    count = frame.samples if frame.format.is_planar else frame.samples * frame.layout.nb_channels
    planes = [np.frombuffer(p, dtype=_NDARRAY_FORMATS[frame.format.name], count=count) for p in frame.planes]
    return planes[0][None] if len(planes) == 1 else np.stack(planes)


def _decode_pyav(path: Path, *, sr: int, seconds: float, timeout_s: float, container: InputContainer | None = None) -> np.ndarray:
    """Decode with FFmpeg's libraries in-process: the first ``seconds`` of the best audio stream
    (of ``container``, the file opened by ``_open_pyav``, when given).

    Behaves like the ffmpeg command line of :func:`_decode_ffmpeg`: a packet that fails to
    decode is skipped, and the file only counts as corrupt when most packets fail. A read
    error is an error here (the command line would stop there and keep what it has), so the
    fallbacks get their turn instead of half a file passing as whole.
    """
    try:
        import av
    except ImportError:
        raise _Unavailable("PyAV is not installed") from None
    deadline = time.monotonic() + timeout_s
    want = int(round(seconds * sr))
    if container is None:
        try:
            container = av.open(str(path), metadata_errors="replace")
        except av.error.FFmpegError as exc:
            raise DecodeError(f"not audio, or a format we cannot read ({_av_reason(exc)})") from None
    with container:
        stream = container.streams.best("audio")
        if stream is None:
            raise DecodeError("not audio, or a format we cannot read (no audio stream)")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sr)
        chunks: list[np.ndarray] = []
        # decoded samples wait here and go to the resampler a chunk at a time: one call per codec frame
        # (~20 us of Python each) was a third of decoding a clip; the output is the same, sample for sample
        pending: list[np.ndarray] = []
        source: av.AudioFrame | None = None  # the first frame: every later one must have its format
        queued = 0.0  # pending samples at the output rate
        have = packets = failed = 0
        last_error = ""
        packet_iter = container.demux(stream)
        while have < want:
            if time.monotonic() > deadline:
                raise _DecodeTimeout(f"decoding took longer than {timeout_s:g} s")
            try:
                packet = next(packet_iter, None)
            except av.error.FFmpegError as exc:
                # e.g. FFmpeg 8 refuses a chained Ogg whose second link changes rate ("patches
                # welcome"), which ffmpeg 5.1 decodes whole: let the next decoder try
                raise DecodeError(f"corrupt audio (read error after {(have + queued) / sr:.1f} s: {_av_reason(exc)})") from None
            end = packet is None or packet.size == 0  # demux ends with an empty packet
            try:
                frames = stream.decode(None if end else packet)  # None drains the decoder
            except av.error.EOFError:
                frames = []  # already drained
            except av.error.FFmpegError as exc:
                failed += 1
                last_error = _av_reason(exc)
                frames = []
            packets += not end
            out = []
            try:
                for f in frames:
                    if source is None:
                        source = f
                    if (f.format.name, f.layout.name, f.sample_rate) != (
                        source.format.name, source.layout.name, source.sample_rate
                    ):
                        raise ValueError("Frame does not match AudioResampler setup.")  # PyAV's words for it
                    if f.format.name in _NDARRAY_FORMATS:
                        pending.append(_frame_samples(f))
                        queued += f.samples * sr / f.sample_rate
                    else:
                        out += resampler.resample(f)
                if pending and (end or have + queued >= want or queued * source.sample_rate / sr >= _RESAMPLE_CHUNK):
                    whole = av.AudioFrame.from_ndarray(
                        np.concatenate(pending, axis=1), format=source.format, layout=source.layout
                    )
                    whole.sample_rate = source.sample_rate
                    out += resampler.resample(whole)
                    pending, queued = [], 0.0
                if end:
                    out += resampler.resample(None)
            except ValueError as exc:  # the stream changed rate or layout midway: the command line copes
                raise DecodeError(f"corrupt audio (format changes midway: {exc})") from None
            for r in out:
                chunks.append(r.to_ndarray().reshape(-1))
                have += chunks[-1].size
            if end:
                break
    if have == 0:
        raise DecodeError(f"not audio, or a format we cannot read ({last_error or 'no audio decoded'})")
    if failed > _MAX_ERROR_RATE * max(packets, 1):
        raise DecodeError(f"corrupt audio ({failed} of {packets} packets fail to decode: {last_error})")
    return np.concatenate(chunks)[:want].astype(np.float32, copy=False)


def _av_reason(exc: Exception) -> str:
    """FFmpeg's words for an error, without the file path PyAV appends."""
    reason = getattr(exc, "strerror", None) or str(exc)
    return str(reason)[:120]


def _decode_ffmpeg(path: Path, *, sr: int, seconds: float, timeout_s: float) -> np.ndarray:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise _Unavailable("ffmpeg is not installed")
    cmd = [
        exe, "-nostdin", "-hide_banner", "-v", "error", "-i", str(path),
        "-t", f"{seconds:.3f}", "-vn", "-ac", "1", "-ar", str(sr), "-f", "f32le", "pipe:1",
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise _DecodeTimeout(f"decoding took longer than {timeout_s:g} s") from None
    y = np.frombuffer(proc.stdout, dtype="<f4").astype(np.float32, copy=True)
    if proc.returncode != 0 or y.size == 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        detail = err[-1] if err else "no audio stream"
        if "Invalid data" in detail or "does not contain any stream" in detail or y.size == 0:
            raise DecodeError(f"not audio, or a format we cannot read ({detail[:120]})")
        raise DecodeError(f"corrupt audio ({detail[:120]})")
    return y


def _decode_sndfile(path: Path, *, sr: int, seconds: float, timeout_s: float) -> np.ndarray:  # noqa: ARG001
    import soundfile as sf

    try:
        with sf.SoundFile(str(path)) as f:
            frames = int(seconds * f.samplerate)
            if f.frames > 0:
                frames = min(frames, f.frames)
            data = f.read(frames=frames, dtype="float32", always_2d=True)
            native_sr = f.samplerate
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise DecodeError(f"not audio ({exc})") from None
    y = data.mean(axis=1).astype(np.float32)
    return resample(y, orig_sr=native_sr, target_sr=sr)


def resample(y: np.ndarray, *, orig_sr: int, target_sr: int) -> np.ndarray:
    """Polyphase resampling (scipy), exact for integer rate ratios.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
    orig_sr, target_sr : int
        Rates in Hz.
    """
    if orig_sr == target_sr:
        return y.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    g = gcd(orig_sr, target_sr)
    return resample_poly(y, target_sr // g, orig_sr // g).astype(np.float32)
