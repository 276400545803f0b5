"""Batched MusicGen generation in which each clip is reproducible on its own.

Clip i's audio depends only on the weights, its prompt, its seed, its length, the guidance scale and the
sampling settings, never on the batch it ran in: every clip has its own random stream
(`PerClipSampler`), so a clip generated alone, inside a batch of 64, or again after an interrupted
evaluation resumed, is drawn with the same noise.

How: `generate` runs in greedy mode with `PerClipSampler` as a logits processor. For each clip it combines
the conditional and unconditional logits with classifier-free guidance (MusicGen doubles the batch for it),
applies temperature and top-k as transformers' warpers do, adds Gumbel noise from the clip's own
`torch.Generator` and takes the argmax: the Gumbel-max trick, an exact draw from the top-k categorical
distribution (Gumbel 1954; Maddison, Tarlow & Minka 2014, "A* Sampling", NeurIPS). It then hands back
scores whose only finite maximum is the chosen code, the same for both halves of the guidance batch, so that
transformers' own guidance processor, which runs after it, passes the choice through unchanged.

Numerics: on the CPU in fp32 a clip's codes are identical alone or in a batch (tests/evaluate/
test_generate.py); its audio agrees to about 1e-7 (EnCodec's batched convolutions round differently, far
below the written 16-bit PCM's step of 3e-5). On a GPU in half precision the kernels differ by batch shape
at about 1e-3 of a logit, which can flip a near-tie between two codes and let the clip diverge from there;
the evaluation therefore keeps batches fixed by clip index, so a rerun on the same GPU type repeats them.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    MusicgenForConditionalGeneration,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    StoppingCriteriaList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
)

from aurax_contracts.config import EvaluationConfig
from aurax_contracts.evaluation import PromptSet

from ..model import codec_info

log = logging.getLogger(__name__)

#: The chosen code's score and every other code's (finite, so guidance's (cond - uncond) stays 0, not NaN).
_CHOSEN, _OTHER = 0.0, -1e9
#: Fraction of free GPU memory the batch may plan to use (the rest covers what the estimate leaves out).
_MEMORY_SHARE = 0.8
#: EnCodec 32 kHz decoding, per second of audio of one clip, in bytes: its last stages hold ~2M fp32
#: activations per second of audio (64 channels x 32,000 samples), a few alive at once. An estimate: the GPU
#: benchmark (bench/bench_generate.py) prints the measured peak per clip to replace it.
_DECODE_BYTES_PER_AUDIO_SECOND = 32e6


@dataclass(frozen=True)
class ClipSpec:
    """Clip `index` of an arm: clip i of treatment and of control share prompt and seed (a matched pair)."""

    index: int
    prompt: str
    prompt_set: PromptSet
    seed: int


@dataclass(frozen=True)
class SamplingSettings:
    seconds: float
    guidance_scale: float
    top_k: int
    temperature: float

    @classmethod
    def from_config(cls, evaluation: EvaluationConfig) -> SamplingSettings:
        return cls(evaluation.clip_seconds, evaluation.guidance_scale, evaluation.top_k, evaluation.temperature)


@dataclass(frozen=True)
class GeneratedClip:
    spec: ClipSpec
    samples: np.ndarray
    """Mono float32 audio of exactly `seconds` at `sample_rate` (non-finite samples zeroed when `finite` is
    False)."""
    sample_rate: int
    finite: bool
    """False when the guided logits or the decoded audio held NaN/Inf."""
    codes: np.ndarray
    """The sampled codes, (steps, num_codebooks), int64: what makes two clips the same draw."""


def clip_specs(evaluation: EvaluationConfig) -> list[ClipSpec]:
    """`clips_per_model` clips: prompts cycled (`EvaluationConfig.prompt_cycle`: the Amapiano set, then the
    tag-style set), seed = evaluation.seed + index."""
    cycle = evaluation.prompt_cycle()
    return [ClipSpec(i, *cycle[i % len(cycle)], evaluation.seed + i) for i in range(evaluation.clips_per_model)]


class PerClipSampler(LogitsProcessor):
    """Guidance, temperature, top-k and a Gumbel-max draw from each clip's own generator (module docstring).

    `scores` arrive as (clips x codebooks, vocab), or twice that (conditional rows, then unconditional) while
    classifier-free guidance has not been applied yet. Records each step's choice in `codes` and marks a
    clip non-finite when its guided logits hold NaN or +Inf.
    """

    def __init__(self, seeds: Sequence[int], num_codebooks: int, settings: SamplingSettings,
                 device: torch.device) -> None:
        self.generators = [torch.Generator(device).manual_seed(int(seed)) for seed in seeds]
        self.num_codebooks = num_codebooks
        self.settings = settings
        self.codes: list[torch.Tensor] = []
        self.non_finite = torch.zeros(len(seeds), dtype=torch.bool, device=device)
        # transformers' own warpers, in generate()'s order: temperature, then top-k (ties at the k-th kept)
        self.warpers: list[LogitsProcessor] = [TemperatureLogitsWarper(settings.temperature)]
        if settings.top_k > 0:
            self.warpers.append(TopKLogitsWarper(settings.top_k))

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        rows = len(self.generators) * self.num_codebooks
        doubled = scores.shape[0] == 2 * rows
        if not doubled and scores.shape[0] != rows:
            raise ValueError(f"expected {rows} or {2 * rows} rows of logits, got {scores.shape[0]}")
        guided = scores.float()
        if doubled:
            conditional, unconditional = guided.split(rows)
            guided = unconditional + (conditional - unconditional) * self.settings.guidance_scale
        bad = torch.isnan(guided) | torch.isposinf(guided)
        self.non_finite |= bad.view(len(self.generators), -1).any(dim=1)
        guided = guided.masked_fill(bad, -math.inf)
        for warper in self.warpers:
            guided = warper(input_ids, guided)
        uniform = torch.empty_like(guided)
        for i, generator in enumerate(self.generators):
            uniform[i * self.num_codebooks:(i + 1) * self.num_codebooks].uniform_(generator=generator)
        choice = torch.argmax(guided - torch.log(-torch.log(uniform)), dim=-1)
        self.codes.append(choice)
        chosen = torch.full_like(guided, _OTHER).scatter_(1, choice[:, None], _CHOSEN)
        return torch.cat([chosen, chosen]) if doubled else chosen  # type: ignore[return-value]

    def clip_codes(self) -> np.ndarray:
        """(clips, steps, codebooks) of the codes drawn so far."""
        if not self.codes:
            return np.zeros((len(self.generators), 0, self.num_codebooks), dtype=np.int64)
        steps = torch.stack(self.codes, dim=1).view(len(self.generators), self.num_codebooks, -1)
        return steps.transpose(1, 2).cpu().numpy()


class StopWhen(StoppingCriteria):
    """Ends `generate` within one decoding step once `should_stop()` is true (an interruption)."""

    def __init__(self, should_stop: Callable[[], bool]) -> None:
        self.should_stop = should_stop

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: object) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.should_stop(), dtype=torch.bool,  # type: ignore[return-value]
                          device=input_ids.device)


class Interrupted(Exception):
    """Generation stopped early because an interruption was asked for; the batch's clips are incomplete."""


