"""Decoding real files of every common container through ffmpeg and libsndfile."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine.audio import DecodeLimits, is_silent, load, resample
from engine.errors import DecodeError, ParameterError

SR = 22050
pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg binary")


def _tone(duration_s: float, sr: int = 44100, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(duration_s * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _encode(tmp_path: Path, name: str, y: np.ndarray, *, sr: int = 44100, args: tuple[str, ...] = ()) -> Path:
    """Write stereo ``y`` through ffmpeg to ``name`` (the extension picks the container)."""
    src = tmp_path / "src.wav"
    sf.write(src, np.stack([y, y], axis=1), sr)
    out = tmp_path / name
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), *args, str(out)], check=True)
    return out


@pytest.mark.parametrize(
    ("name", "args"),
    [("a.mp3", ()), ("a.m4a", ("-c:a", "aac")), ("a.ogg", ("-c:a", "libvorbis")), ("a.opus", ("-c:a", "libopus")),
     ("a.flac", ()), ("a.wav", ()), ("a.aiff", ()), ("a.webm", ("-c:a", "libopus"))],
)
def test_containers(tmp_path: Path, name: str, args: tuple[str, ...]) -> None:
    """Every common container decodes to mono float32 at the analysis rate, pitch intact."""
    path = _encode(tmp_path, name, _tone(3.0), args=args)
    y = load(path, sr=SR)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) / SR - 3.0) < 0.1
    spectrum = np.abs(np.fft.rfft(y[SR // 2 : SR // 2 + SR]))
    assert abs(np.argmax(spectrum) - 440) <= 2  # 1 s window: bins are 1 Hz


def test_max_seconds_keeps_the_window(tmp_path: Path) -> None:
    """max_seconds keeps only the beginning of the audio."""
    y = load(_encode(tmp_path, "a.flac", _tone(6.0)), sr=SR, max_seconds=2.5)
    assert len(y) == int(2.5 * SR)


def test_not_audio(tmp_path: Path) -> None:
    """A text file renamed .mp3 is refused as not audio."""
    p = tmp_path / "notes.mp3"
    p.write_text("this is a shopping list, not a song\n" * 50)
    with pytest.raises(DecodeError, match="not audio"):
        load(p, sr=SR)


def test_empty_file(tmp_path: Path) -> None:
    """A zero-byte file is refused as empty."""
    p = tmp_path / "empty.wav"
    p.write_bytes(b"")
    with pytest.raises(DecodeError, match="empty"):
        load(p, sr=SR)


def test_missing_file(tmp_path: Path) -> None:
    """A path that does not exist is a DecodeError naming the file."""
    with pytest.raises(DecodeError, match="no such file"):
        load(tmp_path / "gone.mp3", sr=SR)


def test_truncated(tmp_path: Path) -> None:
    """A file cut to a third of its length is reported as truncated."""
    full = _encode(tmp_path, "full.mp3", _tone(12.0), args=("-b:a", "128k"))
    data = full.read_bytes()
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(data[: len(data) // 3])
    # the header (Xing frame) still claims 12 s
    with pytest.raises(DecodeError, match="truncated"):
        load(cut, sr=SR)


def test_too_long(tmp_path: Path) -> None:
    """Audio longer than the duration limit is refused with the limit in words."""
    p = _encode(tmp_path, "long.flac", _tone(5.0))
    with pytest.raises(DecodeError, match="longer than"):
        load(p, sr=SR, limits=DecodeLimits(max_duration_s=3.0))


def test_too_big(tmp_path: Path) -> None:
    """A file over the byte limit is refused before decoding."""
    p = _encode(tmp_path, "a.wav", _tone(2.0))
    with pytest.raises(DecodeError, match="MB limit"):
        load(p, sr=SR, limits=DecodeLimits(max_bytes=1000))


def test_too_short(tmp_path: Path) -> None:
    """Half a second of audio is refused as too short."""
    with pytest.raises(DecodeError, match="too short"):
        load(_encode(tmp_path, "a.wav", _tone(0.5)), sr=SR)


def test_too_short_never_reads_as_long_as_the_minimum(tmp_path: Path) -> None:
    """A clip just under the minimum says a length below it, not the minimum itself."""
    with pytest.raises(DecodeError, match=r"too short \(0\.09 s; need at least 0\.1 s\)"):
        load(_encode(tmp_path, "blip.wav", _tone(0.097)), sr=SR, limits=DecodeLimits(min_duration_s=0.1))


def test_silent(tmp_path: Path) -> None:
    """Digital silence is refused as silent unless the caller opts out."""
    p = _encode(tmp_path, "quiet.flac", np.zeros(3 * 44100, dtype=np.float32))
    with pytest.raises(DecodeError, match="silent"):
        load(p, sr=SR)
    assert is_silent(load(p, sr=SR, check_silence=False))


def test_timeout(tmp_path: Path) -> None:
    """A decoder exceeding the wall-clock limit is stopped with a clear reason."""
    p = _encode(tmp_path, "a.flac", _tone(30.0))
    with pytest.raises(DecodeError, match="longer than 0.001 s"):
        load(p, sr=SR, limits=DecodeLimits(timeout_s=0.001))


def test_sndfile_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ffmpeg on PATH, libsndfile still decodes and resamples FLAC."""
    p = _encode(tmp_path, "a.flac", _tone(2.0))
    monkeypatch.setenv("PATH", "")
    y = load(p, sr=SR)
    assert abs(len(y) - 2 * SR) <= 1


def test_bad_arguments(tmp_path: Path) -> None:
    """Non-positive rates and windows are programming errors."""
    p = _encode(tmp_path, "a.wav", _tone(2.0))
    with pytest.raises(ParameterError):
        load(p, sr=0)
    with pytest.raises(ParameterError):
        load(p, sr=SR, max_seconds=0)


def test_resample_preserves_pitch() -> None:
    """Polyphase resampling 44.1 → 22.05 kHz keeps a 1 kHz tone at 1 kHz."""
    y = resample(_tone(1.0, freq=1000.0), orig_sr=44100, target_sr=SR)
    assert len(y) == SR
    assert abs(np.argmax(np.abs(np.fft.rfft(y))) - 1000) <= 1
