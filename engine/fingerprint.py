"""Landmark audio fingerprints and clip identification.

A fingerprint is a set of spectral-peak pairs (Wang 2003): each anchor peak is
paired with a few later peaks nearby in frequency, and the pair's (anchor
frequency, frequency step, time step) is packed into a 21-bit hash stored with
the anchor's time. A clip matches a track when many of its hashes occur in the
track at one consistent time offset. The anchor frequency is hashed on a scale
that is linear below about 1.5 kHz (a step is an FFT bin) and logarithmic above
(a step is 1 % of the frequency), so a small speed error moves a high anchor as
little as a low one; the frequency step stays in FFT bins (a speed error
changes it by a fraction of a bin) and keeps the hashes specific.

Phone memos of a club: peaks are chosen by their contrast against the local
spectral envelope (so a phone's band-pass and a room's colouration move them
little), within the phone band 150 Hz–6.8 kHz at 16 kHz, with a quota per
quarter of the band (log-spaced) so they spread over it instead of piling
into the loud low end. Queries keep about twice as many peaks as references,
so a reference peak that survives the noise is likely to be among the query's.

Pitch faders: a track played 3 % fast has every frequency 3 % higher and every
time 3 % shorter, which changes every hash. Queries keep their peaks with
sub-bin frequencies; at query time the peaks are mapped back under several
speed hypotheses (``f / s``, ``t * s``) and re-hashed, which is exactly the
inverse of the resampling a pitch fader applies. Hashing is cheap, the audio is
analysed once. A pre-check with a quarter of the pairs picks the three most
promising of the nine speed hypotheses; only those are matched in full. The
hypotheses are 0.875 % apart, so the nearest is off by up to 0.44 %: on a
linear scale that moves a 6 kHz anchor by almost two bins and its hashes miss,
hence the logarithmic scale above 1.5 kHz.

Decision: the best candidates are re-placed by a single-peak search over the
whole track and verified against the track's own data kept in the index, at the
candidate's alignment against shifted ones (``verify``: the track's spectral peaks
looked up in the clip's peak map; ``verify_dense``: one bit per mel band and frame,
whether the band stands above its neighbours, compared over the whole clip; their z
correlate 0.6–0.7 on the bench's clips, so each adds evidence). Each candidate's
evidence (aligned hashes, the two verification z, the single-peak z, against the best
of the other candidates) is turned into a calibrated probability (``confidence``) by
a logistic model fitted on degraded dev-set queries (``bench/identify``); below
``accept_confidence`` the answer is "not in the catalog".
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.fft import rfft
from scipy.ndimage import uniform_filter1d

from engine.audio import is_silent, resample
from engine.errors import ParameterError

logger = logging.getLogger(__name__)

FP_SR = 16000
"""Fingerprint sample rate in Hz (covers the 150 Hz–7 kHz band of phone recordings)."""
N_FFT = 1024
HOP_LENGTH = 512
FRAME_RATE = FP_SR / HOP_LENGTH
"""Fingerprint frames per second (31.25; one frame is 32 ms)."""
BIN_HZ = FP_SR / N_FFT
"""Width of a frequency bin in Hz (15.625)."""

# Hash layout: anchor (8 bits) | frequency step in bins + 64 (7 bits) | time step (6 bits); the anchor
# in steps of HASH_STEPS * ln(1 + f / HASH_KNEE_HZ), about one FFT bin below the knee, 1 % above.
_F_BITS, _DF_BITS, _DT_BITS = 8, 7, 6
HASH_STEPS = 96.0
HASH_KNEE_HZ = HASH_STEPS * BIN_HZ
HASH_BITS = _F_BITS + _DF_BITS + _DT_BITS
MAX_DF_BINS = (1 << (_DF_BITS - 1)) - 1
MAX_DT_FRAMES = (1 << _DT_BITS) - 1

DENSE_BANDS = 64
"""Mel bands (150 Hz–6.8 kHz) of the dense verification descriptor: one bit each per frame."""
DENSE_BYTES = DENSE_BANDS // 8
assert DENSE_BYTES % 8 == 0  # verify_dense compares a frame's bits as 64-bit words
DENSE_CONTRAST_BANDS = 3
"""A band's bit says whether its log energy is above the mean of this many bands either side and itself."""
_DENSE_MIN_HZ, _DENSE_MAX_HZ = 150.0, 6800.0

PEAK_MAP_MAX_CONTRAST = 3.0
"""Peak-map values (contrast in natural log units) are capped here, so one loud partial does not decide."""

DEFAULT_SPEEDS: tuple[float, ...] = (1.0, 0.99125, 1.00875, 0.9825, 1.0175, 0.97375, 1.02625, 0.965, 1.035)
"""Speed hypotheses tried at query time (ratio of played to original speed), in order."""


@dataclass(frozen=True)
class FingerprintParams:
    """How peaks are picked and paired.

    Attributes
    ----------
    peaks_per_s : float
        Target peak density (strongest by local contrast in each second).
    bands : int
        The band is split into this many log-spaced parts, each with an equal
        share of the peaks.
    fanout : int
        Targets paired with each anchor.
    min_hz, max_hz : float
        Band in which peaks are picked.
    neighborhood_bins, neighborhood_frames : int
        A peak is the maximum of this (frequency x time) neighbourhood.
    max_dt_frames : int
        Farthest target, in frames (at most 63).
    max_df_bins : int
        Largest frequency step to a target, in bins (at most 63).
    verify_peaks_per_s : float
        References: density of the peaks kept for ``verify`` (a superset of the
        hashed ones, chosen the same way; 0 keeps none).
    """

    peaks_per_s: float = 18.0
    fanout: int = 6
    min_hz: float = 150.0
    max_hz: float = 6800.0
    bands: int = 4
    neighborhood_bins: int = 13
    neighborhood_frames: int = 7
    max_dt_frames: int = 63
    max_df_bins: int = 63
    verify_peaks_per_s: float = 0.0

    def __post_init__(self) -> None:
        if self.peaks_per_s <= 0:
            raise ParameterError(f"peaks_per_s must be positive, got {self.peaks_per_s}")
        if not 1 <= self.fanout <= 32:
            raise ParameterError(f"fanout must be in 1..32, got {self.fanout}")
        if not 0 < self.min_hz < self.max_hz <= FP_SR / 2:
            raise ParameterError(f"need 0 < min_hz < max_hz <= {FP_SR / 2}, got {self.min_hz}, {self.max_hz}")
        if not 1 <= self.bands <= 16:
            raise ParameterError(f"bands must be in 1..16, got {self.bands}")
        if not 1 <= self.max_dt_frames <= MAX_DT_FRAMES:
            raise ParameterError(f"max_dt_frames must be in 1..{MAX_DT_FRAMES}")
        if not 1 <= self.max_df_bins <= MAX_DF_BINS:
            raise ParameterError(f"max_df_bins must be in 1..{MAX_DF_BINS}")


REFERENCE_PARAMS = FingerprintParams(verify_peaks_per_s=36.0)
"""Parameters for catalog tracks (what the index stores)."""
QUERY_PARAMS = FingerprintParams(peaks_per_s=36.0, fanout=16)
"""Parameters for queries: twice the peaks and pairs reaching as far as the reference's,
so a reference pair whose two peaks survive the noise is formed in the query too."""


@dataclass(frozen=True)
class Fingerprints:
    """Peaks and landmark hashes of one signal.

    Attributes
    ----------
    peak_frames : np.ndarray [shape=(n_peaks,), dtype=int32]
        Frame of each peak, ascending.
    peak_bins : np.ndarray [shape=(n_peaks,), dtype=float32]
        Sub-bin frequency of each peak (bin width ``BIN_HZ``).
    hashes : np.ndarray [shape=(n_hashes,), dtype=uint32]
        Landmark hashes at the original speed.
    hash_frames : np.ndarray [shape=(n_hashes,), dtype=int32]
        Anchor frame of each hash.
    duration_s : float
        Length of the signal.
    peak_map : np.ndarray [shape=(n_frames, N_FFT // 2 + 1), dtype=float32], optional
        Queries only (``fingerprint(..., with_peak_map=True)``): the contrast of every
        local spectral maximum in the band (0 elsewhere), widened by one frame and
        one bin; what ``verify`` looks reference peaks up in.
    verify_frames, verify_bins : np.ndarray, optional
        References only: the denser peaks kept for ``verify`` (``verify_peaks_per_s``),
        frames ascending; what the index stores.
    dense_bits : np.ndarray [shape=(n_frames, DENSE_BYTES), dtype=uint8], optional
        References only (with ``verify_peaks_per_s``): ``dense_bits`` of every frame,
        what ``verify_dense`` compares a clip with; the index stores it.
    spectrum : np.ndarray [shape=(n_frames, N_FFT // 2 + 1), dtype=float32], optional
        Queries only (with the peak map): the power spectrogram, from which the clip's
        ``dense_bits`` are taken under each candidate's speed.
    """

    peak_frames: np.ndarray
    peak_bins: np.ndarray
    hashes: np.ndarray
    hash_frames: np.ndarray
    duration_s: float
    peak_map: np.ndarray | None = None
    verify_frames: np.ndarray | None = None
    verify_bins: np.ndarray | None = None
    dense_bits: np.ndarray | None = None
    spectrum: np.ndarray | None = None

    @property
    def n_hashes(self) -> int:
        """Number of hashes."""
        return int(self.hashes.size)