def resolve_generation_precision(requested: str, device: torch.device) -> str:
    """`auto` is bf16 on GPUs that have it natively, fp16 on the others (T4); the CPU always uses fp32."""
    if device.type != "cuda":
        return "fp32"
    bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
    if requested == "auto":
        return "bf16" if bf16 else "fp16"
    if requested == "bf16" and not bf16:
        log.warning("evaluation.precision bf16 asked for, but this GPU has no native bf16 (e.g. a T4): using fp16")
        return "fp16"
    return requested


_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def prepare_model(model: MusicgenForConditionalGeneration, device: torch.device,
                  precision: str) -> MusicgenForConditionalGeneration:
    """Move to `device`; the text encoder and decoder in `precision`, EnCodec kept in fp32 (audio quality)."""
    model.to(device)
    for name, child in model.named_children():
        if name != "audio_encoder":
            child.to(_DTYPES[precision])
    return model.eval()


def per_clip_bytes(model: MusicgenForConditionalGeneration, settings: SamplingSettings, precision: str) -> float:
    """Estimated GPU memory of one clip: the decoder's key/value cache (both halves of the guidance batch)
    plus EnCodec decoding its audio."""
    decoder = model.config.decoder
    steps = new_tokens(model, settings.seconds) + 1
    halves = 2 if settings.guidance_scale > 1 else 1
    element = torch.finfo(_DTYPES[precision]).bits // 8
    cache = decoder.num_hidden_layers * 2 * halves * steps * decoder.hidden_size * element
    return cache + _DECODE_BYTES_PER_AUDIO_SECOND * settings.seconds


