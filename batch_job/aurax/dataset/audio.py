"""mp3 bytes -> mono waveform at the codec's rate -> EnCodec codes.

MTAT is mono 16 kHz mp3 (nothing above 8 kHz); MusicGen's EnCodec wants 32 kHz, so clips are upsampled with
soxr (librosa's default high-quality resampler). Decoding uses libsndfile's mp3 support (>= 1.1).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import soundfile
import soxr
import torch
from transformers import MusicgenForConditionalGeneration

from ..model import encode_audio

SkipCause = Literal["corrupt", "too-short", "missing", "known-broken"]
SKIP_CAUSES: tuple[SkipCause, ...] = ("corrupt", "too-short", "missing", "known-broken")


@dataclass(frozen=True)
class Decoded:
    waveform: np.ndarray  # float32 [samples], mono, at the requested rate
    seconds: float


@dataclass(frozen=True)
class Skipped:
    cause: SkipCause
    detail: str


def decode_clip(data: bytes, sample_rate: int, min_seconds: float) -> Decoded | Skipped:
    """Decode and resample one clip; a clip that cannot be used is a `Skipped`, never an exception."""
    try:
        audio, source_rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, ValueError) as exc:
        # libsndfile's own words; str(exc) names the in-memory buffer's address, which differs run to run
        return Skipped("corrupt", f"cannot decode: {getattr(exc, 'error_string', None) or exc}")
    seconds = audio.shape[0] / source_rate
    if seconds < min_seconds:
        return Skipped("too-short", f"{seconds:.2f} s < min_clip_seconds {min_seconds}")
    mono = audio.mean(axis=1)
    if not np.isfinite(mono).all():
        return Skipped("corrupt", "decoded samples are not finite")
    if source_rate != sample_rate:
        mono = soxr.resample(mono, source_rate, sample_rate, quality="HQ").astype(np.float32, copy=False)
    return Decoded(waveform=mono, seconds=seconds)


def encode_batch(model: MusicgenForConditionalGeneration, waveforms: list[np.ndarray], hop_length: int,
                 device: torch.device) -> list[np.ndarray]:
    """EnCodec codes, int16 [num_codebooks, frames], one array per waveform.

    Waveforms are zero-padded to the longest in the batch and each clip's codes cut back to its own
    ceil(samples / hop) frames; MTAT clips differ by a few milliseconds, so padding touches at most the
    last frame or two.
    """
    longest = max(len(w) for w in waveforms)
    batch = torch.zeros(len(waveforms), longest, dtype=torch.float32)
    for row, waveform in enumerate(waveforms):
        batch[row, : len(waveform)] = torch.from_numpy(waveform)
    codes = encode_audio(model, batch.to(device)).to("cpu", torch.int16).numpy()
    return [codes[i, :, : math.ceil(len(w) / hop_length)].copy() for i, w in enumerate(waveforms)]
