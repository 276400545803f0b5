"""A MagnaTagATune in miniature for `aurax local`: `annotations_final.csv` in the published layout (tab
separated, quoted, CRLF, one 0/1 column per tag) and short generated mp3 clips in MTAT's hex folders.

Clips in folders 0-3 train, folder `c` validates (the default `validation_folders`), and a few clips are
there to be rejected (a low tag score, an excluded tag, the excluded test folder `d`), so the selection rules
do real work. The audio is a seeded groove: a decaying low "log drum", shaker noise on sixteenths, a chord.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from aurax_contracts.config import DEFAULT_EXCLUDE_TAGS, DEFAULT_INCLUDE_TAGS

SAMPLE_RATE = 16_000
BPM = 112.0

#: Tags of the generated clips: the eligible ones score >= 3 with the default weights.
_ELIGIBLE_TAGS = [
    {"house", "percussion", "electronic"}, {"techno", "beat", "drums"}, {"deep", "bass", "piano"},
    {"tribal", "bongos", "drums"}, {"jazzy", "piano", "beats"}, {"dance", "funky", "synth", "house"},
]
_REJECTED = [({"piano", "soft"}, "0"), ({"house", "classical"}, "1"), ({"house", "techno"}, "d")]


@dataclass(frozen=True)
class SyntheticClip:
    clip_id: int
    mp3_path: str
    tags: frozenset[str]


def plan_clips(train_clips: int, validation_clips: int) -> list[SyntheticClip]:
    clips: list[SyntheticClip] = []
    for index in range(train_clips + validation_clips):
        folder = "c" if index >= train_clips else "0123"[index % 4]
        tags = frozenset(_ELIGIBLE_TAGS[index % len(_ELIGIBLE_TAGS)])
        clips.append(SyntheticClip(index + 1, f"{folder}/local_artist-album_{folder}-{index:02d}-groove-0-29.mp3",
                                   tags))
    for offset, (tags, folder) in enumerate(_REJECTED):
        clip_id = train_clips + validation_clips + offset + 1
        clips.append(SyntheticClip(clip_id, f"{folder}/local_artist-rejected-{offset:02d}-other-0-29.mp3",
                                   frozenset(tags)))
    return clips


def groove(clip_id: int, seconds: float) -> bytes:
    """A deterministic mp3 of `seconds` at 16 kHz."""
    import numpy as np
    import soundfile

    rng = np.random.default_rng(clip_id)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    beat = 60.0 / BPM
    phase = t % beat
    log_drum = np.sin(2 * np.pi * (55 + 5 * (clip_id % 4)) * t) * np.exp(-phase * 9)
    shaker = rng.standard_normal(t.size) * np.exp(-(t % (beat / 4)) * 60) * 0.15
    chord = sum(np.sin(2 * np.pi * f * t) for f in (261.6, 311.1, 392.0)) * 0.05
    audio = (0.5 * log_drum + shaker + chord).astype(np.float32)
    buffer = io.BytesIO()
    soundfile.write(buffer, np.clip(audio, -1, 1), SAMPLE_RATE, format="MP3")
    return buffer.getvalue()


def annotations_csv(clips: list[SyntheticClip]) -> bytes:
    from aurax.dataset.annotations import AnnotatedClip, format_annotations

    tags = sorted(set(DEFAULT_INCLUDE_TAGS) | set(DEFAULT_EXCLUDE_TAGS) | {"soft", "slow", "fast"})
    return format_annotations(tags, [AnnotatedClip(c.clip_id, c.tags, c.mp3_path) for c in clips])


def write_mtat(root: Path, train_clips: int = 12, validation_clips: int = 4,
               seconds: float = 4.0) -> list[SyntheticClip]:
    """Write the miniature MTAT (annotations and extracted folders) under `root`; returns its clips."""
    clips = plan_clips(train_clips, validation_clips)
    root.mkdir(parents=True, exist_ok=True)
    (root / "annotations_final.csv").write_bytes(annotations_csv(clips))
    for clip in clips:
        path = root / clip.mp3_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(groove(clip.clip_id, seconds))
    return clips


def eligible(clips: list[SyntheticClip]) -> int:
    """How many clips the default selection rules keep (what `target_clips` should be)."""
    return len([c for c in clips if "rejected" not in c.mp3_path])
