"""Reading audio for the detector and scorer (any rate, mono or stereo, wav/flac/mp3/ogg) and writing wav."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import soundfile

from .. import storage
from ..errors import InputError

SUPPORTED = "wav, flac, mp3 or ogg"


class AudioFileError(InputError):
    """An audio file is unreadable, empty or not audio; the message names the file and the fix."""


@dataclass(frozen=True)
class Audio:
    samples: np.ndarray  # mono float32 in [-1, 1]
    sample_rate: int
    channels: int
    """Channels in the file (the samples are their average)."""


def decode_audio(data: bytes, name: str) -> Audio:
    """Decode file bytes; stereo and multichannel audio is averaged to mono."""
    if not data:
        raise AudioFileError(f"{name}: the file is empty (0 bytes); give a {SUPPORTED} file with audio in it")
    try:
        samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        reason = getattr(exc, "error_string", None) or str(exc)
        message = f"{name}: cannot decode it as audio ({reason}); give a {SUPPORTED} file"
        raise AudioFileError(message) from exc
    if samples.shape[0] == 0:
        raise AudioFileError(f"{name}: the file holds no audio samples; give a {SUPPORTED} file with audio")
    mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    if not np.all(np.isfinite(mono)):
        raise AudioFileError(f"{name}: the audio contains NaN or infinite samples; re-export it")
    return Audio(np.ascontiguousarray(mono, dtype=np.float32), int(rate), int(samples.shape[1]))


def load_audio(uri: str) -> Audio:
    """Read a file (a path, file:// or s3:// URI) and decode it."""
    try:
        data = storage.read_bytes(uri)
    except storage.StorageError as exc:
        raise AudioFileError(str(exc)) from exc
    return decode_audio(data, uri)


def encode_wav(samples: np.ndarray, sample_rate: int) -> bytes:
    """16-bit PCM wav bytes of mono float samples (clipped to [-1, 1])."""
    buffer = io.BytesIO()
    soundfile.write(buffer, np.clip(samples, -1.0, 1.0), sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()