@dataclass(frozen=True)
class Hits:
    """Index entries sharing a hash with a query.

    Attributes
    ----------
    track_ids : np.ndarray [shape=(n,), dtype=int64]
    ref_frames : np.ndarray [shape=(n,), dtype=int32]
        Anchor frame in the catalog track.
    query_index : np.ndarray [shape=(n,), dtype=int64]
        Which query hash (position in the looked-up array) hit.
    track_index : np.ndarray [shape=(n,), dtype=int64], optional
        Dense position of each hit's track in ``track_table`` (an index knows
        it for free; it spares the matcher a search over sparse track ids).
    track_table : np.ndarray [shape=(k,), dtype=int64], optional
        ``track_table[track_index] == track_ids``.
    distinct : bool
        No two hits share (query_index, track, ref_frame): the index holds no
        entry twice, so the matcher need not count each query hash once per offset
        itself (a narrower, faster sort). False when the lookup cannot promise it.
    """

    track_ids: np.ndarray
    ref_frames: np.ndarray
    query_index: np.ndarray
    track_index: np.ndarray | None = None
    track_table: np.ndarray | None = None
    distinct: bool = False


@dataclass(frozen=True)
class Match:
    """One candidate track for a clip.

    Attributes
    ----------
    track_id : int
        The caller's id of the catalog track.
    offset_s : float
        Where in the track the clip starts (in the track's own time).
    score : int
        Hashes aligned at the hash histogram's best offset (within one frame; with ``peaks``,
        ``offset_s`` is the single-peak search's, which can differ).
    speed : float
        Speed hypothesis of the best alignment (1.03 = played 3 % fast).
    n_hits : int
        All hashes of the clip found in this track, at any offset.
    confidence : float
        Calibrated probability that this is the right track (0–1).
    verified : float
        How far the track's own peaks stand out in the clip at this alignment
        compared with shifted alignments, in standard deviations of the latter
        (``verify``; 0 when not verified).
    peak_votes : float
        How far the clip's single peaks line up at ``offset_s`` above the track's other
        offsets, in standard deviations (``peak_offsets``; 0 when not searched).
    dense_verified : float
        Like ``verified``, from the per-frame band bits (``verify_dense``; 0 when not verified).
    """

    track_id: int
    offset_s: float
    score: int
    speed: float
    n_hits: int
    confidence: float = 0.0
    verified: float = 0.0
    peak_votes: float = 0.0
    dense_verified: float = 0.0

    def to_dict(self) -> dict[str, float | int]:
        """Plain types for JSON."""
        return asdict(self)


CALIBRATION_FEATURES: tuple[str, ...] = (
    "score", "margin", "hashes", "verified", "verified_margin", "peak_votes", "dense",
)
"""What ``Calibration`` weighs, in order (``candidate_features``); each has a ``w_<name>`` weight."""


def candidate_features(
    score: np.ndarray, verified: np.ndarray, peak_votes: np.ndarray, dense: np.ndarray, *, n_query_hashes: int
) -> dict[str, np.ndarray]:
    """The calibration's features of every candidate of one clip, each against the best of the others.

    Parameters
    ----------
    score : np.ndarray [shape=(k,)]
        Aligned hashes (``Match.score``).
    verified : np.ndarray [shape=(k,)]
        ``Match.verified`` (0 when not verified).
    peak_votes : np.ndarray [shape=(k,)]
        ``Match.peak_votes`` (0 when not searched).
    dense : np.ndarray [shape=(k,)]
        ``Match.dense_verified`` (0 when not verified).
    n_query_hashes : int
        Hashes the clip produced.

    Returns
    -------
    dict
        ``CALIBRATION_FEATURES`` -> array of shape (k,): ``score`` log aligned hashes, ``margin``
        log of score over the best other score (at least 1), ``hashes`` log of the clip's hashes,
        ``verified`` z, ``verified_margin`` z minus the best other z (at least 0), ``peak_votes`` the
        single-peak z, ``dense`` the dense verification's z.
    """
    s = np.maximum(np.asarray(score, dtype=np.float64), 1.0)
    v = np.asarray(verified, dtype=np.float64)
    return {
        "score": np.log(s),
        "margin": np.log(s / best_of_others(s, floor=1.0)),
        "hashes": np.full(s.shape, np.log(max(n_query_hashes, 1))),
        "verified": v,
        "verified_margin": v - best_of_others(v, floor=0.0),
        "peak_votes": np.asarray(peak_votes, dtype=np.float64),
        "dense": np.asarray(dense, dtype=np.float64),
    }


@dataclass(frozen=True)
class Calibration:
    """Logistic model turning a candidate's features into the probability that it is the clip's track.

    ``confidence = sigmoid(bias + sum(w_<name> * feature[name]))`` over ``CALIBRATION_FEATURES``
    (``candidate_features``: hash score and its margin over the other candidates, the clip's hash
    count, the peak-map verifier's z and its margin, the single-peak search's z, the dense
    verifier's z). Coefficients are fitted by ``python -m bench.identify --calibrate``; a new
    feature is a name there, a term in ``candidate_features`` and a weight here.
    """

    bias: float = -2.58
    w_score: float = 0.94
    w_margin: float = 2.25
    w_hashes: float = -0.38
    w_verified: float = -0.48
    w_verified_margin: float = 0.99
    w_peak_votes: float = 0.4
    w_dense: float = 0.59
    # fitted on the 4590 candidates of 459 degraded dev queries (seed 1001, 320 in / 139 out of the
    # catalog); the fit's own threshold is 0.55 (the lowest at which none of its 139 outside clips is
    # accepted; 57.2 % of in-catalog clips accepted right). Shipped at 0.8 (54.1 %), the workers'
    # default: margins over the other candidates grow in a large index (common hashes are skipped),
    # so a fit at the dev size is over-confident at 100 h, and lower thresholds name more songs that
    # merely share a catalog track's sounds. Beside the dense z, the peak-map z's own weight comes out
    # negative: its margin over the other candidates carries what it adds. notes/issue-4.md, session 8
    accept_confidence: float = 0.8

    def confidence(self, features: dict[str, np.ndarray]) -> np.ndarray:
        """Probability of a correct match from ``candidate_features``."""
        z = self.bias + sum(getattr(self, f"w_{name}") * np.asarray(features[name], dtype=np.float64)
                            for name in CALIBRATION_FEATURES)
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))


DEFAULT_CALIBRATION = Calibration()


@dataclass(frozen=True)
class Identification:
    """The answer for one clip.

    Attributes
    ----------
    match : Match or None
        The accepted track, or None for "not in the catalog".
    candidates : tuple of Match
        Best candidates, best first (the match, when there is one, is first).
    n_query_hashes : int
        Hashes the clip produced (0 for silence).
    """

    match: Match | None
    candidates: tuple[Match, ...] = field(default_factory=tuple)
    n_query_hashes: int = 0


def _to_fp_rate(y: np.ndarray, sr: int) -> np.ndarray:
    if y.ndim != 1:
        raise ParameterError(f"expected mono audio, got shape {y.shape}")
    if sr <= 0:
        raise ParameterError(f"sr must be positive, got {sr}")
    if not np.all(np.isfinite(y)):
        raise ParameterError("audio contains NaN or infinite samples")
    return resample(np.asarray(y, dtype=np.float32), orig_sr=sr, target_sr=FP_SR)


def find_peaks(y: np.ndarray, *, sr: int, params: FingerprintParams = REFERENCE_PARAMS) -> tuple[np.ndarray, np.ndarray]:
    """Spectral peaks with the strongest local contrast.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono audio.
    sr : int
        Its sample rate (resampled to ``FP_SR`` here).
    params : FingerprintParams

    Returns
    -------
    frames : np.ndarray [shape=(n_peaks,), dtype=int32]
        Peak frames at ``FRAME_RATE``, ascending (ties by frequency).
    bins : np.ndarray [shape=(n_peaks,), dtype=float32]
        Sub-bin peak frequencies (parabolic interpolation of log magnitude).
    """
    return _analyse(y, sr=sr, params=params, with_map=False).peaks


_Peaks = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class _Analysis:
    """What ``_analyse`` finds in a signal (see ``Fingerprints`` for the optional parts)."""

    peaks: _Peaks
    verify_peaks: _Peaks | None = None
    peak_map: np.ndarray | None = None
    dense_bits: np.ndarray | None = None
    spectrum: np.ndarray | None = None


