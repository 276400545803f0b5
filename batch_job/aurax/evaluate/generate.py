"""Generating the evaluation clips: the same prompts and seeds for both arms, one clip per seed."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
from transformers import MusicgenForConditionalGeneration, PreTrainedTokenizerBase

from aurax_contracts.config import EvaluationConfig

from ..model import codec_info

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipSpec:
    index: int
    prompt: str
    seed: int


def clip_specs(evaluation: EvaluationConfig) -> list[ClipSpec]:
    """`clips_per_model` clips: prompts cycled, seed = evaluation.seed + clip index."""
    prompts = evaluation.prompts
    return [ClipSpec(i, prompts[i % len(prompts)], evaluation.seed + i)
            for i in range(evaluation.clips_per_model)]


def generate_clip(model: MusicgenForConditionalGeneration, tokenizer: PreTrainedTokenizerBase, spec: ClipSpec,
                  seconds: float, guidance_scale: float, device: torch.device) -> tuple[np.ndarray, int]:
    """One mono clip of `seconds` at the codec's rate. Seeding per clip (not per batch) makes each clip
    reproducible on its own and identical in randomness between the arms."""
    codec = codec_info(model)
    # The delay pattern spends num_codebooks - 1 steps before the first full frame.
    new_tokens = math.ceil(seconds * codec.frame_rate) + codec.num_codebooks - 1
    inputs = tokenizer([spec.prompt], return_tensors="pt", padding=True).to(device)
    torch.manual_seed(spec.seed)
    with torch.inference_mode():
        audio = model.generate(**inputs, do_sample=True, guidance_scale=guidance_scale,
                               max_new_tokens=new_tokens)
    samples = audio[0].float().mean(dim=0).cpu().numpy()[: int(round(seconds * codec.sample_rate))]
    if not np.all(np.isfinite(samples)):
        log.warning("clip %d (seed %d) has non-finite samples; they are zeroed (a known MusicGen guidance "
                    "issue on some checkpoints)", spec.index, spec.seed)
        samples = np.nan_to_num(samples, nan=0.0, posinf=0.0, neginf=0.0)
    return samples.astype(np.float32), codec.sample_rate
