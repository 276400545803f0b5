"""`aurax generate`: clips from a checkpoint or the base model into a folder, through the evaluation's code.

Clip k has `prompts[k // len(seeds)]` and `seeds[k % len(seeds)]`. A clip with the prompt, seed, length and
sampling settings of an evaluation clip is that clip again (`generate.py`: one random stream per clip), so an
evaluation can be listened to, audited or extended clip by clip.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from transformers import MusicgenForConditionalGeneration, PreTrainedTokenizerBase

from aurax_contracts.layout import join

from .. import storage
from ..audio.config import AnalysisConfig
from ..audio.io import encode_wav
from ..audio.scorer import score
from .generate import ClipGenerator, ClipSpec, SamplingSettings

log = logging.getLogger(__name__)

INDEX_NAME = "clips.json"


@dataclass(frozen=True)
class WrittenClip:
    file: str
    """Relative to the output folder."""
    prompt: str
    seed: int
    finite: bool
    score: float | None
    """AURA-X score (None for a clip with NaN/Inf generation)."""
    authentic: bool


def folder_specs(prompts: Sequence[str], seeds: Sequence[int]) -> list[ClipSpec]:
    return [ClipSpec(k, prompt, "amapiano", seed)
            for k, (prompt, seed) in enumerate((p, s) for p in prompts for s in seeds)]


def generate_to_folder(model: MusicgenForConditionalGeneration, tokenizer: PreTrainedTokenizerBase,
                       prompts: Sequence[str], seeds: Sequence[int], settings: SamplingSettings, out_uri: str,
                       *, model_name: str, device: torch.device, precision: str = "auto", max_batch_size: int = 64,
                       analysis: AnalysisConfig | None = None, threshold: float = 80.0
                       ) -> tuple[list[WrittenClip], str]:
    """Generate every prompt x seed, write `{k:04d}-seed{seed}.wav` and `clips.json` (the settings and each
    clip's prompt, seed and score) under `out_uri`. Returns the clips and the text of `clips.json`."""
    analysis = analysis or AnalysisConfig()
    generator = ClipGenerator(model, tokenizer, settings, device, precision, max_batch_size)
    written = []
    for batch in generator.batches(folder_specs(prompts, seeds)):
        for clip in batch:
            name = f"{clip.spec.index:04d}-seed{clip.spec.seed}.wav"
            storage.write_bytes(join(out_uri, name), encode_wav(clip.samples, clip.sample_rate), "audio/wav")
            result = score(clip.samples, clip.sample_rate, analysis, threshold=threshold) if clip.finite else None
            written.append(WrittenClip(name, clip.spec.prompt, clip.spec.seed, clip.finite,
                                       round(result.score, 2) if result else None,
                                       bool(result and result.authentic)))
            log.info("%s: %s (seed %d)%s", name, clip.spec.prompt, clip.spec.seed,
                     f", score {result.score:.1f}" if result else ", NaN/Inf generation")
    index = {"model": model_name, "settings": asdict(settings), "precision": generator.precision,
             "batch_size": generator.batch_size, "score_threshold": threshold,
             "clips": [asdict(c) for c in written]}
    text = json.dumps(index, indent=2)
    storage.write_text(join(out_uri, INDEX_NAME), text, "application/json")
    return written, text
