"""Small, fast signal front-end shared by the detector and the scorer (numpy/scipy only)."""

from __future__ import annotations

from functools import lru_cache
from math import gcd

import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import firwin, resample_poly


@lru_cache(maxsize=32)
def _lowpass(up: int, down: int) -> np.ndarray:
    # A short anti-alias filter is enough: everything the analyses read lies well below the new Nyquist
    # (the detector reads up to 1.6 kHz of its 2 kHz), and 10 taps per phase keep resampling cheap.
    taps = 10 * max(up, down) + 1
    return (firwin(taps, 0.9 / max(up, down), window=("kaiser", 6.0)) * up).astype(np.float32)


def resample(x: np.ndarray, sr: int, target_sr: int) -> np.ndarray:
    """Polyphase resampling of a mono float signal from `sr` to `target_sr`."""
    if sr == target_sr:
        return x.astype(np.float32, copy=False)
    g = gcd(sr, target_sr)
    up, down = target_sr // g, sr // g
    resampled = resample_poly(x.astype(np.float32, copy=False), up, down, window=_lowpass(up, down))
    return resampled.astype(np.float32, copy=False)


@lru_cache(maxsize=8)
def hann(n: int) -> np.ndarray:
    return np.hanning(n + 2)[1:-1].astype(np.float32)


def stft_power(x: np.ndarray, n_window: int, hop: int, n_fft: int | None = None) -> np.ndarray:
    """Power spectrogram, frames x bins, frame i centred at sample i*hop (the signal is zero-padded)."""
    padded = np.pad(x.astype(np.float32, copy=False), (n_window // 2, n_window // 2))
    if padded.size < n_window:
        padded = np.pad(padded, (0, n_window - padded.size))
    frames = sliding_window_view(padded, n_window)[::hop] * hann(n_window)
    spectrum = scipy.fft.rfft(frames, n=n_fft or n_window, axis=1)  # float32 in, complex64 out
    return (spectrum.real ** 2 + spectrum.imag ** 2).astype(np.float32)


def band_bins(low_hz: float, high_hz: float, bin_hz: float) -> slice:
    """The spectrum bins whose centres lie in [low_hz, high_hz]."""
    return slice(int(np.ceil(low_hz / bin_hz)), int(np.floor(high_hz / bin_hz)) + 1)


def power_db(power: np.ndarray, floor: float = 1e-12) -> np.ndarray:
    return 10.0 * np.log10(np.maximum(power, floor))


def parabolic_peak(values: np.ndarray, index: int) -> float:
    """Sub-bin position of the peak at `index` (parabola through it and its neighbours)."""
    if index <= 0 or index >= values.size - 1:
        return float(index)
    left, centre, right = values[index - 1], values[index], values[index + 1]
    denom = left - 2 * centre + right
    return float(index + 0.5 * (left - right) / denom) if denom < 0 else float(index)