def choose_batch_size(model: MusicgenForConditionalGeneration, settings: SamplingSettings, precision: str,
                      device: torch.device, most: int) -> int:
    """Clips per `generate` call: `most`, fewer when the GPU's free memory cannot hold that many."""
    if device.type != "cuda":
        return most
    free, _ = torch.cuda.mem_get_info(device)
    fits = int(free * _MEMORY_SHARE // per_clip_bytes(model, settings, precision))
    return max(1, min(most, fits))


def new_tokens(model: MusicgenForConditionalGeneration, seconds: float) -> int:
    """Decoding steps for `seconds` of audio: the delay pattern spends num_codebooks - 1 steps before the
    first full frame."""
    codec = codec_info(model)
    return math.ceil(seconds * codec.frame_rate) + codec.num_codebooks - 1


class ClipGenerator:
    """Generates clips in batches with one model, prepared once (device, precision)."""

    def __init__(self, model: MusicgenForConditionalGeneration, tokenizer: PreTrainedTokenizerBase,
                 settings: SamplingSettings, device: torch.device, precision: str = "auto",
                 max_batch_size: int = 64) -> None:
        self.precision = resolve_generation_precision(precision, device)
        self.model = prepare_model(model, device, self.precision)
        self.tokenizer = tokenizer
        self.settings = settings
        self.device = device
        self.codec = codec_info(model)
        self.batch_size = choose_batch_size(self.model, settings, self.precision, device, max_batch_size)
        self.generation_config = copy.deepcopy(self.model.generation_config)
        self.generation_config.update(do_sample=False, top_k=None, top_p=None, temperature=None,
                                      guidance_scale=settings.guidance_scale,
                                      max_new_tokens=new_tokens(self.model, settings.seconds))

    def generate(self, specs: Sequence[ClipSpec], should_stop: Callable[[], bool] = lambda: False
                 ) -> list[GeneratedClip]:
        """One `generate` call for `specs`. Raises `Interrupted` when `should_stop` turned true meanwhile."""
        inputs = self.tokenizer([s.prompt for s in specs], return_tensors="pt", padding=True).to(self.device)
        sampler = PerClipSampler([s.seed for s in specs], self.codec.num_codebooks, self.settings, self.device)
        stopped = Interrupted(f"stopped while generating clips {specs[0].index}-{specs[-1].index}")
        try:
            with torch.inference_mode():
                audio = self.model.generate(**inputs, generation_config=self.generation_config,
                                            logits_processor=LogitsProcessorList([sampler]),
                                            stopping_criteria=StoppingCriteriaList([StopWhen(should_stop)]))
        except RuntimeError:
            if should_stop():  # stopped before the delay pattern filled a frame: MusicGen cannot reshape it
                raise stopped from None
            raise
        if should_stop():
            raise stopped
        length = int(round(self.settings.seconds * self.codec.sample_rate))
        mono = audio.float().mean(dim=1)[:, :length].cpu().numpy()
        non_finite = sampler.non_finite.cpu().numpy()
        codes = sampler.clip_codes()
        clips = []
        for i, spec in enumerate(specs):
            samples = mono[i]
            finite = bool(np.all(np.isfinite(samples))) and not bool(non_finite[i])
            if not finite:
                log.warning("clip %d (seed %d, %r) has non-finite logits or audio: counted as non-finite and "
                            "not authentic", spec.index, spec.seed, spec.prompt)
                samples = np.nan_to_num(samples, nan=0.0, posinf=0.0, neginf=0.0)
            clips.append(GeneratedClip(spec, samples.astype(np.float32), self.codec.sample_rate, finite, codes[i]))
        return clips

    def batches(self, specs: Sequence[ClipSpec], should_stop: Callable[[], bool] = lambda: False
                ) -> Iterator[list[GeneratedClip]]:
        """`specs` in consecutive batches of `batch_size`; on CUDA out-of-memory the batch size halves and
        the batch is tried again."""
        start = 0
        while start < len(specs):
            batch = specs[start:start + self.batch_size]
            began = time.monotonic()
            try:
                clips = self.generate(batch, should_stop)
            except torch.OutOfMemoryError:
                if self.batch_size == 1:
                    raise
                self.batch_size //= 2
                log.warning("out of GPU memory with %d clips per batch: retrying with %d", len(batch),
                            self.batch_size)
                torch.cuda.empty_cache()
                continue
            log.info("generated clips %d-%d in %.1f s (%.3f s per clip)", batch[0].index, batch[-1].index,
                     time.monotonic() - began, (time.monotonic() - began) / len(batch))
            start += len(batch)
            yield clips
