"""Decoding real files of every common container through PyAV, the ffmpeg process and libsndfile."""

import shutil
import subprocess
import sys
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
    """Without PyAV and without ffmpeg on PATH, libsndfile still decodes and resamples FLAC."""
    p = _encode(tmp_path, "a.flac", _tone(2.0))
    monkeypatch.setitem(sys.modules, "av", None)  # import av raises ImportError
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


def _music(duration_s: float, sr: int = 44100) -> np.ndarray:
    """Stereo, different in each channel (so the downmix shows), with chords and noise: (n, 2)."""
    t = np.arange(int(duration_s * sr)) / sr
    rng = np.random.default_rng(0)
    left = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1320 * t * (1 + 0.01 * t))
    right = 0.3 * np.sin(2 * np.pi * 660 * t) + 0.05 * rng.standard_normal(t.size)
    return np.stack([left, right], axis=1).astype(np.float32)


def _ffmpeg_cli(path: Path, sr: int) -> np.ndarray:
    """What the ffmpeg command line gives for the file: mono float32 at ``sr``."""
    out = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-ac", "1", "-ar", str(sr), "-f", "f32le", "pipe:1"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(out, dtype="<f4")


@pytest.mark.parametrize(
    ("name", "args"),
    [("a.m4a", ("-c:a", "aac", "-b:a", "64k")), ("a.mp3", ()), ("a.ogg", ("-c:a", "libvorbis")),
     ("a.opus", ("-c:a", "libopus")), ("a.flac", ())],
)
def test_in_process_decoding_matches_the_ffmpeg_command_line(tmp_path: Path, name: str, args: tuple[str, ...]) -> None:
    """PyAV decodes, downmixes and resamples to the same samples as the ffmpeg command line."""
    pytest.importorskip("av")
    src = tmp_path / "src.wav"
    sf.write(src, _music(4.0), 44100)
    path = tmp_path / name
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), *args, str(path)], check=True)
    y = load(path, sr=16000)
    ref = _ffmpeg_cli(path, 16000)
    assert y.size == ref.size
    assert np.max(np.abs(y - ref)) < 1e-4  # a different FFmpeg release; the same arithmetic to float rounding


def test_without_pyav_the_ffmpeg_process_decodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where PyAV is not installed, the ffmpeg process gives the same audio."""
    pytest.importorskip("av")
    path = _encode(tmp_path, "a.m4a", _tone(3.0), args=("-c:a", "aac"))
    in_process = load(path, sr=SR)
    monkeypatch.setitem(sys.modules, "av", None)
    by_process = load(path, sr=SR)
    assert by_process.size == in_process.size
    assert np.max(np.abs(by_process - in_process)) < 1e-4


def test_video_without_sound(tmp_path: Path) -> None:
    """A video file with no audio stream is refused as not audio."""
    p = tmp_path / "clip.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=red:s=64x64:d=2", "-c:v", "mpeg4", str(p)],
                   check=True)
    with pytest.raises(DecodeError, match="not audio"):
        load(p, sr=SR)


def _damage_aac(tmp_path: Path, share: float) -> Path:
    """A 5 s .m4a whose AAC payload is random bytes from ``1 - share`` of the way in (the index stays intact)."""
    data = bytearray(_encode(tmp_path, "good.m4a", _tone(5.0), args=("-c:a", "aac", "-movflags", "+faststart")).read_bytes())
    start = data.find(b"mdat") + 4
    cut = len(data) - int((len(data) - start) * share)
    data[cut:] = np.random.default_rng(0).integers(0, 256, len(data) - cut, dtype=np.uint8).tobytes()
    out = tmp_path / "damaged.m4a"
    out.write_bytes(bytes(data))
    return out


def test_mostly_damaged_file_is_corrupt(tmp_path: Path) -> None:
    """When most packets fail to decode, the file is refused as corrupt."""
    with pytest.raises(DecodeError, match="corrupt audio"):
        load(_damage_aac(tmp_path, 0.8), sr=SR)


def test_a_few_damaged_packets_are_skipped(tmp_path: Path) -> None:
    """A few bad packets at the end cost their audio, not the file (as with the ffmpeg command line)."""
    y = load(_damage_aac(tmp_path, 0.05), sr=SR)
    assert 4.0 < len(y) / SR <= 5.1
    spectrum = np.abs(np.fft.rfft(y[SR : 2 * SR]))
    assert abs(np.argmax(spectrum) - 440) <= 2


def test_chained_ogg_with_a_rate_change_decodes_whole(tmp_path: Path) -> None:
    """Two Ogg streams back to back (a radio rip), the second at another rate: both are decoded.

    FFmpeg 8 (in PyAV's wheel) stops at the second link; the next decoder must get its turn.
    """
    links = []
    for i, (sr, freq) in enumerate(((44100, 440.0), (22050, 660.0))):
        links.append(_encode(tmp_path, f"link{i}.ogg", _tone(2.0, sr=sr, freq=freq), sr=sr, args=("-c:a", "libvorbis")))
    chained = tmp_path / "chained.ogg"
    chained.write_bytes(links[0].read_bytes() + links[1].read_bytes())
    y = load(chained, sr=SR)
    assert 3.9 < len(y) / SR < 4.2
    for start, freq in ((0.5, 440), (2.5, 660)):
        spectrum = np.abs(np.fft.rfft(y[int(start * SR) : int(start * SR) + SR]))
        assert abs(np.argmax(spectrum) - freq) <= 2


def test_long_file_without_ffmpeg_is_decoded_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A long AAC file decodes through PyAV when ffmpeg is absent."""
    pytest.importorskip("av")
    path = _encode(tmp_path, "long.m4a", _tone(45.0), args=("-c:a", "aac"))
    monkeypatch.setenv("PATH", "")
    y = load(path, sr=SR)
    assert abs(len(y) / SR - 45.0) < 0.1


def test_header_duration_comes_from_pyav(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With PyAV the header's duration is FFmpeg's: a truncated file is reported even without mutagen."""
    pytest.importorskip("av")
    full = _encode(tmp_path, "full.mp3", _tone(12.0), args=("-b:a", "128k"))
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 3])
    monkeypatch.setitem(sys.modules, "mutagen", None)
    with pytest.raises(DecodeError, match=r"truncated: the header says 0:12"):
        load(cut, sr=SR)
