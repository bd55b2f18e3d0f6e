"""A small multi-instrument synthesizer for tracks with known tempo and key.

The demo catalog, the tests and the benchmarks need music whose right answer
is known. Each track is rendered from drums, bass, chords and a lead in one of
several styles, with humanised timing, so that tempo and key are real
properties of the audio rather than labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.camelot import Key
from engine.errors import ParameterError


@dataclass(frozen=True)
class Style:
    """A genre's rhythmic and sonic recipe.

    Attributes
    ----------
    name : str
    bpm_range : tuple of float
        Tempo range the style is played at (the DJ's metrical level).
    kick, snare, hat : tuple of float
        Onset positions in beats within one 4-beat bar.
    swing : float
        Delay of off-beat 16ths as a fraction of a 16th.
    brightness : float
        0–1: more harmonics in chords and lead.
    """

    name: str
    bpm_range: tuple[float, float]
    kick: tuple[float, ...]
    snare: tuple[float, ...]
    hat: tuple[float, ...]
    swing: float = 0.0
    brightness: float = 0.5
    bass_pattern: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0)


_EIGHTHS = tuple(i * 0.5 for i in range(8))
_SIXTEENTHS = tuple(i * 0.25 for i in range(16))
_OFFBEATS = (0.5, 1.5, 2.5, 3.5)

STYLES: dict[str, Style] = {
    s.name: s
    for s in (
        Style("house", (118, 128), (0, 1, 2, 3), (1, 3), _OFFBEATS, 0.0, 0.55, (0.5, 1.5, 2.5, 3.5)),
        Style("techno", (126, 142), (0, 1, 2, 3), (), _SIXTEENTHS, 0.0, 0.7, (0.0, 0.75, 1.5, 2.25, 3.0, 3.5)),
        Style("drum & bass", (168, 176), (0, 2.5), (1, 3), _EIGHTHS, 0.0, 0.65, (0.0, 2.5)),
        Style("hip-hop", (84, 98), (0, 1.75, 2.5), (1, 3), _EIGHTHS, 0.25, 0.4, (0.0, 1.75, 2.5)),
        Style("downtempo", (80, 105), (0, 2.5), (1, 3), _EIGHTHS, 0.1, 0.35, (0.0, 2.5)),
        Style("disco", (110, 124), (0, 1, 2, 3), (1, 3), _EIGHTHS, 0.0, 0.6, _EIGHTHS),
        Style("trance", (132, 140), (0, 1, 2, 3), (1, 3), _OFFBEATS, 0.0, 0.8, _SIXTEENTHS),
        Style("dubstep", (138, 142), (0,), (2,), _EIGHTHS, 0.0, 0.6, (0.0, 0.75, 2.0)),
    )
}

# Chord progressions as scale degrees (0-based) of the key's scale.
_PROGRESSIONS_MINOR = ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 4), (0, 3, 0, 4))
_PROGRESSIONS_MAJOR = ((0, 4, 5, 3), (0, 5, 3, 4), (0, 3, 4, 4), (0, 3, 0, 4))
_MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
_MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10)  # natural minor; harmonic V added below


@dataclass(frozen=True)
class TrackSpec:
    """What to render.

    Attributes
    ----------
    style : str
        A key of ``STYLES``.
    bpm : float
    key : Key
    duration_s : float
    seed : int
        Seeds the arrangement and humanisation.
    progression : int
        Index of the chord progression; -1 lets the seed choose.
    detune_cents : float
        Offset of every pitched part from A440 tuning, in cents.
    """

    style: str
    bpm: float
    key: Key
    duration_s: float = 30.0
    seed: int = 0
    progression: int = field(default=-1)
    detune_cents: float = 0.0


def _midi_hz(m: float) -> float:
    return 440.0 * 2.0 ** ((m - 69.0) / 12.0)


def _env(n: int, *, sr: int, attack_s: float, decay_s: float) -> np.ndarray:
    t = np.arange(n) / sr
    a = np.clip(t / max(attack_s, 1e-4), 0, 1)
    return a * np.exp(-t / max(decay_s, 1e-4))


def _tone(freq: float, n: int, *, sr: int, harmonics: int, rolloff: float, detune: float = 0.0) -> np.ndarray:
    t = np.arange(n) / sr
    out = np.zeros(n)
    for h in range(1, harmonics + 1):
        out += (rolloff ** (h - 1)) / h * np.sin(2 * np.pi * freq * h * (1 + detune) * t)
    return out


def _place(buf: np.ndarray, sound: np.ndarray, start: int) -> None:
    if start >= len(buf) or start + len(sound) <= 0:
        return
    s0 = max(start, 0)
    end = min(start + len(sound), len(buf))
    buf[s0:end] += sound[s0 - start : end - start]


def render(spec: TrackSpec, *, sr: int = 22050) -> np.ndarray:
    """Render one track.

    Parameters
    ----------
    spec : TrackSpec
    sr : int

    Returns
    -------
    y : np.ndarray [shape=(round(duration_s * sr),), dtype=float32]
        Peak-normalised to -1 dBFS.
    """
    if spec.style not in STYLES:
        raise ParameterError(f"unknown style {spec.style!r}; choose from {sorted(STYLES)}")
    if not 20 <= spec.bpm <= 300:
        raise ParameterError(f"bpm out of range: {spec.bpm}")
    style = STYLES[spec.style]
    rng = np.random.default_rng(spec.seed)
    n = int(round(spec.duration_s * sr))
    beat_s = 60.0 / spec.bpm
    n_beats = int(np.ceil(spec.duration_s / beat_s)) + 1
    drums = np.zeros(n)
    bass = np.zeros(n)
    chords = np.zeros(n)
    lead = np.zeros(n)

    # drum sounds
    kick_n = int(0.25 * sr)
    t = np.arange(kick_n) / sr
    kick = np.sin(2 * np.pi * (45 * t + 90 * (1 - np.exp(-t * 30)) / 30)) * np.exp(-t * 12)
    snare_n = int(0.18 * sr)
    snare = (rng.standard_normal(snare_n) * 0.6 + np.sin(2 * np.pi * 190 * np.arange(snare_n) / sr)) * _env(
        snare_n, sr=sr, attack_s=0.001, decay_s=0.05
    )
    hat_n = int(0.05 * sr)
    hat_noise = np.diff(rng.standard_normal(hat_n + 1))  # high-passed noise
    hat = hat_noise * _env(hat_n, sr=sr, attack_s=0.0005, decay_s=0.012) * 0.35

    def when(beat: float) -> int:
        frac16 = (beat * 4) % 2
        swing = style.swing * beat_s / 4 if abs(frac16 - 1) < 1e-6 else 0.0
        jitter = rng.normal(0, 0.004)  # humanised timing, 4 ms
        return int(round((beat * beat_s + swing + jitter) * sr))

    # arrangement: an intro of hats only, drums throughout, a breakdown without kick
    bars = n_beats // 4 + 1
    breakdown = set(range(bars // 2, bars // 2 + 2)) if bars >= 8 else set()
    for bar in range(bars):
        for pos in style.kick:
            if bar not in breakdown and bar > 0:
                _place(drums, kick * rng.uniform(0.85, 1.0), when(bar * 4 + pos))
        for pos in style.snare:
            if bar > 0:
                _place(drums, snare * rng.uniform(0.5, 0.7), when(bar * 4 + pos))
        for pos in style.hat:
            _place(drums, hat * rng.uniform(0.6, 1.0), when(bar * 4 + pos))

    # harmony
    key = spec.key
    scale = _MAJOR_SCALE if key.mode == "major" else _MINOR_SCALE
    progs = _PROGRESSIONS_MAJOR if key.mode == "major" else _PROGRESSIONS_MINOR
    prog = progs[spec.progression % len(progs)] if spec.progression >= 0 else progs[rng.integers(len(progs))]
    root_midi = 48 + key.tonic + spec.detune_cents / 100.0  # C3..B3, detuned
    harmonics = 2 + int(style.brightness * 6)
    for bar in range(bars):
        degree = prog[bar % len(prog)]
        chord_pcs = [scale[(degree + k) % 7] + 12 * ((degree + k) // 7) for k in (0, 2, 4)]
        if key.mode == "minor" and degree == 4:
            chord_pcs[1] += 1  # raised leading tone: harmonic minor V
        start = when(bar * 4)
        dur = int(4 * beat_s * sr)
        pad = np.zeros(dur)
        for pc in chord_pcs:
            pad += _tone(_midi_hz(root_midi + 12 + pc), dur, sr=sr, harmonics=harmonics, rolloff=0.6, detune=rng.normal(0, 0.0008))
        pad *= _env(dur, sr=sr, attack_s=0.05, decay_s=4 * beat_s) * 0.12
        _place(chords, pad, start)
        bass_freq = _midi_hz(root_midi - 12 + scale[degree])
        for pos in style.bass_pattern:
            bn = int(min(0.9, 0.45 * 4 / max(len(style.bass_pattern), 1)) * beat_s * sr) + 1
            note = _tone(bass_freq, bn, sr=sr, harmonics=3, rolloff=0.4) * _env(bn, sr=sr, attack_s=0.005, decay_s=beat_s)
            _place(bass, note * 0.45, when(bar * 4 + pos))
        # lead: a phrase over the scale, two notes per beat in the second half of bars
        if bar % 2 == 1 and bar not in breakdown:
            for step in range(4):
                pc = scale[int(rng.choice([0, 2, 4, 0, 4, 1, 5]))]
                ln = int(0.5 * beat_s * sr)
                note = _tone(_midi_hz(root_midi + 24 + pc), ln, sr=sr, harmonics=harmonics, rolloff=0.5)
                note *= _env(ln, sr=sr, attack_s=0.01, decay_s=0.4 * beat_s) * 0.09
                _place(lead, note, when(bar * 4 + 2 + step * 0.5))

    mix = 1.0 * drums + 0.8 * bass + 0.9 * chords + 0.9 * lead
    peak = np.max(np.abs(mix)) or 1.0
    return (mix / peak * 0.89).astype(np.float32)


def demo_specs(*, count: int = 48, duration_s: float = 30.0, seed: int = 7) -> list[TrackSpec]:
    """A varied catalog: every style, tempos within each style's range, all 24 keys.

    Parameters
    ----------
    count : int >= 1
        Number of tracks; 24 or more covers every key.
    duration_s : float
    seed : int
    """
    if count < 1:
        raise ParameterError("count must be at least 1")
    rng = np.random.default_rng(seed)
    names = list(STYLES)
    keys = [Key(t, m) for m in ("minor", "major") for t in range(12)]
    rng.shuffle(keys)
    specs = []
    for i in range(count):
        style = STYLES[names[i % len(names)]]
        lo, hi = style.bpm_range
        bpm = round(float(rng.uniform(lo, hi)))
        specs.append(TrackSpec(style=style.name, bpm=float(bpm), key=keys[i % 24], duration_s=duration_s, seed=seed * 1000 + i))
    return specs


def render_drone(key: Key, *, duration_s: float = 20.0, seed: int = 0, sr: int = 22050) -> np.ndarray:
    """A beatless ambient piece: a held tonic drone under slowly swelling chords.

    Known answers: no tempo (no attacks, nothing recurs at a beat period)
    and the key ``key`` (tonic and fifth held throughout, the scale's
    i/I–iv/IV–v/V chords fading in and out over several seconds).

    Parameters
    ----------
    key : Key
    duration_s : float
    seed : int
        Seeds the chord timing.
    sr : int

    Returns
    -------
    y : np.ndarray [shape=(round(duration_s * sr),), dtype=float32]
        Peak-normalised to -1 dBFS.
    """
    if duration_s <= 0:
        raise ParameterError(f"duration must be positive, got {duration_s}")
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * sr))
    t = np.arange(n) / sr
    root = 48 + key.tonic
    scale = _MAJOR_SCALE if key.mode == "major" else _MINOR_SCALE
    # the drone breathes with a slow, irregular swell: no period near a beat
    swell = 1.0 + 0.2 * np.sin(2 * np.pi * 0.07 * t + rng.uniform(0, 2 * np.pi))
    mix = swell * (_tone(_midi_hz(root - 12), n, sr=sr, harmonics=4, rolloff=0.5)
                   + 0.6 * _tone(_midi_hz(root - 5), n, sr=sr, harmonics=4, rolloff=0.5))
    start = 0
    for degree in (0, 3, 4, 0) * int(np.ceil(duration_s / 16.0)):
        dur = int(rng.uniform(5.0, 7.0) * sr)
        chord = np.zeros(dur)
        for k in (0, 2, 4):
            chord += _tone(_midi_hz(root + 12 + scale[(degree + k) % 7] + 12 * ((degree + k) // 7)), dur, sr=sr,
                           harmonics=5, rolloff=0.5)
        # fade in and out over seconds: no attack for an onset detector to find
        ramp = np.minimum(np.arange(dur), np.arange(dur)[::-1]) / (2.0 * sr)
        _place(mix, 0.5 * chord * np.clip(ramp, 0.0, 1.0), start)
        start += int(0.7 * dur)
        if start >= n:
            break
    peak = np.max(np.abs(mix)) or 1.0
    return (mix / peak * 0.89).astype(np.float32)
