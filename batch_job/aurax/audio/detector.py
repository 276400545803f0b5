"""The Amapiano log-drum detector.

A log drum is a pitched percussive bass: a short knock decaying into a near-pure tone with its fundamental at
50-150 Hz, a -30 dB decay of 300-600 ms, and a steep spectral roll-off above the fundamental. A "sub-bass"
detector confuses it with kicks (fast pitch sweep, < 200 ms decay, click), 808s (> 1 s decay), sustained bass,
low stationary tones and noise; measuring all three properties per onset separates them.

Per low-band onset (30-400 Hz, 4 kHz analysis rate, 64 ms Hann windows every 10 ms):
- fundamental: strongest peak 20-400 Hz of the event's body (20-80 ms after its peak) with what sounded just
  before the onset subtracted, so sustained keys or a ringing previous note do not pull it;
- decay: the slope (dB/ms) of the fundamental's level from 20 ms after the peak until the next onset (or until
  it sinks to the pre-onset background), extrapolated to -30 dB. Extrapolating the early decay is what lets a
  bassline of overlapping notes be measured, and it is unbiased for exponential decays because the window's
  smearing only shifts an exponential in time. (Subtracting the background would bias it: a previous note of
  the same pitch keeps decaying under the new one.)
- roll-off: for harmonics 2-4 of the fundamental, (level_k - level_1) / log2(k) over the first 80 ms after the
  peak, background subtracted; the shallowest of them is reported, so one strong harmonic (a sawtooth bass, a
  piano, a click) fails the event.
A log drum struck together with a kick is usually not counted (the kick's sweep fills the harmonics); the
clip verdict rests on the other notes of the bassline, which in Amapiano mostly fall off the kick.
An event counts when all three lie inside `DetectorConfig`'s ranges; the clip has log drums when at least
`min_events` events count.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.signal import find_peaks

from .config import DetectorConfig
from .spectral import band_bins, hann, parabolic_peak, power_db, resample, stft_power

ANALYSIS_SR = 4000
WINDOW = 256  # 64 ms: resolves 50 Hz from 100 Hz and keeps the decay frames short
HOP = 40  # 10 ms
N_FFT = 512  # zero-padded to 7.8 Hz bins; parabolic interpolation refines the peak further
BIN_HZ = ANALYSIS_SR / N_FFT
FRAME_S = HOP / ANALYSIS_SR
LOW_BAND_HZ = (30.0, 400.0)
F0_SEARCH_HZ = (20.0, 400.0)
#: dB of a full-scale sine in one frame's one-sided power spectrum (sum over bins), for dBFS levels.
FULL_SCALE_DB = float(10 * np.log10(N_FFT * float((hann(WINDOW) ** 2).sum()) / 4))
FLOOR_DB = 80.0  # levels more than this below the clip's loudest are treated as silence
MIN_FIT_FRAMES = 4
MAX_TRACK_FRAMES = 150  # 1.5 s: beyond any log drum's decay
TRACK_TOLERANCE = 0.25  # the fundamental may move +-25 % after the body (end of a glide)
UNBOUNDED_DECAY_MS = 10_000.0  # reported for a sound that does not decay at all
LEAD_IN_FRAMES = 6  # silence put before the clip, so that a note at t=0 is an onset like any other


class AudioTooShortError(ValueError):
    """The clip is shorter than `DetectorConfig.min_seconds`."""


@dataclass(frozen=True)
class LogDrumEvent:
    time_s: float
    f0_hz: float
    decay_ms: float
    rolloff_db_per_oct: float


@dataclass(frozen=True)
class Candidate:
    """One low-band onset and its three measurements (whether or not it counted)."""

    time_s: float
    f0_hz: float
    decay_ms: float
    rolloff_db_per_oct: float
    accepted: bool

    def as_event(self) -> LogDrumEvent:
        return LogDrumEvent(self.time_s, self.f0_hz, self.decay_ms, self.rolloff_db_per_oct)


@dataclass(frozen=True)
class Detection:
    log_drum: bool
    confidence: float
    events: list[LogDrumEvent]
    candidates: list[Candidate] = field(repr=False)
    duration_s: float

    def to_json(self, path: str) -> dict[str, object]:
        """The `aurax detect --json` line for this clip."""
        return {"path": path, "log_drum": self.log_drum, "confidence": round(self.confidence, 4),
                "events": [{k: round(v, 3) for k, v in asdict(e).items()} for e in self.events]}


def analysis_signal(samples: np.ndarray, sr: int) -> np.ndarray:
    """Mono samples at any rate -> the detector's 4 kHz analysis signal."""
    return resample(samples, sr, ANALYSIS_SR)


def detect(samples: np.ndarray, sr: int, config: DetectorConfig | None = None) -> Detection:
    """Detect log drums in mono `samples` at `sr` Hz."""
    config = config or DetectorConfig()
    duration = samples.size / sr
    if duration < config.min_seconds:
        raise AudioTooShortError(f"audio is {duration:.3f} s long; the detector needs at least "
                                 f"{config.min_seconds} s (DetectorConfig.min_seconds)")
    signal = np.concatenate([np.zeros(LEAD_IN_FRAMES * HOP, dtype=np.float32), analysis_signal(samples, sr)])
    power = stft_power(signal, WINDOW, HOP, N_FFT)
    candidates = _measure_onsets(power, config)
    events = [c.as_event() for c in candidates if c.accepted]
    confidence = min(1.0, len(events) / config.full_confidence_events)
    return Detection(len(events) >= config.min_events, confidence, events, candidates, duration)


