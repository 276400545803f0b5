"""Batched generation: each clip is reproducible on its own, sampled exactly, and stoppable mid-batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import chi2_contingency, chisquare
from transformers import (
    ClassifierFreeGuidanceLogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
)

from aurax.evaluate.generate import (
    ClipGenerator,
    ClipSpec,
    Interrupted,
    PerClipSampler,
    SamplingSettings,
    clip_specs,
    per_clip_bytes,
)
from aurax.model import load_musicgen, load_tokenizer
from aurax_contracts import TINY_MODEL_ID
from aurax_contracts.config import EvaluationConfig

PROMPTS = ["amapiano groove at 112 bpm with deep log drum bassline", "house, bass, deep",
           "deep house influenced amapiano with woody log drums and minor ninth piano chords", "jazzy keys"]
SETTINGS = SamplingSettings(seconds=1.0, guidance_scale=3.0, top_k=250, temperature=1.0)


@pytest.fixture(scope="module")
def generator() -> ClipGenerator:
    return ClipGenerator(load_musicgen(TINY_MODEL_ID), load_tokenizer(TINY_MODEL_ID), SETTINGS,
                         torch.device("cpu"), max_batch_size=16)


def specs(count: int, first_seed: int = 7) -> list[ClipSpec]:
    return [ClipSpec(i, PROMPTS[i % len(PROMPTS)], "amapiano", first_seed + i) for i in range(count)]


def test_a_clip_generated_alone_equals_the_same_clip_inside_a_batch_of_16(generator: ClipGenerator) -> None:
    batch = generator.generate(specs(16))
    for clip in batch[::5]:
        alone = generator.generate([clip.spec])[0]
        # The codes are the draw: identical. The audio agrees to EnCodec's batched-convolution rounding
        # (about 1e-7), far below the 16-bit PCM step (3e-5) the clip is written with.
        assert np.array_equal(alone.codes, clip.codes)
        assert np.max(np.abs(alone.samples - clip.samples)) < 1e-6
    assert batch[0].codes.shape == (50 + 3, 4)  # 1 s at 50 frames/s plus the delay pattern's 3 steps
    assert batch[0].samples.shape == (32000,) and batch[0].samples.dtype == np.float32
    # different seeds and prompts give different clips; the same seed and prompt the same clip
    assert not np.array_equal(batch[0].codes, batch[4].codes)
    shuffled = generator.generate([batch[3].spec, batch[1].spec])
    assert np.array_equal(shuffled[0].codes, batch[3].codes) and np.array_equal(shuffled[1].codes, batch[1].codes)


def test_clip_depends_on_its_seed_not_its_index(generator: ClipGenerator) -> None:
    one = generator.generate([ClipSpec(0, PROMPTS[0], "amapiano", 99)])[0]
    other_index = generator.generate([ClipSpec(40, PROMPTS[0], "amapiano", 99)])[0]
    other_seed = generator.generate([ClipSpec(0, PROMPTS[0], "amapiano", 100)])[0]
    assert np.array_equal(one.codes, other_index.codes)
    assert not np.array_equal(one.codes, other_seed.codes)


def _draws(logits: torch.Tensor, settings: SamplingSettings, seeds: range, doubled: bool = False) -> np.ndarray:
    """One code per seed from the sampler, for a single clip with one codebook."""
    out = []
    for seed in seeds:
        sampler = PerClipSampler([seed], 1, settings, torch.device("cpu"))
        scores = torch.cat([logits, torch.zeros_like(logits)]) if doubled else logits
        chosen = sampler(torch.zeros((1, 1), dtype=torch.long), scores)
        out.append(int(chosen[0].argmax()))
    return np.array(out)


def _expected(logits: torch.Tensor, draws: int) -> np.ndarray:
    weights = np.exp(logits.double().numpy())
    return weights / weights.sum() * draws


def test_gumbel_max_draws_follow_the_top_k_categorical_distribution() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0, -3.0]])
    settings = SamplingSettings(1.0, 1.0, top_k=4, temperature=1.0)
    draws = _draws(logits, settings, range(4000))
    assert set(np.unique(draws)) <= {0, 1, 2, 3}  # never outside the top 4
    observed = np.bincount(draws, minlength=4)
    assert chisquare(observed, _expected(logits[0, :4], len(draws))).pvalue > 0.001


def test_temperature_and_guidance_are_applied_before_the_draw() -> None:
    conditional = torch.tensor([[1.0, 0.0, -1.0]])
    # guidance 3 on conditional vs unconditional zeros triples the logits; temperature 3 divides them back
    settings = SamplingSettings(1.0, guidance_scale=3.0, top_k=0, temperature=3.0)
    draws = _draws(conditional, settings, range(3000), doubled=True)
    observed = np.bincount(draws, minlength=3)
    assert chisquare(observed, _expected(conditional[0], len(draws))).pvalue > 0.001


class _LastIds(StoppingCriteria):
    """Keeps `generate`'s raw sampled ids (before MusicGen's delay pattern masks any of them)."""

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: object) -> torch.BoolTensor:
        self.ids = input_ids.clone()
        return torch.zeros(input_ids.shape[0], dtype=torch.bool)  # type: ignore[return-value]


def test_batched_draws_follow_transformers_own_musicgen_sampling() -> None:
    # End to end through MusicGen's `generate` (its guidance processor, delay pattern and processor order):
    # the per-clip Gumbel-max draws and transformers' own `do_sample` (guidance, then temperature, then top-k,
    # then a multinomial draw) give the same distribution of codes, step by step and codebook by codebook.
    clips, settings = 2000, SamplingSettings(seconds=0.04, guidance_scale=3.0, top_k=12, temperature=0.4)
    model, tokenizer = load_musicgen(TINY_MODEL_ID), load_tokenizer(TINY_MODEL_ID)
    ours = ClipGenerator(model, tokenizer, settings, torch.device("cpu"), max_batch_size=clips)
    inputs = tokenizer(["amapiano groove with log drums"] * clips, return_tensors="pt", padding=True)
    sampler = PerClipSampler(range(100, 100 + clips), 4, settings, torch.device("cpu"))
    native = _LastIds()
    torch.manual_seed(0)
    with torch.inference_mode():
        model.generate(**inputs, generation_config=ours.generation_config,
                       logits_processor=LogitsProcessorList([sampler]))
        model.generate(**inputs, do_sample=True, top_k=12, temperature=0.4, guidance_scale=3.0,
                       max_new_tokens=ours.generation_config.max_new_tokens,
                       stopping_criteria=StoppingCriteriaList([native]))
    drawn = sampler.clip_codes()
    reference = native.ids[:, 1:].reshape(clips, 4, -1).transpose(1, 2).numpy()
    assert drawn.shape == reference.shape == (clips, 5, 4)
    assert len(np.unique(drawn[:, 0, 0])) <= 12  # top-k: at most 12 codes at the first step
    for step, codebook in ((0, 0), (1, 0), (1, 1), (3, 3), (4, 2)):
        counts = np.stack([np.bincount(drawn[:, step, codebook], minlength=65),
                           np.bincount(reference[:, step, codebook], minlength=65)])
        counts = counts[:, counts.sum(axis=0) > 0]
        assert chi2_contingency(counts).pvalue > 0.001, (step, codebook)


def test_the_choice_survives_transformers_guidance_processor_unchanged() -> None:
    sampler = PerClipSampler([1, 2], 4, SETTINGS, torch.device("cpu"))
    scores = torch.randn(2 * 2 * 4, 64)
    chosen = sampler(torch.zeros((8, 1), dtype=torch.long), scores)
    guided = ClassifierFreeGuidanceLogitsProcessor(3.0)(torch.zeros((8, 1), dtype=torch.long), chosen)
    assert torch.equal(guided.argmax(dim=-1), sampler.codes[0]) and torch.isfinite(guided).all()


def test_non_finite_logits_mark_the_clip() -> None:
    sampler = PerClipSampler([1, 2], 1, SamplingSettings(1.0, 1.0, 0, 1.0), torch.device("cpu"))
    scores = torch.zeros(2, 8)
    scores[1, 3] = float("nan")
    sampler(torch.zeros((2, 1), dtype=torch.long), scores)
    assert sampler.non_finite.tolist() == [False, True]


def test_a_stop_request_ends_generate_mid_batch(generator: ClipGenerator) -> None:
    calls = 0

    def stop_after_five_steps() -> bool:
        nonlocal calls
        calls += 1
        return calls > 5

    with pytest.raises(Interrupted):
        generator.generate(specs(4), stop_after_five_steps)
    assert calls < 20  # checked once per decoding step, not run to the end (53 steps)


def test_out_of_memory_halves_the_batch_and_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    generator = ClipGenerator(load_musicgen(TINY_MODEL_ID), load_tokenizer(TINY_MODEL_ID), SETTINGS,
                              torch.device("cpu"), max_batch_size=4)
    real = generator.generate
    sizes: list[int] = []

    def fake(batch: list[ClipSpec], should_stop: object = None) -> list:
        sizes.append(len(batch))
        if len(batch) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real(batch)

    monkeypatch.setattr(generator, "generate", fake)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    clips = [c for batch in generator.batches(specs(5)) for c in batch]
    assert [c.spec.index for c in clips] == [0, 1, 2, 3, 4]
    assert sizes == [4, 2, 2, 1] and generator.batch_size == 2


def test_clip_specs_cycle_both_prompt_sets_with_consecutive_seeds() -> None:
    evaluation = EvaluationConfig(prompts=["a b c", "d e f"], tag_prompts=["house, deep"], clips_per_model=5, seed=3)
    assert [(s.index, s.prompt, s.prompt_set, s.seed) for s in clip_specs(evaluation)] == [
        (0, "a b c", "amapiano", 3), (1, "d e f", "amapiano", 4), (2, "house, deep", "in-distribution", 5),
        (3, "a b c", "amapiano", 6), (4, "d e f", "amapiano", 7)]


def test_memory_estimate_of_a_real_size_clip() -> None:
    from transformers import MusicgenConfig

    from aurax.model import tiny_musicgen_config

    config = tiny_musicgen_config().to_dict()
    config["decoder"].update(num_hidden_layers=24, hidden_size=1024)
    model = type("M", (), {"config": MusicgenConfig.from_dict(config)})()
    ten_seconds = SamplingSettings(10.0, 3.0, 250, 1.0)
    # key/value cache: 24 layers x (k, v) x 2 guidance halves x 504 steps x 1024 x 2 bytes = 99 MB, plus decoding
    assert per_clip_bytes(model, ten_seconds, "fp16") == pytest.approx(24 * 2 * 2 * 504 * 1024 * 2 + 320e6)
