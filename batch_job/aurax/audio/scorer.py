"""The AURA-X cultural score: 0-100 from five weighted components, each 0..1 (docs/scoring.md).

- log_drum: mean of the detector's confidence and the event rate (events per second / `log_drum_rate_hz`);
- tempo: 1 inside the Amapiano range (108-118 BPM), falling to 0 `tempo_falloff_bpm` outside it; the tempo is
  read octave-free (a track felt at 56 or 224 BPM counts as 112), as beat trackers often halve or double, and
  only when the pulse stands clearly above what pulse-less audio gives (`tempo_min_clarity`);
- shakers: regularity of the 5-8 kHz envelope at the sixteenth-note lag of that tempo (rolling shakers/hats);
- low_end: energy below 250 Hz over the energy above it (dB) inside the bass-led range Amapiano mixes sit in;
- keys: share of sounding frames with a chord (3+ pitch classes as clear spectral peaks in 200-2000 Hz).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import median_filter, uniform_filter1d

from .config import AnalysisConfig, ScoreConfig
from .detector import Detection, detect
from .spectral import band_bins, power_db, resample, stft_power

SCORE_SR = 16000
WINDOW = 512  # 32 ms
HOP = 160  # 10 ms
FRAME_S = HOP / SCORE_SR
BIN_HZ = SCORE_SR / WINDOW
LOW_END_HZ = (30.0, 250.0)
KEYS_SR = 8000
KEYS_WINDOW = 1024  # 128 ms: semitones apart at 200 Hz
KEYS_HOP = 320  # 40 ms
KEYS_PEAK_OVER_MEDIAN_DB = 15.0  # a tonal peak stands this far above the band's median (noise never does)
KEYS_PEAK_RANGE_DB = 20.0  # and within this of the frame's strongest peak
KEYS_LOWEST_ROOT_HZ = 40.0  # peaks from here up may be the fundamental whose harmonics fall in the keys band
HARMONIC_TOLERANCE = 0.03  # within 3 % (half a semitone) of k x a louder, lower peak: its k-th harmonic
TEMPO_OCTAVE = (80.0, 160.0)
#: (multiple of the beat lag, weight) summed into a tempo candidate's salience.
SALIENCE_LAGS = ((0.5, 0.5), (1.0, 1.0), (2.0, 0.5))
#: Frames of the running median taken out of the onset envelope before its autocorrelation, and of the window
#: its local power is measured over: the longest lag a candidate uses (two beats at 80 BPM, 1.5 s), odd.
PULSE_BASELINE_FRAMES = 151
COMPONENTS = ("log_drum", "tempo", "shakers", "low_end", "keys")


@dataclass(frozen=True)
class ScoreResult:
    score: float
    authentic: bool
    components: dict[str, float]
    tempo_bpm: float | None
    detection: Detection

    def to_json(self, path: str) -> dict[str, object]:
        """The `aurax score --json` line for this clip."""
        return {"path": path, "score": round(self.score, 2), "authentic": self.authentic,
                "components": {k: round(v, 4) for k, v in self.components.items()}}


def score(samples: np.ndarray, sr: int, config: AnalysisConfig | None = None,
          threshold: float | None = None) -> ScoreResult:
    """Score mono `samples`; `threshold` overrides `config.score.authentic_threshold`."""
    config = config or AnalysisConfig()
    detection = detect(samples, sr, config.detector)
    cfg = config.score
    audio = resample(samples, sr, SCORE_SR)
    power = stft_power(audio, WINDOW, HOP)
    tempo = estimate_tempo(power, cfg.tempo_min_clarity, cfg.tempo_min_pulse_db)
    components = {
        "log_drum": _log_drum_component(detection, cfg),
        "tempo": tempo_component(tempo, cfg) if tempo is not None else 0.0,
        "shakers": _shaker_component(power, tempo, cfg) if tempo is not None else 0.0,
        "low_end": _low_end_component(power, cfg),
        "keys": _keys_component(resample(audio, SCORE_SR, KEYS_SR), cfg),
    }
    weights = cfg.weights.model_dump()
    total = 100.0 * sum(weights[k] * components[k] for k in COMPONENTS) / sum(weights.values())
    limit = cfg.authentic_threshold if threshold is None else threshold
    return ScoreResult(total, total >= limit, components, tempo, detection)


def _log_drum_component(detection: Detection, cfg: ScoreConfig) -> float:
    if not detection.events:
        return 0.0
    density = min(1.0, len(detection.events) / detection.duration_s / cfg.log_drum_rate_hz)
    return 0.5 * detection.confidence + 0.5 * density


def onset_envelope(power: np.ndarray) -> np.ndarray:
    """Positive spectral flux in dB (bins more than 80 dB below the loudest are ignored)."""
    db = power_db(power)
    db = np.maximum(db, db.max() - 80.0)
    flux = np.zeros(power.shape[0])
    flux[1:] = np.maximum(db[1:] - db[:-1], 0.0).mean(axis=1)
    return flux


def _autocorrelation(x: np.ndarray) -> np.ndarray:
    x = x - x.mean()
    n = x.size
    spectrum = np.fft.rfft(x, 2 * n)
    acf = np.fft.irfft(spectrum.real ** 2 + spectrum.imag ** 2)[:n]
    return acf / acf[0] if acf[0] > 0 else np.zeros(n)


def estimate_tempo(power: np.ndarray, min_clarity: float, min_pulse_db: float) -> float | None:
    """Octave-free tempo in [80, 160) BPM from the onset envelope's autocorrelation, or None without a pulse.

    The envelope's running median (`PULSE_BASELINE_FRAMES`) is taken out first: a level that changes slowly or
    in steps (noise that stops or starts, a fade in from silence, bursts) would otherwise correlate at every
    lag and pass for a pulse, while onsets stand above the median and stay. Each candidate's salience sums the
    autocorrelation at its beat, half-beat and two-beat lags, so the answer does not depend on which metrical
    level is loudest. Pulse-less audio (noise of any colour, with or without silent stretches, drones,
    sustained chords, pads, silence) still has a best candidate: its salience is the maximum of near-zero
    autocorrelations whose standard deviation is sqrt(sum of squared weights / N) (`pulse_noise_floor`). N is
    the envelope's effective length (`effective_frames`): its frame count when it is equally busy throughout,
    fewer when silent stretches leave part of it empty (Bartlett's formula for independent values of changing
    variance; Box & Jenkins, "Time Series Analysis"). Measured on noise the peak stays below 4.5 of those units
    (held chords and pad swells go higher and fail strength, below); synthesised grooves reach 15-60. A peak
    below `min_clarity` units is no tempo.

    The autocorrelation is blind to scale, so a pulse must also be strong: the root of the envelope's weighted
    mean autocovariance at the best candidate's lags (its periodic part, in dB) at least `min_pulse_db`
    (sustained chords whose partials beat give a periodic envelope of under 0.2 dB; grooves 1.5-3 dB).
    """
    envelope = onset_envelope(power)
    if envelope.size < 4:
        return None
    pulse = envelope - median_filter(envelope, size=PULSE_BASELINE_FRAMES, mode="nearest")
    if not np.any(pulse > 0):
        return None
    acf = _autocorrelation(pulse)
    candidates = np.arange(TEMPO_OCTAVE[0], TEMPO_OCTAVE[1], 0.25)
    lags = 60.0 / candidates / FRAME_S
    salience = np.zeros_like(candidates)
    for factor, weight in SALIENCE_LAGS:
        positions = lags * factor
        valid = positions < acf.size - 1
        salience[valid] += weight * np.interp(positions[valid], np.arange(acf.size), acf)
    peak = float(salience.max())
    if peak < min_clarity * pulse_noise_floor(effective_frames(pulse)):
        return None
    total_weight = sum(weight for _, weight in SALIENCE_LAGS)
    if np.sqrt(peak * float(pulse.var()) / total_weight) < min_pulse_db:
        return None
    return float(candidates[int(np.argmax(salience))])


def effective_frames(pulse: np.ndarray) -> float:
    """(sum v)^2 / sum v^2 of the local power v (mean square over `PULSE_BASELINE_FRAMES`): the frame count for
    an envelope equally busy throughout, the busy part's length when the rest is silent."""
    local = uniform_filter1d(pulse.astype(np.float64) ** 2, size=PULSE_BASELINE_FRAMES, mode="nearest")
    total = float(local.sum())
    return total * total / float(np.square(local).sum()) if total > 0 else 0.0