def low_band_onsets(power: np.ndarray, config: DetectorConfig) -> np.ndarray:
    """Frames where the 30-400 Hz band starts a new sound loud enough to matter."""
    band = power[:, band_bins(*LOW_BAND_HZ, BIN_HZ)]
    level = power_db(band.sum(axis=1)) - FULL_SCALE_DB
    loudest = float(level.max())
    if loudest < config.silence_dbfs:
        return np.empty(0, dtype=int)
    bins_db = np.maximum(power_db(band) - FULL_SCALE_DB, loudest - FLOOR_DB)
    flux = np.zeros(level.size)
    flux[2:] = np.maximum(bins_db[2:] - bins_db[:-2], 0.0).sum(axis=1)
    peaks, _ = find_peaks(flux, distance=8)
    keep = []
    for t in peaks:  # find_peaks never returns the first or last frame: both slices are non-empty
        top = float(level[t:t + 6].max())
        rise = top - float(level[max(0, t - 6):t].min())
        quietest = max(loudest - config.event_range_db, config.silence_dbfs)
        if rise >= config.min_onset_rise_db and top >= quietest:
            keep.append(t)
    return np.asarray(keep, dtype=int)


def _measure_onsets(power: np.ndarray, config: DetectorConfig) -> list[Candidate]:
    onsets = low_band_onsets(power, config)
    if onsets.size == 0:
        return []
    n_frames = power.shape[0]
    low = power[:, band_bins(*LOW_BAND_HZ, BIN_HZ)].sum(axis=1)
    search = band_bins(*F0_SEARCH_HZ, BIN_HZ)
    ends = np.append(onsets[1:], n_frames)
    out = []
    for onset, next_onset in zip(onsets, ends, strict=True):
        candidate = _measure_one(power, low, int(onset), int(next_onset), search, config)
        if candidate is not None:
            out.append(candidate)
    return out


def _measure_one(power: np.ndarray, low: np.ndarray, onset: int, next_onset: int, search: slice,
                 config: DetectorConfig) -> Candidate | None:
    n_frames = power.shape[0]
    peak = onset + int(np.argmax(low[onset:max(onset + 1, min(onset + 8, next_onset))]))
    # What sounded 20-60 ms before the onset, subtracted so that sustained sounds do not pull the measures.
    background = power[max(0, onset - 6):onset - 2].mean(axis=0) if onset >= 3 else np.zeros(power.shape[1])
    body_end = max(peak + 3, min(peak + 8, next_onset - 2))
    body = np.maximum(power[peak + 2:body_end].mean(axis=0) - background, 0.0) if peak + 2 < n_frames \
        else np.maximum(power[peak] - background, 0.0)
    region = power_db(body[search])
    k = int(np.argmax(region))
    f0_bin = search.start + parabolic_peak(region, k)
    f0 = f0_bin * BIN_HZ
    time_s = max(0.0, (onset - LEAD_IN_FRAMES) * FRAME_S)
    decay = _decay_ms(power, background, peak, min(next_onset - 3, peak + MAX_TRACK_FRAMES), f0_bin)
    if decay is None:
        return None  # masked too soon after its peak to measure
    attack_end = max(peak + 1, min(peak + 8, next_onset - 2))
    attack = np.maximum(power[peak:attack_end].mean(axis=0) - background, 0.0)
    rolloff = _rolloff_db_per_oct(attack, f0_bin)
    accepted = (config.f0_min_hz <= f0 <= config.f0_max_hz
                and config.decay_min_ms <= decay <= config.decay_max_ms
                and rolloff <= config.max_rolloff_db_per_oct)
    return Candidate(time_s, f0, decay, rolloff, accepted)


def _decay_ms(power: np.ndarray, background: np.ndarray, peak: int, end: int, f0_bin: float) -> float | None:
    lo = max(1, int(np.floor(f0_bin * (1 - TRACK_TOLERANCE))))
    hi = max(lo + 1, int(np.ceil(f0_bin * (1 + TRACK_TOLERANCE))) + 1)
    track = power_db(power[peak:max(peak + 1, end), lo:hi].max(axis=1))
    floor = max(float(track[0]) - 35.0, float(power_db(background[lo:hi].max())) + 3.0)
    start = 2  # 20 ms after the peak: past the knock or a simultaneous kick's first burst
    below = np.nonzero(track[start:] < floor)[0]
    stop = start + (int(below[0]) if below.size else track.size - start)
    if stop - start < MIN_FIT_FRAMES:
        # Too few frames above the background: either it vanished at once (decay shorter than the fit window)
        # or the next onset masks it. A vanishing sound is measurably short; a masked one is unknown.
        if below.size and track.size > start:
            return 1000.0 * FRAME_S * (start + below[0]) * 30.0 / max(float(track[0] - floor), 1.0)
        return None
    y = track[start:stop].astype(np.float64)
    x = np.arange(y.size, dtype=np.float64) - (y.size - 1) / 2.0
    slope = float(x @ (y - y.mean()) / (x @ x)) / (FRAME_S * 1000.0)  # least-squares dB per ms
    return min(UNBOUNDED_DECAY_MS, 30.0 / -slope) if slope < 0 else UNBOUNDED_DECAY_MS


def _rolloff_db_per_oct(spectrum: np.ndarray, f0_bin: float) -> float:
    levels = []
    for k in (1, 2, 3, 4):
        centre = k * f0_bin
        width = max(1.0, 0.03 * centre)
        lo, hi = int(np.floor(centre - width)), int(np.ceil(centre + width)) + 1
        if hi > spectrum.size:
            break
        levels.append(float(power_db(spectrum[lo:hi].max() + 1e-20)))
    if len(levels) < 2:
        return 0.0
    fundamental = levels[0]
    slopes = [(max(level, fundamental - FLOOR_DB) - fundamental) / np.log2(k)
              for k, level in enumerate(levels[1:], start=2)]
    return float(max(slopes))