def _analyse(y: np.ndarray, *, sr: int, params: FingerprintParams, with_map: bool) -> _Analysis:
    """``find_peaks``; for references (``params.verify_peaks_per_s``) the denser verification peaks
    and ``dense_bits``; for queries (``with_map``) the peak map and the power spectrogram."""
    x = _to_fp_rate(y, sr)
    none: _Peaks = (np.zeros(0, np.int32), np.zeros(0, np.float32))
    reference = params.verify_peaks_per_s > 0
    if x.size < N_FFT or is_silent(x):
        return _Analysis(none, none if reference else None, None,
                         np.zeros((0, DENSE_BYTES), np.uint8) if reference else None, None)
    n_frames = 1 + (x.size - N_FFT) // HOP_LENGTH
    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP_LENGTH][:n_frames]
    window = np.hanning(N_FFT).astype(np.float32)
    # scipy's double-precision FFT cast to complex64 is bit for bit what np.fft.rfft gives for float32
    # frames (numpy 2 computes them in double), at a fifth of the CPU
    spectrum = rfft((frames * window).astype(np.float64), axis=1).astype(np.complex64)
    spec = np.abs(spectrum)  # (T, F), float32 as the spectrum is complex64
    power = spec * spec if reference or with_map else None
    extra = {"dense_bits": dense_bits(power) if reference else None, "spectrum": power if with_map else None}
    lo = max(1, int(np.floor(params.min_hz / BIN_HZ)))
    hi = min(N_FFT // 2 - 1, int(np.ceil(params.max_hz / BIN_HZ)) + 1)
    floor = max(float(spec.max()) * 1e-4, 1e-9)  # -80 dB below the loudest bin
    logS = np.log(np.maximum(spec[:, lo - 1 : hi + 1], floor))  # one guard bin each side
    band = logS[:, 1:-1]
    # contrast against the spectral envelope (about 1/3 octave at 1 kHz)
    contrast = band - uniform_filter1d(band, size=21, axis=1, mode="nearest")
    peakable = contrast > 0.0  # above the envelope and above the floor: shared with the peak map
    peakable &= band > np.log(floor) + 1e-3
    is_max = band == _max_filter(band, size=(params.neighborhood_frames, params.neighborhood_bins), fill=-np.inf)
    is_max &= peakable
    pmap = _peak_map(band, contrast, peakable, lo=lo) if with_map else None
    t_idx, f_idx = _nonzero_2d(is_max)
    if t_idx.size == 0:
        return _Analysis(none, none if reference else None, pmap, **extra)
    strength = contrast[t_idx, f_idx]
    # keep the strongest peaks of each log-spaced band in each one-second block: a quota
    # per band spreads them over the spectrum (kick drums and bass lines would take most)
    edges = np.geomspace(params.min_hz, params.max_hz, params.bands + 1)[1:-1] / BIN_HZ - lo
    cell = (t_idx / FRAME_RATE).astype(np.int64) * params.bands + np.searchsorted(edges, f_idx, side="right")
    order = np.lexsort((-strength, cell))
    cell_sorted = cell[order]
    first = np.searchsorted(cell_sorted, cell_sorted, side="left")
    rank = np.arange(order.size) - first

    def chosen(per_s: float) -> _Peaks:
        keep = order[rank < per_s / params.bands]
        t, f = t_idx[keep], f_idx[keep]
        # parabolic interpolation on the log magnitude for a sub-bin frequency
        a, b, c = logS[t, f], logS[t, f + 1], logS[t, f + 2]
        denom = a - 2.0 * b + c
        delta = np.where(denom < 0, 0.5 * (a - c) / np.where(denom < 0, denom, -1.0), 0.0)
        bins = (lo + f + np.clip(delta, -0.5, 0.5)).astype(np.float32)
        by_time = np.lexsort((bins, t))
        return t[by_time].astype(np.int32), bins[by_time]

    return _Analysis(chosen(params.peaks_per_s), chosen(params.verify_peaks_per_s) if reference else None, pmap, **extra)


def _nonzero_2d(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.nonzero`` of a 2-D mask (the same int64 rows and columns, row-major): through the flat
    positions, which numpy finds several times faster than a 2-D mask's indices (a clip's spectrogram:
    ~260 → ~35 µs)."""
    flat = np.flatnonzero(mask)
    rows = flat // mask.shape[1]
    flat -= rows * mask.shape[1]
    return rows, flat


def _mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def dense_filters(*, speed: float = 1.0) -> np.ndarray:
    """Triangular mel filters of ``dense_bits``, each summing to 1.

    Parameters
    ----------
    speed : float
        A clip played ``speed`` times as fast has every frequency ``speed`` times higher:
        its filters are scaled alike, so its bands hold what the track's bands hold.

    Returns
    -------
    np.ndarray [shape=(N_FFT // 2 + 1, DENSE_BANDS), dtype=float32]
    """
    mels = np.linspace(_mel(_DENSE_MIN_HZ), _mel(_DENSE_MAX_HZ), DENSE_BANDS + 2)
    edges = 700.0 * (10.0 ** (mels / 2595.0) - 1.0) * speed
    f = np.arange(N_FFT // 2 + 1)[:, None] * BIN_HZ
    lo, mid, hi = edges[None, :-2], edges[None, 1:-1], edges[None, 2:]
    w = np.maximum(0.0, np.minimum((f - lo) / (mid - lo), (hi - f) / (hi - mid)))
    return (w / w.sum(axis=0)).astype(np.float32)  # the lowest band is 4 bins wide: never empty


@functools.lru_cache(maxsize=64)
def _shared_dense_filters(speed: float) -> np.ndarray:
    """``dense_filters`` built once per speed and shared read-only: building them costs about a third
    of a millisecond, and a query asks for the same few speed hypotheses every time."""
    w = dense_filters(speed=speed)
    w.setflags(write=False)
    return w


def dense_bits(power: np.ndarray, *, speed: float = 1.0) -> np.ndarray:
    """One bit per mel band and frame: is the band's log energy above its neighbours' mean?

    A contrast across frequency within one frame: a room's reverberation smears energy in
    time (time differences suffer) and a phone's colouration is smooth across a few bands;
    what stands above its neighbours in the track mostly still does in a memo of it.

    Parameters
    ----------
    power : np.ndarray [shape=(n_frames, N_FFT // 2 + 1)]
        Power spectrogram at ``FP_SR`` (``Fingerprints.spectrum``).
    speed : float
        Speed hypothesis of a clip (see ``dense_filters``); 1 for catalog tracks.

    Returns
    -------
    np.ndarray [shape=(n_frames, DENSE_BYTES), dtype=uint8]
        ``DENSE_BANDS`` bits per frame, packed (``np.packbits`` order).
    """
    if power.shape[0] == 0:
        return np.zeros((0, DENSE_BYTES), np.uint8)
    energy = power @ _shared_dense_filters(float(speed))
    floor = max(float(energy.max()) * 1e-8, 1e-12)  # -80 dB below the loudest band: silence is flat
    log_e = np.log(np.maximum(energy, floor))
    contrast = log_e - uniform_filter1d(log_e, size=2 * DENSE_CONTRAST_BANDS + 1, axis=1, mode="nearest")
    return np.packbits(contrast > 0, axis=1)


def _peak_map(band: np.ndarray, contrast: np.ndarray, peakable: np.ndarray, *, lo: int) -> np.ndarray:
    """The contrast of every local maximum (3 bins x 3 frames), widened by one bin and frame.

    Graded rather than a yes/no map: a peak that barely survives the noise counts
    a little, one that stands clear counts more (better separation on degraded dev clips).
    ``peakable``: where ``contrast`` is positive and ``band`` above the floor (``_analyse``'s mask).
    """
    is_max = band == _max_filter(band, size=(3, 3), fill=-np.inf)  # = mode "nearest" for a max
    is_max &= peakable
    out = np.zeros((band.shape[0], N_FFT // 2 + 1), dtype=np.float32)
    values = np.zeros(band.shape, dtype=np.float32)  # 0 elsewhere (a masked minimum: half of np.where's CPU)
    np.minimum(contrast, np.float32(PEAK_MAP_MAX_CONTRAST), out=values, where=is_max)
    out[:, lo : lo + band.shape[1]] = _max_filter(values, size=(3, 3), fill=0.0)
    return out


def _max_filter(x: np.ndarray, *, size: tuple[int, int], fill: float) -> np.ndarray:
    """``scipy.ndimage.maximum_filter(x, size, mode="constant", cval=fill)`` of a 2-D array, exactly.

    A running maximum by doubling windows (a few whole-array ``np.maximum`` passes per axis):
    on a clip's spectrogram scipy's filter took ~10 % of ``identify`` and this takes a fraction.
    """
    out = x
    for axis, n in enumerate(size):
        out = _running_max(out, n, axis=axis, fill=fill)
    return out


def _running_max(x: np.ndarray, size: int, *, axis: int, fill: float) -> np.ndarray:
    """Maximum over a window of ``size`` along ``axis`` placed as scipy's (``size // 2`` before), padded with ``fill``."""
    if size <= 1:
        return x
    before = size // 2
    # padded by hand: np.pad's Python takes longer than the copy on a clip's spectrogram
    shape = list(x.shape)
    shape[axis] += size - 1
    m = np.full(shape, fill, dtype=x.dtype)
    inner = [slice(None)] * x.ndim
    inner[axis] = slice(before, before + x.shape[axis])
    m[tuple(inner)] = x

    def part(a: np.ndarray, start: int, length: int) -> np.ndarray:
        index = [slice(None)] * a.ndim
        index[axis] = slice(start, start + length)
        return a[tuple(index)]

    width = 1  # m[i] holds the maximum of the padded x over [i, i + width)
    while 2 * width <= size:
        length = m.shape[axis] - width
        m = np.maximum(part(m, 0, length), part(m, width, length))
        width *= 2
    n = x.shape[axis]
    return np.maximum(part(m, 0, n), part(m, size - width, n))  # two overlapping windows cover size


def pair_peaks(frames: np.ndarray, bins: np.ndarray, *, params: FingerprintParams = REFERENCE_PARAMS) -> tuple[np.ndarray, np.ndarray]:
    """Choose landmark pairs: each anchor with its first ``fanout`` targets in the target zone.

    Parameters
    ----------
    frames : np.ndarray [shape=(n,)]
        Peak frames, ascending.
    bins : np.ndarray [shape=(n,)]
        Sub-bin peak frequencies.
    params : FingerprintParams

    Returns
    -------
    anchors, targets : np.ndarray [shape=(m,), dtype=int64]
        Indices into the peaks.
    """
    if frames.shape != bins.shape or frames.ndim != 1:
        raise ParameterError("frames and bins must be 1-D arrays of one length")
    n = frames.size
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    t = frames.astype(np.float64)
    f = bins.astype(np.float64)
    # targets are among the next `width` peaks in time order
    width = int(min(n - 1, max(params.fanout * 4, np.ceil(params.peaks_per_s * 1.5 * params.max_dt_frames / FRAME_RATE))))
    i = np.arange(n)[:, None]
    j = i + np.arange(1, width + 1)[None, :]
    inside = j < n
    j = np.minimum(j, n - 1)
    dt = t[j] - t[i]
    valid = inside & (dt >= 0.5) & (dt <= params.max_dt_frames) & (np.abs(f[j] - f[i]) <= params.max_df_bins)
    valid &= np.cumsum(valid, axis=1) <= params.fanout
    ai, k = _nonzero_2d(valid)
    return ai.astype(np.int64), (ai + k + 1).astype(np.int64)


def hash_pairs(
    frames: np.ndarray,
    bins: np.ndarray,
    anchors: np.ndarray,
    targets: np.ndarray,
    *,
    speed: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Hash landmark pairs, optionally undoing a speed change.

    Parameters
    ----------
    frames, bins : np.ndarray [shape=(n,)]
        Peak frames and sub-bin frequencies.
    anchors, targets : np.ndarray [shape=(m,)]
        Pairs from ``pair_peaks``.
    speed : float
        Hypothesised playback speed of the audio these peaks come from; peaks are
        mapped to the original's time and frequency (``t * speed``, ``f / speed``)
        before hashing, so a 3 % fast clip hashes like the original at ``speed=1.03``.

    Returns
    -------
    hashes : np.ndarray [shape=(m',), dtype=uint32]
        Pairs whose steps leave the hash's range after the mapping are dropped.
    anchor_frames : np.ndarray [shape=(m',), dtype=int32]
        Anchor time in the original's frames.
    """
    if not 0.5 <= speed <= 2.0:
        raise ParameterError(f"speed must be within 0.5..2, got {speed}")
    t = frames.astype(np.float64) * speed
    b = bins.astype(np.float64) / speed
    # the step in FFT bins (a small speed error changes it by a fraction of a bin); the anchor on the
    # part-logarithmic scale (a small speed error moves a 6 kHz peak by bins, but by under half a step)
    df = np.rint(b[targets]).astype(np.int64) - np.rint(b[anchors]).astype(np.int64)
    f1 = np.rint(HASH_STEPS * np.log1p(b[anchors] * (BIN_HZ / HASH_KNEE_HZ))).astype(np.int64)
    dt = np.rint(t[targets] - t[anchors]).astype(np.int64)
    ok = (dt >= 1) & (dt <= MAX_DT_FRAMES) & (np.abs(df) <= MAX_DF_BINS) & (f1 >= 0) & (f1 < (1 << _F_BITS))
    hashes = (f1[ok] << (_DF_BITS + _DT_BITS)) | ((df[ok] + (1 << (_DF_BITS - 1))) << _DT_BITS) | dt[ok]
    return hashes.astype(np.uint32), np.rint(t[anchors[ok]]).astype(np.int32)


def hash_peaks(
    frames: np.ndarray,
    bins: np.ndarray,
    *,
    speed: float = 1.0,
    params: FingerprintParams = REFERENCE_PARAMS,
) -> tuple[np.ndarray, np.ndarray]:
    """``pair_peaks`` then ``hash_pairs``: landmark hashes and anchor frames of peaks."""
    anchors, targets = pair_peaks(frames, bins, params=params)
    return hash_pairs(frames, bins, anchors, targets, speed=speed)


def fingerprint(
    y: np.ndarray, *, sr: int, params: FingerprintParams = REFERENCE_PARAMS, with_peak_map: bool = False
) -> Fingerprints:
    """Fingerprint a signal.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono audio at any rate.
    sr : int
        Sample rate of ``y`` in Hz.
    params : FingerprintParams
        ``REFERENCE_PARAMS`` for catalog tracks, ``QUERY_PARAMS`` for clips.
    with_peak_map : bool
        Keep the clip's peak map and power spectrogram for ``verify`` and
        ``verify_dense`` (queries).

    Returns
    -------
    Fingerprints
        Empty (no peaks, no hashes) for silence.
    """
    return _fingerprint(y, sr=sr, params=params, with_peak_map=with_peak_map)[0]


def _fingerprint(
    y: np.ndarray, *, sr: int, params: FingerprintParams, with_peak_map: bool
) -> tuple[Fingerprints, tuple[np.ndarray, np.ndarray]]:
    """``fingerprint`` and the landmark pairs it hashed (``pair_peaks`` under ``params``), which ``identify``
    hands to ``match`` rather than pairing the clip's peaks a second time."""
    found = _analyse(y, sr=sr, params=params, with_map=with_peak_map)
    frames, bins = found.peaks
    vpeaks = found.verify_peaks
    pairs = pair_peaks(frames, bins, params=params)
    hashes, hash_frames = hash_pairs(frames, bins, *pairs)
    return Fingerprints(
        peak_frames=frames,
        peak_bins=bins,
        hashes=hashes,
        hash_frames=hash_frames,
        duration_s=float(len(y)) / sr,
        peak_map=found.peak_map,
        verify_frames=None if vpeaks is None else vpeaks[0],
        verify_bins=None if vpeaks is None else vpeaks[1],
        dense_bits=found.dense_bits,
        spectrum=found.spectrum,
    ), pairs


LookupFn = Callable[[np.ndarray], Hits]


def _best_offsets(hits: Hits, q_frames: np.ndarray, *, top_tracks: int) -> list[tuple[int, int, int, int]]:
    """Best (track_id, offset_frames, aligned score, raw hits) of the ``top_tracks`` best-aligned tracks.

    Every track's offset histogram is built at once, so a short true track is not
    crowded out by long tracks with more chance hits (as a pre-selection of tracks
    by raw hit count would do in a large catalog).
    """
    return _best_offsets_per_set(hits, q_frames, group=None, n_groups=1, top_tracks=top_tracks)[0]


def _best_offsets_per_set(
    hits: Hits, q_frames: np.ndarray, *, group: np.ndarray | None, n_groups: int, top_tracks: int
) -> list[list[tuple[int, int, int, int]]]:
    """``_best_offsets`` of each of several hash sets looked up at once (``group`` of each hit,
    ``0 .. n_groups - 1``; None: one set): one lookup and one pass for the speed hypotheses
    instead of one each. The offsets of different sets never mix, as those of different tracks do not."""
    out: list[list[tuple[int, int, int, int]]] = [[] for _ in range(n_groups)]
    if hits.track_ids.size == 0:
        return out
    slot, tracks = _track_slots(hits)
    if group is not None:
        slot = group * tracks.size + slot
    counts = np.bincount(slot, minlength=n_groups * tracks.size)
    aligned = _aligned_cells(hits, q_frames, slot=slot, n_slots=n_groups * tracks.size)
    if aligned is None:
        return out
    cells, smooth, slot_of, o_bits, base = aligned
    # best cell per track: its highest smoothed count, the earliest offset on ties
    t_starts = np.flatnonzero(_run_starts(slot_of))
    peak = np.maximum.reduceat(smooth, t_starts)
    at_peak = np.flatnonzero(smooth == np.repeat(peak, np.diff(t_starts, append=smooth.size)))
    first = at_peak[_run_starts(slot_of[at_peak])]
    first = first[smooth[first] >= 2]
    # per set, most aligned first; ties go to the lower track id
    set_of, track_of = np.divmod(slot_of[first], tracks.size)
    order = np.lexsort((tracks[track_of], -smooth[first], set_of))
    first, set_of, track_of = first[order], set_of[order], track_of[order]
    keep = np.arange(first.size) - np.searchsorted(set_of, set_of) < top_tracks
    mask = (1 << o_bits) - 1
    for i, g, t in zip(first[keep].tolist(), set_of[keep].tolist(), track_of[keep].tolist()):
        out[g].append((int(tracks[t]), int(cells[i] & mask) - base, int(smooth[i]), int(counts[g * tracks.size + t])))
    return out


def _best_scores(hits: Hits, q_frames: np.ndarray, *, group: np.ndarray, n_groups: int) -> np.ndarray:
    """For hits of several hash sets looked up at once (``group`` of each hit, ``0 .. n_groups - 1``): each
    set's best aligned score, as ``_best_offsets(hits of the set, ...)[0][2]`` (0 when it has none).

    One lookup and one pass for all nine speed hypotheses of the pre-check instead of nine small ones,
    whose fixed costs were most of the pre-check; the offsets of different sets never mix, as those of
    different tracks do not.
    """
    out = np.zeros(n_groups, dtype=np.int64)
    if hits.track_ids.size == 0:
        return out
    slot, tracks = _track_slots(hits)
    aligned = _aligned_cells(hits, q_frames, slot=group * tracks.size + slot, n_slots=n_groups * tracks.size)
    if aligned is None:
        return out
    _, smooth, slot_of, _, _ = aligned
    np.maximum.at(out, slot_of // tracks.size, smooth)
    out[out < 2] = 0  # as _best_offsets: a single hit is no alignment
    return out


def _track_slots(hits: Hits) -> tuple[np.ndarray, np.ndarray]:
    """Each hit's dense track position and the track ids by position."""
    if hits.track_index is not None and hits.track_table is not None:
        return hits.track_index, hits.track_table
    tracks, slot = np.unique(hits.track_ids, return_inverse=True)
    return slot, tracks


def _aligned_cells(
    hits: Hits, q_frames: np.ndarray, *, slot: np.ndarray, n_slots: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int] | None:
    """Every (slot, offset) cell that aligns two or more hits (with its +-1 frame neighbours), in order.

    Returns
    -------
    (cells, smooth, slot_of, o_bits, base) or None
        ``cells`` = ``slot << o_bits | offset + base``, ascending; ``smooth`` the cell's count with its
        neighbours'; ``slot_of`` = ``cells >> o_bits``. None when no cell aligns two hits.
    """
    # offset + the clip's last frame: >= 0, as frames are (in place where possible: these are the big arrays)
    base = int(q_frames.max(initial=0))
    rel = (base - q_frames).astype(np.int32)[hits.query_index]
    rel += hits.ref_frames if hits.ref_frames.dtype.itemsize <= 4 else hits.ref_frames.astype(np.int32)
    lowest = int(rel.min())
    if lowest < 0:
        rel -= np.int32(lowest)
        base -= lowest
    o_bits = int(rel.max() + 1).bit_length()  # the largest offset + 1 does not carry into the track bits
    # sorts and run-length passes only: hash-based np.unique and lexsort cost 3x more at 100 h. The
    # sort key is (track, offset), so a neighbouring offset of the same track sorts right next to it.
    if hits.distinct and n_slots << o_bits < 1 << 31:  # half the bytes to sort
        key = slot.astype(np.int32)
        key <<= o_bits
        key |= rel
        key = radix_sorted(key, bits=(n_slots << o_bits).bit_length())
    else:
        key = (slot.astype(np.int64) << o_bits) | rel
        if not hits.distinct:
            # each query hash counts at most once per (track, offset): repeated ref entries inflate nothing
            q_bits = int(hits.query_index.max()).bit_length()
            cell = np.sort((key << q_bits) | hits.query_index)
            key = cell[_run_starts(cell)] >> q_bits
        else:
            key.sort()
    # a cell scores 2 or more (with its +-1 frame neighbours) only if one of its hits has another hit
    # of the same track at most a frame away, and then every hit it counts has one: the lone hits
    # (most chance hits) count for no such cell and are dropped before the run-length passes
    near = np.diff(key) <= 1  # never across tracks: the offset bits do not carry
    keep = np.zeros(key.size, bool)
    keep[1:] = near
    keep[:-1] |= near
    key = key[keep]
    if key.size == 0:
        return None
    starts = np.flatnonzero(_run_starts(key))
    cells = key[starts]
    n = np.diff(starts, append=key.size)  # aligned count per (track, offset)
    # one frame of tolerance: rounding and residual speed error smear the peak
    smooth = n.copy()
    up = cells[1:] == cells[:-1] + 1
    smooth[:-1] += np.where(up, n[1:], 0)
    smooth[1:] += np.where(up, n[:-1], 0)
    return cells, smooth, cells >> o_bits, o_bits, base


def _radix_passes(bits: int) -> list[tuple[int, type]]:
    """(shift, key dtype) of each least-significant-digit pass over integers below ``2 ** bits``."""
    if bits <= 16:
        return [(0, np.uint16)]
    return [(0, np.uint16), (16, np.uint8 if bits <= 24 else np.uint16)]


def stable_order(values: np.ndarray, *, bits: int) -> np.ndarray:
    """``np.argsort(values, kind="stable")`` of non-negative integers below ``2 ** bits``.

    As radix passes (``np.argsort(kind="stable")`` of 16- and 8-bit keys is a counting sort): on
    this project's hosts numpy sorts 32- and 64-bit integers by comparisons, two to three times
    slower on the hundred thousand hits of a clip.
    """
    if bits > 32:
        return np.argsort(values, kind="stable")
    order = None
    for shift, dtype in _radix_passes(bits):
        part = (values if order is None else values[order]) >> shift
        step = np.argsort(part.astype(dtype), kind="stable")
        order = step if order is None else order[step]
    return order


def radix_sorted(values: np.ndarray, *, bits: int) -> np.ndarray:
    """``np.sort(values)`` of non-negative integers below ``2 ** bits`` (as ``stable_order``, values only)."""
    if bits > 32:
        return np.sort(values)
    for shift, dtype in _radix_passes(bits):
        values = values[np.argsort((values >> shift).astype(dtype), kind="stable")]
    return values


def _run_starts(a: np.ndarray) -> np.ndarray:
    """``np.r_[True, a[1:] != a[:-1]]`` for a non-empty 1-D array: where each run of equal values begins
    (``np.r_`` costs more than the comparison on the small arrays of a query)."""
    out = np.empty(a.size, dtype=bool)
    out[0] = True
    np.not_equal(a[1:], a[:-1], out=out[1:])
    return out


PeaksFn = Callable[[int, int, int], tuple[np.ndarray, np.ndarray]]
"""``peaks(track_id, start_frame, end_frame) -> (frames, bins)``: a catalog track's own
peaks in ``[start_frame, end_frame)``, usually ``FingerprintIndex.reference_peaks``."""

DenseFn = Callable[[int, int, int], tuple[int, np.ndarray]]
"""``dense(track_id, start_frame, end_frame) -> (first_frame, bits)``: a catalog track's
``dense_bits`` rows from ``first_frame`` on, within ``[start_frame, end_frame)``, usually
``FingerprintIndex.reference_dense``."""

VERIFY_NULL_SHIFTS = np.array([11, 19, 29, 37, 47, 59, 71, 83, 97, 109], dtype=np.int64)
"""Offsets (frames, both signs) at which the chance level of a verification is measured:
irregular, so a beat or bar period does not line most of them up with the music again."""
_VERIFY_SUB_SPEED = 0.003  # a third of the speed grid step: the hypothesis may be off by up to half a step
_VERIFY_MIN_PEAKS = 8


@dataclass(frozen=True)
class Verification:
    """How strongly a clip shows a track's own peaks at one alignment, against chance.

    Attributes
    ----------
    observed : float
        Mean peak-map value (contrast, natural log units) at the reference peaks
        that fall inside the clip.
    null : float
        The same at the shifted alignments (``VERIFY_NULL_SHIFTS``), averaged.
    z : float
        ``(observed - null)`` over the spread of the shifted values (at least the
        standard error of the observed mean).
    n_peaks : int
        Reference peaks compared at the alignment.
    """

    observed: float
    null: float
    z: float
    n_peaks: int


def verify_window(n_frames: int, *, offset_frames: int, speed: float) -> tuple[int, int]:
    """Track frames ``[start, end)`` whose peaks ``verify`` needs for a clip of ``n_frames``."""
    reach = int(VERIFY_NULL_SHIFTS.max()) + 2
    lo = offset_frames - reach
    hi = offset_frames + int(np.ceil(n_frames * speed * (1 + _VERIFY_SUB_SPEED))) + reach + 1
    return max(lo, 0), max(hi, 0)


def _repeats(ts: Sequence[np.ndarray], fs: Sequence[np.ndarray], shifts: np.ndarray, *, n_f: int) -> np.ndarray:
    """``[a, i]``: the track has a peak of its own ``shifts[a]`` frames before peak ``i`` (within a frame and a bin),
    for the peaks ``ts[k], fs[k]`` of several tracks one after the other (each track only against itself).

    Looked up ``shifts[a]`` frames off, such a peak meets the track's own repetition (a loop
    one beat or bar later), not chance: on loop-based music it would lift the null to the
    level of the true alignment.
    """
    sizes = np.array([t.size for t in ts])
    ti = np.rint(np.concatenate(ts)).astype(np.int64)
    fi = np.clip(np.rint(np.concatenate(fs)).astype(np.int64), 0, n_f - 1)
    # each track's rows in its own block of a flat grid, a guard row either side, so the widening needs no bounds
    t0 = np.array([int(t.min()) - 1 for t in ts if t.size], dtype=np.int64)
    n_rows = np.array([int(t.max()) for t in ts if t.size], dtype=np.int64) - t0 + 2
    at = np.repeat(np.cumsum(n_rows) - n_rows - t0, sizes[sizes > 0])  # grid row of track frame 0
    last = np.repeat(t0 + n_rows - 2, sizes[sizes > 0])  # the last frame inside the block
    first = np.repeat(t0 + 1, sizes[sizes > 0])
    # each peak marks its 3x3 cells (bins clipped to the grid) in a flat grid: a few thousand writes
    # instead of four passes over the whole grid (a 3x3 maximum_filter costs 10x more still)
    grid = np.zeros(int(n_rows.sum()) * n_f, dtype=bool)
    cols = np.stack([np.maximum(fi - 1, 0), fi, np.minimum(fi + 1, n_f - 1)])
    grid[((ti + at) * n_f + np.array([-n_f, 0, n_f])[:, None, None] + cols[None]).ravel()] = True
    src = ti[None, :] - shifts[:, None]
    ok = (shifts[:, None] != 0) & (src >= first) & (src <= last)
    return ok & grid[np.where(ok, (src + at) * n_f + fi[None, :], 0)]


def verify(
    peak_map: np.ndarray, ref_frames: np.ndarray, ref_bins: np.ndarray, *, offset_frames: int, speed: float
) -> Verification:
    """Check a candidate alignment peak by peak, against shifted alignments of the same clip.

    A landmark hash survives only when both of its peaks do; a single peak is far more
    likely to. Every reference peak in the aligned window is mapped into the clip (time
    ``(t - offset) / speed``, frequency ``f * speed``) and looked up in the clip's peak
    map (the contrast of the clip's local maximum there, if any); the same with the
    reference shifted by ``VERIFY_NULL_SHIFTS`` frames measures what this clip and this
    track give by chance, leaving out at each shift the reference peaks that the track
    itself repeats that many frames earlier (a loop one beat or bar on). The map is
    widened by one frame and bin; the speed is refined by a third of a speed step either
    way, at the shifted alignments likewise, so the refinement favours neither.

    Parameters
    ----------
    peak_map : np.ndarray [shape=(n_frames, n_bins), dtype=float32]
        ``Fingerprints.peak_map`` of the clip.
    ref_frames, ref_bins : np.ndarray [shape=(n,)]
        The track's peaks (frames and sub-bin frequencies) around the alignment,
        at least ``verify_window``.
    offset_frames : int
        Track frame where the clip starts (``Match.offset_s * FRAME_RATE``).
    speed : float
        Speed hypothesis of the candidate.

    Returns
    -------
    Verification
        ``z`` is 0 when too few reference peaks fall inside the clip.
    """
    return _verify_all(peak_map, [(ref_frames, ref_bins)], offsets=[offset_frames], speeds=[speed])[0]


def _verify_all(
    peak_map: np.ndarray, refs: Sequence[tuple[np.ndarray, np.ndarray]], *, offsets: Sequence[int],
    speeds: Sequence[float],
) -> list[Verification]:
    """``verify`` of several candidates of one clip (``refs[i]``: the peaks of candidate ``i``'s track), in one
    pass of array operations over all their peaks: per candidate the same numbers, fewer calls."""
    n_t, n_f = peak_map.shape
    shifts = np.concatenate([[0], -VERIFY_NULL_SHIFTS[::-1], VERIFY_NULL_SHIFTS])
    ts = [np.asarray(frames, dtype=np.float64) for frames, _ in refs]
    fs = [np.asarray(bins, dtype=np.float64) for _, bins in refs]
    sizes = np.array([t.size for t in ts], dtype=np.int64)
    out = [Verification(observed=0.0, null=0.0, z=0.0, n_peaks=0)] * len(refs)  # no peak: none inside
    if not sizes.any():
        return out
    t, f = np.concatenate(ts), np.concatenate(fs)
    # each peak's candidate: its offset and speed refinements (speed x (1 - s, 1, 1 + s)), as columns
    offset = np.repeat(np.asarray(offsets, dtype=np.int64), sizes)
    refined = (np.asarray(speeds, dtype=np.float64)[:, None] * (1.0 + _VERIFY_SUB_SPEED * np.arange(-1, 2))).T
    speed = np.repeat(np.ascontiguousarray(refined), sizes, axis=1)
    tq = np.rint((t[None, None, :] - offset - shifts[None, :, None]) / speed[:, None, :]).astype(np.int32)
    fq = np.minimum(np.rint(f[None, :] * speed).astype(np.int32), n_f - 1)
    inside = (tq >= 0) & (tq < n_t)
    inside &= ~_repeats(ts, fs, shifts, n_f=n_f)[None]
    # one flat gather (int32 indices built in place: frames and cells stay far below 2**31); outside the
    # clip it reads cell (0, 0), which is below the band and always 0
    flat = tq
    flat *= n_f
    flat += fq[:, None, :]
    flat *= inside
    on = np.ravel(peak_map).take(flat)
    for k, (a, b) in enumerate(zip((np.cumsum(sizes) - sizes).tolist(), np.cumsum(sizes).tolist())):
        if a == b:
            continue
        on_k, inside_k = on[:, :, a:b], inside[:, :, a:b]
        n_in = inside_k.sum(axis=2)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(n_in >= _VERIFY_MIN_PEAKS, on_k.sum(axis=2) / n_in, -1.0)
        best = mean.max(axis=0)  # the best speed refinement per alignment
        best[best < 0] = np.nan
        observed, rest = best[0], best[1:][~np.isnan(best[1:])]
        n_obs = int(n_in[1, 0])  # the unrefined alignment's peak count
        if np.isnan(observed) or rest.size < 4:
            out[k] = Verification(observed=0.0, null=0.0, z=0.0, n_peaks=n_obs)
            continue
        mu = float(rest.mean())
        values = on_k[1, 0][inside_k[1, 0]]
        spread = max(float(rest.std()), float(values.std()) / np.sqrt(max(n_obs, 1)), 1e-3)
        out[k] = Verification(observed=float(observed), null=mu, z=float((observed - mu) / spread), n_peaks=n_obs)
    return out


def verify_dense(
    clip_bits: np.ndarray, ref_bits: np.ndarray, *, ref_first_frame: int, offset_frames: int, speed: float
) -> Verification:
    """Compare a clip's ``dense_bits`` with a track's over the whole clip, against shifted alignments.

    The share of agreeing bits at the candidate alignment (clip frame ``i`` against track
    frame ``offset + i * speed``) is set against the same share at ``VERIFY_NULL_SHIFTS``
    frames either way: what this clip and this track agree on by chance (music agrees with
    itself a little at any offset: same key, same instruments). Each alignment may move by
    a frame either way (offsets are whole frames, the speed grid is coarse), the shifted
    ones alike, so the freedom favours neither.

    Parameters
    ----------
    clip_bits : np.ndarray [shape=(n_frames, DENSE_BYTES), dtype=uint8]
        ``dense_bits(clip spectrum, speed=speed)``.
    ref_bits : np.ndarray [shape=(m, DENSE_BYTES), dtype=uint8]
        The track's bits from frame ``ref_first_frame`` on, covering at least ``verify_window``.
    ref_first_frame : int
    offset_frames : int
        Track frame where the clip starts.
    speed : float

    Returns
    -------
    Verification
        ``observed`` and ``null`` are shares of agreeing bits, ``n_peaks`` the clip frames
        compared; ``z`` is 0 when fewer than 40 % of the clip's frames (or 8) fall inside the track.
    """
    return _verify_dense_all([clip_bits], [ref_bits], ref_first_frames=[ref_first_frame], offsets=[offset_frames],
                             speeds=[speed])[0]


def _verify_dense_all(
    clips: Sequence[np.ndarray], refs: Sequence[np.ndarray], *, ref_first_frames: Sequence[int],
    offsets: Sequence[int], speeds: Sequence[float],
) -> list[Verification]:
    """``verify_dense`` of several candidates of one clip (``clips[i]``: the clip's bits under ``speeds[i]``),
    in one pass of array operations instead of one each: per candidate the same numbers, a third less
    CPU for a clip's ten candidates (the per-call overhead was most of a short clip's)."""
    n_c = len(clips)
    n_q = clips[0].shape[0] if n_c else 0
    m = np.array([r.shape[0] for r in refs], dtype=np.int64)
    out = [Verification(observed=0.0, null=0.0, z=0.0, n_peaks=0)] * n_c
    todo = np.flatnonzero(m > 0) if n_q else np.zeros(0, np.int64)
    if todo.size == 0:
        return out
    m = m[todo]
    shifts = np.concatenate([[0], -VERIFY_NULL_SHIFTS[::-1], VERIFY_NULL_SHIFTS])
    start = np.array([offsets[c] - ref_first_frames[c] for c in todo])
    speed = np.array([speeds[c] for c in todo], dtype=np.float64)
    where = start[:, None] + np.arange(n_q)[None, :] * speed[:, None]  # track row of each clip frame
    whole = np.floor(where)
    frac = where - whole
    # rint(where + k) for an integer k is rint(where) + k unless where lies that close to a half (as in
    # peak_offsets): one rint per clip frame instead of one per (shift, frame); else the float path
    steps = shifts[:, None] + np.arange(-1, 2)[None, :]
    rows = (whole + (frac > 0.5)).astype(np.int64)[:, None, None, :] + steps[None, :, :, None]
    exact = np.all(np.abs(frac - 0.5) > 1e-6, axis=1) & (np.abs(start) + n_q * speed < 2.0**40)
    for i in np.flatnonzero(~exact):
        rows[i] = np.rint(where[i][None, None, :] + shifts[:, None, None] + np.arange(-1, 2)[None, :, None])
    inside = (rows >= 0) & (rows < m[:, None, None, None])
    # a frame's bits as 64-bit words: one XOR and popcount per word instead of per byte; the candidates'
    # tracks one after the other, a row outside a track reads its first (not counted)
    words = np.concatenate([np.ascontiguousarray(refs[c], dtype=np.uint8).view(np.uint64) for c in todo])
    rows *= inside
    rows += (np.cumsum(m) - m)[:, None, None, None]
    clip_words = np.stack([np.ascontiguousarray(clips[c], dtype=np.uint8).view(np.uint64) for c in todo])
    differ = np.bitwise_count(words.take(rows, axis=0) ^ clip_words[:, None, None])
    differ = differ[..., 0] if differ.shape[4] == 1 else differ.sum(axis=4, dtype=np.int32)
    differ *= inside
    n_in = inside.sum(axis=3)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(n_in >= max(int(0.4 * n_q), 8), 1.0 - differ.sum(axis=3) / (n_in * DENSE_BANDS), np.nan)
    missing = np.isnan(share)  # too few frames inside the track at that alignment
    best = np.where(missing.all(axis=2), np.nan, np.where(missing, -1.0, share).max(axis=2))
    for i, c in enumerate(todo.tolist()):
        observed, rest = best[i, 0], best[i, 1:][~np.isnan(best[i, 1:])]
        n_obs = int(n_in[i, 0, 1])
        if np.isnan(observed) or rest.size < 4:
            out[c] = Verification(observed=0.0, null=0.0, z=0.0, n_peaks=n_obs)
            continue
        mu = float(rest.mean())
        out[c] = Verification(observed=float(observed), null=mu, z=float((observed - mu) / max(float(rest.std()), 1e-3)),
                              n_peaks=n_obs)
    return out


@dataclass(frozen=True)
class PeakVotes:
    """Where in a whole track a clip's single peaks line up best (``peak_offsets``).

    Attributes
    ----------
    offset_frames : int
        Track frame where the clip starts at the best alignment.
    votes : int
        Clip peaks meeting a track peak (within a bin) at that offset, give or take a frame.
    z : float
        ``votes`` against the same count at every other offset of the track (mean and
        spread over the offsets where the clip lies inside it): the track's own null.
    """

    offset_frames: int
    votes: int
    z: float


def peak_offsets(
    q_frames: np.ndarray, q_bins: np.ndarray, ref_frames: np.ndarray, ref_bins: np.ndarray, *, speed: float,
    n_clip_frames: int,
) -> PeakVotes:
    """Sparse cross-correlation of a clip's peaks with a whole track's peaks.

    Every clip peak, mapped to the track's time and frequency under ``speed``, votes for
    ``t_ref - t_clip`` of each track peak within one bin of it. A landmark hash needs both
    of its peaks to survive the noise (at 0 dB about one reference peak in five does, so
    a pair one in twenty-five); a single peak needs only itself, so at low SNR the true
    offset gathers several times more evidence here than in the hash histogram.

    Parameters
    ----------
    q_frames, q_bins : np.ndarray [shape=(m,)]
        The clip's peaks (``Fingerprints.peak_frames`` / ``peak_bins``).
    ref_frames, ref_bins : np.ndarray [shape=(n,)]
        The track's peaks, all of them (``FingerprintIndex.reference_peaks``).
    speed : float
        Speed hypothesis (as in ``hash_pairs``).
    n_clip_frames : int
        The clip's length in frames (bounds the offsets of the null).

    Returns
    -------
    PeakVotes
        Zero votes and z for an empty clip or track.
    """
    if ref_frames.size == 0 or q_frames.size == 0:
        return PeakVotes(offset_frames=0, votes=0, z=0.0)
    rb = np.rint(np.asarray(ref_bins, dtype=np.float32)).astype(np.int32)
    rt = np.asarray(ref_frames, dtype=np.int32)
    tq = np.asarray(q_frames, dtype=np.float64) * speed
    qb = np.rint(np.asarray(q_bins, dtype=np.float64) / speed).astype(np.int32)
    lowest = min(int(rb.min()), int(qb.min()))
    if lowest < 0:  # bins only index the tables below
        rb, qb = rb - lowest, qb - lowest
    # the track's peaks grouped by bin, so a clip peak's partners are one slice: a stable radix argsort of
    # 16-bit bins costs two thirds of a sort by (bin, time); the order within a bin does not matter
    rt_s = rt[np.argsort(rb.astype(np.uint16), kind="stable")]
    per_bin = np.bincount(rb)
    below = np.full(max(per_bin.size, int(qb.max()) + 1) + 3, rb.size, dtype=np.int64)  # below[k + 1]: peaks under bin k
    below[:2] = 0
    np.cumsum(per_bin, out=below[2 : per_bin.size + 2])
    lo = below[qb]  # partners in bins qb - 1 .. qb + 1
    cnt = below[qb + 3] - lo
    total = int(cnt.sum())
    if total == 0:
        return PeakVotes(offset_frames=0, votes=0, z=0.0)
    # every (clip peak, track peak) pair at once: positions lo[i] .. lo[i] + cnt[i] - 1
    # int32 and in place: these arrays hold every pair (tens of thousands), half the bytes to move
    idx = np.repeat((lo - (np.cumsum(cnt) - cnt)).astype(np.int32), cnt)
    idx += np.arange(total, dtype=np.int32)
    # rint(t - tq) for an integer t is t + rint(-tq), except where -tq is a half (rint goes to the even
    # side, which depends on t): integer arithmetic then, unless a clip peak lies that close to a tie
    neg = -tq
    whole = np.floor(neg)
    frac = neg - whole
    if np.all(np.abs(frac - 0.5) > 1e-6):
        off = rt_s[idx]
        off += np.repeat((whole + (frac > 0.5)).astype(np.int32), cnt)
    else:
        off = np.rint(rt_s[idx] - np.repeat(tq, cnt)).astype(np.int64)
    omin = int(off.min())
    off -= omin
    h = np.bincount(off)
    votes = h.copy()  # one frame of tolerance either way, as in the hash histogram
    votes[1:] += h[:-1]
    votes[:-1] += h[1:]
    best = int(np.argmax(votes))
    # the null: offsets where the whole clip lies inside the track (all of them for a short track)
    a = max(int(rt.min()) - omin, 0)
    b = min(int(rt.max()) - int(n_clip_frames * speed) - omin, votes.size)
    null = (votes[a:b] if b - a >= 50 else votes).astype(np.float64)
    mu = float(null.sum()) / null.size
    sd = np.sqrt(max(float(null @ null) / null.size - mu * mu, 0.0))  # one BLAS pass instead of std's three
    z = (votes[best] - mu) / max(sd, 1.0)
    return PeakVotes(offset_frames=best + omin, votes=int(votes[best]), z=float(z))


def match(
    fp: Fingerprints,
    lookup: LookupFn,
    *,
    speeds: Sequence[float] = DEFAULT_SPEEDS,
    params: FingerprintParams = QUERY_PARAMS,
    top_tracks: int = 20,
    max_candidates: int = 5,
    calibration: Calibration = DEFAULT_CALIBRATION,
    keep_speeds: int = 3,
    precheck_share: int = 4,
    peaks: PeaksFn | None = None,
    verify_top: int = 10,
    vote_top: int = 10,
    dense: DenseFn | None = None,
    pairs: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[Match]:
    """Rank catalog tracks for a clip under several speed hypotheses.

    A cheap pre-check hashes every ``precheck_share``-th pair under every speed
    and keeps the ``keep_speeds`` hypotheses whose best track aligns most
    hashes; only those are matched with all pairs.

    Parameters
    ----------
    fp : Fingerprints
        The clip's fingerprints (its peaks are re-hashed per speed).
    lookup : callable
        ``lookup(hashes) -> Hits``, usually ``FingerprintIndex.lookup``.
    speeds : sequence of float
        Hypotheses; on ties the earlier one wins the pre-check.
    params : FingerprintParams
        Pairing parameters (must match the index's hash layout).
    top_tracks : int
        Best-aligned tracks kept per hypothesis (every hit track gets an offset histogram).
    max_candidates : int
        Length of the returned list.
    calibration : Calibration
    keep_speeds : int >= 1
        Hypotheses that get the full match (all of them when there are no more).
    precheck_share : int >= 1
        One pair in this many takes part in the pre-check.
    peaks : callable, optional
        The catalog's own peaks (``FingerprintIndex.reference_peaks``): the
        ``verify_top`` candidates with most aligned hashes are verified peak by
        peak (``verify``; needs ``fp.peak_map``) and ranked by confidence.
    verify_top : int >= 1
    vote_top : int >= 0
        With ``peaks``: the candidates with most aligned hashes that are re-placed by a
        single-peak search over the whole track (``peak_offsets``) before verification;
        the ``verify_top`` of them that stand out most there are verified (0: no search).
    dense : callable, optional
        With ``peaks``: the catalog's ``dense_bits`` (``FingerprintIndex.reference_dense``);
        the verified candidates are also checked frame by frame (``verify_dense``; needs
        ``fp.spectrum``).
    pairs : (anchors, targets), optional
        ``pair_peaks(fp.peak_frames, fp.peak_bins, params=params)`` when the caller has it already.

    Returns
    -------
    list of Match
        Best first, one per track, with calibrated confidences.
    """
    if not speeds:
        raise ParameterError("speeds must not be empty")
    if min(top_tracks, max_candidates, keep_speeds, precheck_share, verify_top) < 1:
        raise ParameterError("top_tracks, max_candidates, keep_speeds, precheck_share and verify_top must be at least 1")
    anchors, targets = pair_peaks(fp.peak_frames, fp.peak_bins, params=params) if pairs is None else pairs
    chosen = list(dict.fromkeys(speeds))
    if len(chosen) > keep_speeds:
        sub_a, sub_t = anchors[::precheck_share], targets[::precheck_share]
        sets = [hash_pairs(fp.peak_frames, fp.peak_bins, sub_a, sub_t, speed=speed) for speed in chosen]
        pre = [0] * len(chosen)
        if any(h.size for h, _ in sets):  # all hypotheses in one lookup
            hits, group, q_frames = _lookup_sets(sets, lookup)
            pre = _best_scores(hits, q_frames, group=group, n_groups=len(chosen)).tolist()
        order = sorted(range(len(chosen)), key=lambda i: -pre[i])  # stable: ties keep the given order
        chosen = [chosen[i] for i in order[:keep_speeds]]
    best: dict[int, tuple[int, int, int, float]] = {}  # track -> (score, offset frames, n_hits, speed)
    sets = [hash_pairs(fp.peak_frames, fp.peak_bins, anchors, targets, speed=speed) for speed in chosen]
    n_q = max(h.size for h, _ in sets)
    if n_q:  # the kept hypotheses in one lookup too
        hits, group, q_frames = _lookup_sets(sets, lookup)
        per_set = _best_offsets_per_set(hits, q_frames, group=group, n_groups=len(chosen), top_tracks=top_tracks)
        for speed, tops in zip(chosen, per_set):
            for track, off, score, n_hits in tops:
                if track not in best or score > best[track][0]:
                    best[track] = (score, off, n_hits, speed)
    ranked = sorted(best.items(), key=lambda kv: (-kv[1][0], kv[0]))
    z = np.zeros(len(ranked))
    votes = np.zeros(len(ranked))
    dz = np.zeros(len(ranked))
    if peaks is not None and fp.peak_map is not None:
        if vote_top > 0:
            ranked, votes = _placed_by_peaks(fp, peaks, ranked[:vote_top], n_clip_frames=fp.peak_map.shape[0])
        ranked, votes = ranked[:verify_top], votes[:verify_top]
        tracks = [track for track, _ in ranked]
        offs = [off for _, (_, off, _, _) in ranked]
        spds = [speed for _, (_, _, _, speed) in ranked]
        windows = [peaks(t, *verify_window(fp.peak_map.shape[0], offset_frames=o, speed=s))
                   for t, o, s in zip(tracks, offs, spds)]
        z = np.array([v.z for v in _verify_all(fp.peak_map, windows, offsets=offs, speeds=spds)])
        if dense is not None and fp.spectrum is not None:
            # per speed: a few candidates share each
            clip_bits = {s: dense_bits(fp.spectrum, speed=s) for s in dict.fromkeys(spds)}
            fetched = [dense(t, *verify_window(fp.spectrum.shape[0], offset_frames=o, speed=s))
                       for t, o, s in zip(tracks, offs, spds)]
            dz = np.array([v.z for v in _verify_dense_all(
                [clip_bits[s] for s in spds], [bits for _, bits in fetched],
                ref_first_frames=[first for first, _ in fetched], offsets=offs, speeds=spds)])
    return _ranked(ranked, z, n_q, calibration, max_candidates, votes=votes, dense_z=dz)


def _lookup_sets(sets: list[tuple[np.ndarray, np.ndarray]], lookup: LookupFn) -> tuple[Hits, np.ndarray, np.ndarray]:
    """Several (hashes, query frames) sets looked up at once: the hits, each hit's set and the
    concatenated query frames (what ``Hits.query_index`` points into)."""
    sizes = [h.size for h, _ in sets]
    hits = lookup(np.concatenate([h for h, _ in sets]))
    group = np.repeat(np.arange(len(sets)), sizes)[hits.query_index]
    return hits, group, np.concatenate([f for _, f in sets]).astype(np.int64)


def _placed_by_peaks(
    fp: Fingerprints, peaks: PeaksFn, ranked: list[tuple[int, tuple[int, int, int, float]]], *, n_clip_frames: int
) -> tuple[list[tuple[int, tuple[int, int, int, float]]], np.ndarray]:
    """Each candidate moved to the offset where the clip's single peaks line up best in the whole
    track (``peak_offsets``), then ordered by how far that stands above the track's other offsets.

    The hash histogram's best offset is often wrong at low SNR (few pairs survive) even when
    the track is right; the single-peak search finds it far more often (the bench's seed-1 clips: 303 vs
    235 of 480 clips within two frames).
    """
    placed = []
    for track, (score, _off, n_hits, speed) in ranked:
        frames, bins = peaks(track, 0, 1 << 16)
        pv = peak_offsets(fp.peak_frames, fp.peak_bins, frames, bins, speed=speed, n_clip_frames=n_clip_frames)
        placed.append((pv.z, (track, (score, pv.offset_frames, n_hits, speed))))
    order = sorted(range(len(placed)), key=lambda i: (-placed[i][0], -placed[i][1][1][0], placed[i][1][0]))
    return [placed[i][1] for i in order], np.array([placed[i][0] for i in order])


def best_of_others(values: np.ndarray, *, floor: float) -> np.ndarray:
    """For each entry, the largest of the other entries (``floor`` when there is none)."""
    out = np.full(values.shape, floor, dtype=np.float64)
    if values.size > 1:
        order = np.argsort(-values, kind="stable")
        out[:] = values[order[0]]
        out[order[0]] = max(float(values[order[1]]), floor)
    return out


def _ranked(
    ranked: list[tuple[int, tuple[int, int, int, float]]], z: np.ndarray, n_q: int, calibration: Calibration, limit: int,
    *, votes: np.ndarray | None = None, dense_z: np.ndarray | None = None,
) -> list[Match]:
    """Matches by confidence; each candidate is compared with the best of the others."""
    if not ranked:
        return []
    scores = np.array([v[0] for _, v in ranked], dtype=np.float64)
    votes = np.zeros(len(ranked)) if votes is None else np.asarray(votes, dtype=np.float64)
    dense_z = np.zeros(len(ranked)) if dense_z is None else np.asarray(dense_z, dtype=np.float64)
    conf = calibration.confidence(candidate_features(scores, z, votes, dense_z, n_query_hashes=n_q))
    order = sorted(range(len(ranked)), key=lambda i: (-conf[i], -scores[i], ranked[i][0]))[:limit]
    return [
        Match(
            track_id=int(ranked[i][0]), offset_s=round(ranked[i][1][1] / FRAME_RATE, 3), score=int(scores[i]),
            speed=float(ranked[i][1][3]), n_hits=int(ranked[i][1][2]), confidence=round(float(conf[i]), 4),
            verified=round(float(z[i]), 2), peak_votes=round(float(votes[i]), 2),
            dense_verified=round(float(dense_z[i]), 2),
        )
        for i in order
    ]


def identify(
    y: np.ndarray,
    *,
    sr: int,
    lookup: LookupFn,
    speeds: Sequence[float] = DEFAULT_SPEEDS,
    calibration: Calibration = DEFAULT_CALIBRATION,
    max_candidates: int = 5,
    keep_speeds: int = 3,
    peaks: PeaksFn | None = None,
    dense: DenseFn | None = None,
) -> Identification:
    """Identify the catalog track in a clip, or say it is not in the catalog.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        The clip, mono, any rate.
    sr : int
    lookup : callable
        ``FingerprintIndex.lookup`` of the catalog's index.
    speeds : sequence of float
        Speed hypotheses (see ``DEFAULT_SPEEDS``).
    calibration : Calibration
        Confidence model and acceptance threshold.
    max_candidates : int
    keep_speeds : int
        Speed hypotheses matched in full after the pre-check (see ``match``).
    peaks : callable, optional
        ``FingerprintIndex.reference_peaks`` of the same index: candidates are
        re-placed and verified peak by peak (see ``match`` and ``verify``). The
        calibration is fitted with ``peaks`` and ``dense``; without them its
        confidences are conservative (only the hash evidence counts: clips with many
        aligned hashes are still accepted, noisy memos mostly not).
    dense : callable, optional
        ``FingerprintIndex.reference_dense`` of the same index (with ``peaks``):
        candidates are also verified frame by frame (``verify_dense``).

    Returns
    -------
    Identification
        ``match`` is None when the best candidate's confidence is below
        ``calibration.accept_confidence`` or the clip is silent.
    """
    fp, pairs = _fingerprint(y, sr=sr, params=QUERY_PARAMS, with_peak_map=peaks is not None)
    if fp.peak_frames.size < 2:
        return Identification(match=None, candidates=(), n_query_hashes=0)
    cands = match(fp, lookup, speeds=speeds, calibration=calibration, max_candidates=max_candidates,
                  keep_speeds=keep_speeds, peaks=peaks, dense=dense, pairs=pairs)
    accepted = cands[0] if cands and cands[0].confidence >= calibration.accept_confidence else None
    return Identification(match=accepted, candidates=tuple(cands), n_query_hashes=fp.n_hashes)