def pulse_noise_floor(frames: float) -> float:
    """Standard deviation of a candidate's salience for an onset envelope without a pulse (`frames` long)."""
    return float(np.sqrt(sum(weight ** 2 for _, weight in SALIENCE_LAGS) / max(frames, 1.0)))


def tempo_component(bpm: float, cfg: ScoreConfig) -> float:
    """1 inside [tempo_min_bpm, tempo_max_bpm] (octave-folded), linear to 0 `tempo_falloff_bpm` outside."""
    best = 0.0
    for folded in (bpm / 2, bpm, bpm * 2):
        distance = max(cfg.tempo_min_bpm - folded, folded - cfg.tempo_max_bpm, 0.0)
        best = max(best, 1.0 - distance / cfg.tempo_falloff_bpm)
    return float(np.clip(best, 0.0, 1.0))


def _shaker_component(power: np.ndarray, bpm: float, cfg: ScoreConfig) -> float:
    band = power[:, band_bins(*cfg.shaker_band_hz, BIN_HZ)].sum(axis=1)
    if band.sum() <= 1e-6 * power.sum() or band.size < 8:
        return 0.0
    acf = _autocorrelation(np.sqrt(band))
    sixteenth = 60.0 / bpm / 4 / FRAME_S
    lag = int(round(sixteenth))
    if lag + 2 >= acf.size:
        return 0.0
    regularity = float(acf[max(1, lag - 1):lag + 2].max())
    span = cfg.shaker_full_regularity - cfg.shaker_min_regularity
    return float(np.clip((regularity - cfg.shaker_min_regularity) / span, 0.0, 1.0))


