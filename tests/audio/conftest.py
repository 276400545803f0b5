"""Helpers of the detector and scorer tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile


def write_audio(path: Path, samples: np.ndarray, sample_rate: int, channels: int = 1) -> Path:
    """Write samples in the format the suffix names (wav, flac, mp3, ogg), mono or several channels."""
    data = np.stack([samples] * channels, axis=1) if channels > 1 else samples
    soundfile.write(path, data, sample_rate)
    return path