def _low_end_component(power: np.ndarray, cfg: ScoreConfig) -> float:
    low = float(power[:, band_bins(*LOW_END_HZ, BIN_HZ)].sum())
    rest = float(power[:, band_bins(LOW_END_HZ[1] + BIN_HZ, SCORE_SR / 2, BIN_HZ)].sum())
    if low <= 0 or rest <= 0:
        return 0.0
    balance = 10.0 * np.log10(low / rest)
    lowest, highest = cfg.low_end_balance_db
    distance = max(lowest - balance, balance - highest, 0.0)
    return float(np.clip(1.0 - distance / cfg.low_end_falloff_db, 0.0, 1.0))


def _keys_component(audio: np.ndarray, cfg: ScoreConfig) -> float:
    power = stft_power(audio, KEYS_WINDOW, KEYS_HOP)
    bin_hz = KEYS_SR / KEYS_WINDOW
    band = band_bins(*cfg.keys_band_hz, bin_hz)
    level = power_db(power[:, band].sum(axis=1))
    sounding = level >= max(float(level.max()) - 40.0, -40.0)
    if not sounding.any():
        return 0.0
    chord = _chord_frames(power, band, bin_hz) & sounding
    return float(min(1.0, float(chord[sounding].mean()) / cfg.keys_full_fraction))


def _spectral_tilt(db: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """Per frame, the least-squares line of level (dB) against log frequency: the spectrum's tilt (0 dB/octave
    for white noise, -3 for pink, -6 for brown), evaluated at each bin."""
    octaves = np.log2(freqs)
    design = np.stack([np.ones_like(octaves), octaves], axis=1)
    coefficients, *_ = np.linalg.lstsq(design, db.T, rcond=None)
    return (design @ coefficients).T


def _chord_frames(power: np.ndarray, band: slice, bin_hz: float) -> np.ndarray:
    """Per frame: do 3+ pitch classes sound as separate notes in `band`?

    A note is a clear spectral peak in the band (`KEYS_PEAK_OVER_MEDIAN_DB` over the band's median once the
    spectrum's tilt is taken out, within
    `KEYS_PEAK_RANGE_DB` of its strongest) that is not a harmonic of a louder, lower peak: a single note's
    partials (2f, 3f, 5f: octave, fifth, third) would otherwise spell a chord, so a lone sawtooth bass or
    piano note would score as keys.
    """
    wide = slice(max(1, min(band.start, int(np.ceil(KEYS_LOWEST_ROOT_HZ / bin_hz)))), band.stop)
    db = power_db(power[:, wide])
    in_band = np.arange(wide.start + 1, wide.stop - 1) >= band.start  # per peak position (centre bins)
    left, centre, right = db[:, :-2], db[:, 1:-1], db[:, 2:]
    is_peak = (centre > left) & (centre >= right)
    floor = _spectral_tilt(db, np.arange(wide.start, wide.stop) * bin_hz)
    level = db - floor  # over the spectrum's tilt, so a 1/f or 1/f^2 noise has no "peaks" at its low end
    median = np.median(level[:, np.arange(wide.start, wide.stop) >= band.start], axis=1, keepdims=True)
    tonal = is_peak & (level[:, 1:-1] >= median + KEYS_PEAK_OVER_MEDIAN_DB)
    band_max = np.where(in_band, centre, -np.inf).max(axis=1, keepdims=True)
    strong = tonal & in_band & (centre >= band_max - KEYS_PEAK_RANGE_DB)
    curvature = left - 2 * centre + right
    offset = np.where(curvature < 0, 0.5 * (left - right) / np.where(curvature < 0, curvature, -1.0), 0.0)
    freqs = (np.arange(wide.start + 1, wide.stop - 1) + offset) * bin_hz  # parabolic peak frequency
    chord = np.zeros(power.shape[0], dtype=bool)
    for row in np.nonzero(strong.sum(axis=1) >= 3)[0]:
        peaks = np.nonzero(tonal[row])[0]  # ascending frequency; roots below the band count too
        f, loudness = freqs[row, peaks], centre[row, peaks]
        ratio = f[None, :] / f[:, None]  # [root, peak]
        multiple = np.round(ratio)
        harmonic = ((multiple >= 2) & (np.abs(ratio - multiple) <= HARMONIC_TOLERANCE * multiple)
                    & (loudness[:, None] >= loudness[None, :])).any(axis=0)
        notes = f[strong[row, peaks] & ~harmonic]
        chord[row] = np.unique(np.round(12 * np.log2(notes / 440.0)).astype(int) % 12).size >= 3
    return chord
