"""`RunConfig`: everything a run is told, validated once, the same for the Lambdas and the job."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BeforeValidator, Field, ValidationError, model_validator

from .base import Contract, ContractError, describe_validation_error
from .evaluation import DecisionPromptSet, PromptSet
from .layout import LocationError, parse_location

#: The model the mission fine-tunes.
MUSICGEN_SMALL = "facebook/musicgen-small"
#: The hub commit of facebook/musicgen-small that runs load (and the image bakes): a run never changes weights
#: under its feet when the hub repository is updated. Source: the Hugging Face cache snapshot
#: `models--facebook--musicgen-small/snapshots/4c8334b02c6ec4e8664a91979669a501ec497792`, the revision public
#: transformers projects load musicgen-small from (its README blame lists commit 4c8334b).
MUSICGEN_SMALL_REVISION = "4c8334b02c6ec4e8664a91979669a501ec497792"
#: A randomly initialised MusicGen of a few hundred thousand parameters, for tests and `aurax local`.
TINY_MODEL_ID = "aurax/tiny-random-musicgen"
#: Where MagnaTagATune is published.
MTAT_BASE_URL = "https://mirg.city.ac.uk/datasets/magnatagatune/"

RunId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{2,62}$",
                             description="lower-case letters, digits and '-', 3-63 characters")]
Tag = Annotated[str, Field(min_length=1, max_length=40)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
HexFolder = Annotated[str, Field(pattern=r"^[0-9a-f]$")]
#: Clips in MagnaTagATune's annotations_final.csv.
MTAT_CLIPS = 25_863
#: `target_clips` value meaning every eligible clip.
ALL_ELIGIBLE = "all"


def _clip_count_or_all(value: object) -> object:
    """One clear message for `target_clips` instead of one per member of the union."""
    if value == ALL_ELIGIBLE:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MTAT_CLIPS:
        raise ValueError(f'use "all" or a whole number of clips from 1 to {MTAT_CLIPS}')
    return value


TargetClips = Annotated[int | Literal["all"], BeforeValidator(_clip_count_or_all)]
#: Floor of an "all eligible" selection. The default rules on the real labels of folders c-f, extrapolated to
#: folders 0-c, give about 2,470 clips (1,683 at the least productive observed folder's rate) from the 50 most
#: frequent tags alone; 1,000 leaves room for the rarer excluded tags the fixture cannot see, and still refuses
#: a rule set that selects a few hundred clips (README, "The data").
DEFAULT_MIN_CLIPS = 1000

DEFAULT_INCLUDE_TAGS: dict[str, float] = {
    "house": 3.0, "techno": 2.0, "electronic": 1.5, "dance": 2.0, "beat": 1.5, "beats": 1.5, "drums": 1.5,
    "percussion": 2.0, "bass": 2.0, "deep": 2.0, "tribal": 2.5, "world": 1.5, "bongos": 2.0, "piano": 1.5,
    "jazzy": 2.0, "repetitive": 1.0, "funky": 1.0, "synth": 1.0,
}
DEFAULT_EXCLUDE_TAGS: list[str] = [
    "classical", "clasical", "opera", "choir", "choral", "harpsichord", "harpsicord", "no beat", "no drums",
    "baroque", "medieval", "chant", "violin", "strings",
]
#: Amapiano evaluation prompts in prose, the way the mission asks for the genre. Twelve of them, so that the
#: decision's 300 Amapiano clips are 25 seeds of each: its verdict is about Amapiano prompts, not about a few
#: sentences (clips of one prompt are not independent draws of "Amapiano on request").
DEFAULT_PROMPTS: list[str] = [
    "amapiano groove at 112 bpm with deep log drum bassline, rolling shakers and jazzy piano chords",
    "south african amapiano, soulful keys, log drum slides, sparse kick, 16th note shakers",
    "deep house influenced amapiano with woody log drums and minor ninth piano chords",
    "private school amapiano, mellow rhodes, warm pads, log drum, shaker groove, 110 bpm",
    "amapiano with a bouncing log drum bass, off-beat hi-hats, vocal chops and gospel piano stabs",
    "dark amapiano at 113 bpm, heavy log drum, filtered synth pads, rimshots and sparse shakers",
    "soulful amapiano with saxophone lead, jazzy electric piano, log drum and open hi-hats",
    "amapiano dance track, punchy log drum pattern, congas, shakers, airy female vocal pads",
    "laid-back amapiano, lush chords, walking log drum bassline, soft kick, crisp shakers, 108 bpm",
    "johannesburg amapiano party groove, big log drum hits, whistles, claps and piano riffs",
    "minimal amapiano with a deep sub log drum, tight percussion loop and a hypnotic synth lead",
    "amapiano with kwaito influence, chanted vocals, log drum bass, shaker and tambourine groove",
]
#: In-distribution evaluation prompts: written the way the training captions are built from MagnaTagATune tags
#: (`aurax/dataset/selection.py`: the clip's proxy tags by weight, then its other tags), from tags the default
#: selection trains on, so that the fine-tuned model is asked in the vocabulary it learnt.
DEFAULT_TAG_PROMPTS: list[str] = [
    "house, bass, deep, percussion, beat, piano",
    "house, tribal, bass, jazzy, drums, repetitive",
    "house, bongos, deep, percussion, electronic, fast",
    "house, dance, deep, jazzy, piano, synth",
    "house, bass, deep, beats, funky, slow",
    "house, tribal, percussion, drums, world, ambient",
    "house, bass, jazzy, electronic, piano, soft",
    "house, dance, techno, beat, repetitive, synth",
    "house, tribal, bongos, percussion, beat, world",
    "house, deep, jazzy, beat, piano, funky",
    "house, bass, dance, drums, electronic, loud",
    "house, deep, percussion, repetitive, synth, ambient",
]


class DatasetSelection(Contract):
    """Which MagnaTagATune clips the run trains on, chosen by proxy tags (MTAT has no Amapiano tag)."""

    source_uri: str = MTAT_BASE_URL
    """Where `annotations_final.csv` and `mp3.zip.00{1,2,3}` are: the MTAT site, `s3://...` or a local folder."""
    include_tags: dict[Tag, Annotated[float, Field(gt=0, le=100)]] = Field(
        default_factory=lambda: dict(DEFAULT_INCLUDE_TAGS), min_length=1)
    """Proxy tags and their weights; a clip's score is the sum of the weights of its tags, summed exactly as the
    decimals are written (0.1 + 0.2 reaches a min_score of 0.3)."""
    exclude_tags: list[Tag] = Field(default_factory=lambda: list(DEFAULT_EXCLUDE_TAGS))
    """A clip with any of these tags is never selected."""
    min_score: Annotated[float, Field(gt=0, le=1000)] = 3.0
    """Least tag score a clip needs to be eligible."""
    target_clips: TargetClips = ALL_ELIGIBLE
    """"all": every eligible clip, at least `min_clips` (about 2,470 with the default rules, extrapolated from
    real labels: README, "The data"); or a number from 1 to 25,863: that many, best score first, ties broken by
    a seeded hash."""
    min_clips: Annotated[int, Field(ge=1, le=MTAT_CLIPS)] = DEFAULT_MIN_CLIPS
    """With target_clips "all": the fewest usable clips accepted; `aurax start`, preflight and the job refuse
    fewer."""
    target_tolerance: Fraction = 0.05
    """With a numeric target_clips: the job fails when fewer than target_clips x (1 - target_tolerance) clips
    are usable."""
    validation_folders: list[HexFolder] = Field(default_factory=lambda: ["c"], min_length=1)
    """MTAT folders held out for validation; folders follow albums, so this split has no album leakage."""
    excluded_folders: list[HexFolder] = Field(default_factory=lambda: ["d", "e", "f"])
    """Folders kept out entirely (the common MTAT test split)."""
    min_clip_seconds: Annotated[float, Field(gt=0, le=30)] = 25.0
    """Shorter decoded clips are skipped and counted."""
    seed: Annotated[int, Field(ge=0)] = 1234
    """Seed of the tie-breaking hash, so the same config always selects the same clips."""

    @model_validator(mode="after")
    def _disjoint(self) -> DatasetSelection:
        both = set(self.include_tags) & set(self.exclude_tags)
        if both:
            raise ValueError(f"tags both included and excluded: {sorted(both)}; remove them from one list")
        if set(self.validation_folders) & set(self.excluded_folders):
            raise ValueError("validation_folders and excluded_folders overlap; a folder can be in only one")
        return self


def _not_on_the_hub(model_id: str) -> bool:
    return model_id == TINY_MODEL_ID or model_id.startswith(("/", ".", "~")) or Path(model_id).is_dir()


def default_revision(model_id: str) -> str | None:
    """The hub revision a model id loads when none is configured: the pinned one for musicgen-small, None (main)
    for other hub ids and for local folders and the tiny test model."""
    return MUSICGEN_SMALL_REVISION if model_id == MUSICGEN_SMALL and not _not_on_the_hub(model_id) else None


class ModelConfig(Contract):
    """The pretrained model, how much of it trains, and how it computes."""

    model_id: str = Field(default=MUSICGEN_SMALL, min_length=1)
    """Hugging Face id or local path; `aurax/tiny-random-musicgen` builds a tiny random model for tests."""
    revision: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    """Hub revision (commit hash, tag or branch) of `model_id`. Default: the pinned commit
    `MUSICGEN_SMALL_REVISION` for facebook/musicgen-small, the main branch for any other hub model; ignored for a
    local folder. The revision used is recorded in every checkpoint manifest."""
    finetune: Literal["full", "lora"] = "full"
    """`full` trains the whole decoder; `lora` trains low-rank adapters (peft) on its attention projections."""
    lora_rank: Annotated[int, Field(ge=1, le=256)] = 16
    """Rank of the LoRA adapters (only with `finetune: lora`)."""
    precision: Literal["auto", "fp16", "bf16", "fp32"] = "auto"
    """`auto`: bf16 where the GPU supports it, fp16 with loss scaling on older GPUs (T4), fp32 on CPU."""
    attention: Literal["auto", "sdpa", "eager"] = "auto"
    """Attention kernel of the decoder and the text encoder (EnCodec always runs eager: it has no SDPA). `auto`
    is the fastest numerically safe one, PyTorch's scaled-dot-product attention (`sdpa`): 1.5-3.2x eager's
    throughput at the same micro-batch on an H200, in far less memory, and finite on fully dropped prompts
    (all-masked cross-attention rows)."""
    decoder_dropout: Fraction = 0.0
    """Dropout in the decoder's layers. audiocraft trained MusicGen without dropout (0.0); the Hugging Face config
    of musicgen-small says 0.1, which this overrides. Recorded in the checkpoint's training plan. Above 0 the
    dropout masks follow the micro-batch split, so a resume on a GPU that plans another split continues the same
    in distribution, not bit for bit."""

    def resolved_revision(self) -> str | None:
        """The hub revision to load: the pinned one for musicgen-small; None (main) for other hub ids; None for
        local folders and the tiny test model, where revisions do not apply."""
        if _not_on_the_hub(self.model_id):
            return None
        return self.revision if self.revision is not None else default_revision(self.model_id)


#: Old training fields and what to write instead (a config written for an earlier version gets this error).
_REMOVED_TRAINING_FIELDS = {
    "grad_accum_steps": "training.batch_size is now the examples per optimizer step (the effective batch, over "
                        "all GPUs) and the job picks the micro-batch and the accumulation from the GPU's memory; "
                        "fix: remove grad_accum_steps and set batch_size to the old batch_size x grad_accum_steps x "
                        "GPUs (16 for the old defaults 4 x 4 on one GPU)",
    "gradient_checkpointing": "the job now turns activation checkpointing on only where the GPU's memory needs it; "
                              "fix: remove gradient_checkpointing, or write training.activation_checkpointing: on "
                              "(or off) to force it",
}


class TrainingConfig(Contract):
    """Optimisation, following audiocraft's MusicGen recipe."""

    total_epochs: Annotated[int, Field(ge=1, le=1000)] = 20
    """Epochs of the whole run; after a GO at the decision epoch, training continues to here. Changing it on
    resume changes the learning-rate schedule: see `allow_schedule_change`."""
    decision_epoch: Annotated[int, Field(ge=1, le=1000)] = 5
    """The "week 5" point: training stops here for the go/no-go evaluation."""
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 32
    """Examples per optimizer step, over all GPUs (the effective batch). The job splits it into micro-batches
    and gradient accumulation itself; the result does not depend on that split (up to float rounding)."""
    micro_batch_size: Annotated[int, Field(ge=1, le=4096)] | None = None
    """Examples per forward pass on one GPU. Default: the largest that fits the GPU's memory with a margin
    (measured at start); on the CPU, the whole batch. Set it only to benchmark or to work around a memory
    problem: it changes the speed, not the result."""
    activation_checkpointing: Literal["auto", "on", "off"] = "auto"
    """Recompute activations in the backward pass to save memory. `auto`: only when that lets a larger, faster
    micro-batch fit (a 16 GB T4 with 30 s segments); off where memory is plentiful."""
    compile: bool = False
    """Compile the decoder's layers with `torch.compile` (see bench/RESULTS.md for whether it pays)."""
    learning_rate: Annotated[float, Field(gt=0, le=1e-2)] = 1e-5
    """Peak AdamW learning rate after warm-up (cosine decay to zero at total_epochs)."""
    adam_betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (0.9, 0.95)
    """AdamW betas (audiocraft's MusicGen recipe)."""
    weight_decay: Annotated[float, Field(ge=0, le=1)] = 0.1
    """AdamW decoupled weight decay."""
    warmup_steps: Annotated[int, Field(ge=0, le=100_000)] = 100
    """Optimizer steps of linear warm-up (100 is about 1.4 epochs of the default selection's ~2,200 training clips
    at 32 a step: the peak rate is reached well before the decision epoch's ~350th step)."""
    allow_schedule_change: bool = False
    """On resume, a changed `total_epochs` is refused (the cosine schedule would jump). True allows it: the
    remaining steps decay from the current learning rate to zero at the new end, with no jump; the change is
    logged, alerted as a warning and recorded in the checkpoint's schedule."""
    grad_clip_norm: Annotated[float, Field(gt=0, le=1000)] = 1.0
    """Gradients are clipped to this global norm."""
    segment_seconds: Annotated[float, Field(gt=0, le=30)] = 30.0
    """Length of each training example (MusicGen was trained on 30 s)."""
    condition_dropout: Fraction = 0.3
    """Fraction of examples trained with an empty prompt, for classifier-free guidance."""
    max_overflow_steps: Annotated[int, Field(ge=1, le=10_000)] = 50
    """With fp16 loss scaling, this many skipped (overflowed) steps in a row means divergence."""
    log_every_steps: Annotated[int, Field(ge=1, le=10_000)] = 10
    """A training metric record every this many optimizer steps."""
    seed: Annotated[int, Field(ge=0)] = 0
    """Seed of initialisation, data order and dropout: the same seed gives the same run, resumed or not."""

    @model_validator(mode="before")
    @classmethod
    def _removed_fields(cls, data: object) -> object:
        if isinstance(data, dict):
            removed = [f"training.{name} was removed: {why}" for name, why in _REMOVED_TRAINING_FIELDS.items()
                       if name in data]
            if removed:
                raise ValueError("; ".join(removed))
        return data

    @model_validator(mode="after")
    def _decision_before_end(self) -> TrainingConfig:
        if self.decision_epoch > self.total_epochs:
            raise ValueError(f"decision_epoch ({self.decision_epoch}) is after total_epochs "
                             f"({self.total_epochs}); set decision_epoch <= total_epochs")
        return self


class CheckpointConfig(Contract):
    interval_minutes: Annotated[float, Field(gt=0, le=24 * 60)] = 10.0
    """Save at least this often (plus each epoch end and at once on an interruption notice)."""
    interval_steps: Annotated[int, Field(ge=1)] | None = None
    """Also save every N optimizer steps (tests and `aurax local` use it)."""
    keep_last: Annotated[int, Field(ge=2, le=100)] = 3
    """Checkpoints kept; at least 2 so a corrupt newest one can fall back to the previous."""


class MonitoringConfig(Contract):
    loss_warn: Annotated[float, Field(gt=0, le=1e6)] = 10.0
    """A training loss above this writes a warning."""
    critical_window_hours: Annotated[float, Field(ge=0, le=24 * 30)] = 48.0
    """Hours after training starts (wall clock, waits for spot capacity included) during which every
    warning alerts at once (a stricter profile)."""
    idle_timeout_minutes: Annotated[float, Field(ge=5, le=7 * 24 * 60)] = 120.0
    """A running job that makes no progress this long (no optimizer step, validation batch or checkpoint bytes,
    however often its heartbeat thread reports) is terminated."""
    stuck_runnable_minutes: Annotated[float, Field(ge=5, le=30 * 24 * 60)] = 360.0
    """A job waiting this long for spot capacity is reported."""
    spike_factor: Annotated[float, Field(gt=1, le=1000)] = 3.0
    """A loss this many times its recent moving level is a spike."""
    spike_window_records: Annotated[int, Field(ge=2, le=10_000)] = 20
    """Training records in the moving level a spike is measured against."""
    plateau_records: Annotated[int, Field(ge=2, le=100_000)] = 30
    """Records of training loss with no improvement beyond plateau_min_delta that count as a plateau (30 records
    of `log_every_steps` 10 are 300 steps, about 4 epochs of the default selection at batch 32; the whole default
    run writes about 140)."""
    plateau_min_delta: Annotated[float, Field(ge=0, le=100)] = 0.01
    """Improvement of the best loss smaller than this does not end a plateau."""
    warning_interval_minutes: Annotated[float, Field(ge=0, le=7 * 24 * 60)] = 60.0
    """After the critical window, the same warning is sent at most once per this interval."""


class BudgetConfig(Contract):
    budget_usd: Annotated[float, Field(gt=0, le=1_000_000)] = 600.0
    """The run's budget: compute (every spot attempt) plus the storage and request estimate."""
    alert_fractions: list[Annotated[float, Field(gt=0, lt=1)]] = Field(default_factory=lambda: [0.5, 0.8])
    """Spend fractions of the budget that alert once each."""
    projection_margin: Annotated[float, Field(ge=0, le=10)] = 0.10
    """Abort when projected spend exceeds the budget by more than this fraction."""
    storage_usd_per_gb_month: Annotated[float, Field(ge=0, le=10)] = 0.023
    """S3 Standard price used in the storage estimate."""
    requests_usd_per_1000: Annotated[float, Field(ge=0, le=10)] = 0.005
    """S3 PUT price used in the request estimate."""


class ComputeConfig(Contract):
    """Compute pricing the cost ledger falls back on (the instance types themselves are stack parameters)."""

    on_demand_fallback_usd_per_hour: Annotated[float, Field(gt=0, le=1000)] = 0.526
    """Price used when spot price history has no entry (g4dn.xlarge on-demand in us-east-1, conservative)."""


class EvaluationConfig(Contract):
    """How the decision evaluation generates and scores clips (docs/operations.md, "The decision")."""

    prompts: list[Annotated[str, Field(min_length=3, max_length=500)]] = Field(
        default_factory=lambda: list(DEFAULT_PROMPTS))
    """Amapiano prose prompts (the `amapiano` prompt set): what the mission asks the model for."""
    tag_prompts: list[Annotated[str, Field(min_length=3, max_length=500)]] = Field(
        default_factory=lambda: list(DEFAULT_TAG_PROMPTS))
    """In-distribution prompts in the training captions' tag style (the `in-distribution` prompt set)."""
    clips_per_model: Annotated[int, Field(ge=1, le=10_000)] = 600
    """Clips generated for each arm; prompts cycle through both sets, seeds follow `seed`. 600 gives the decision's
    prompt set (by default the 300 Amapiano clips) 96% power for the exact test against min_authenticity 35% at a
    true 45% (`aurax estimate` shows the power and cost of any value)."""
    clip_seconds: Annotated[float, Field(gt=0, le=30)] = 10.0
    """Length of each generated clip."""
    guidance_scale: Annotated[float, Field(ge=1, le=20)] = 3.0
    """Classifier-free guidance scale (1.0 disables guidance)."""
    top_k: Annotated[int, Field(ge=0, le=100_000)] = 250
    """Sample from the k most likely codes at each step (MusicGen's default 250; 0 samples from all)."""
    temperature: Annotated[float, Field(gt=0, le=10)] = 1.0
    """Sampling temperature."""
    seed: Annotated[int, Field(ge=0)] = 2024
    """Clip i of both arms uses seed + i, so treatment and control differ only by their weights."""
    score_threshold: Annotated[float, Field(ge=0, le=100)] = 80.0
    """A clip is authentic when its AURA-X score is at least this."""
    precision: Literal["auto", "fp16", "bf16", "fp32"] = "auto"
    """Generation precision on a GPU: `auto` is bf16 where supported, fp16 otherwise (T4); the CPU uses fp32."""
    max_batch_size: Annotated[int, Field(ge=1, le=1024)] = 64
    """Most clips per `generate` call; fewer when the GPU's free memory cannot hold that many."""

    @model_validator(mode="after")
    def _some_prompt(self) -> EvaluationConfig:
        if not self.prompts and not self.tag_prompts:
            raise ValueError("no evaluation prompts: give evaluation.prompts and/or evaluation.tag_prompts")
        return self

    def prompt_cycle(self) -> list[tuple[str, PromptSet]]:
        """Prompts in the order clips cycle through them: the Amapiano prose prompts, then the tag-style ones."""
        return [(p, "amapiano") for p in self.prompts] + [(p, "in-distribution") for p in self.tag_prompts]

    def clips_in(self, prompt_set: DecisionPromptSet, clips_per_model: int | None = None) -> int:
        """How many of an arm's clips (`clips_per_model`, or the given count) a prompt set gets ("all": every one)."""
        clips = self.clips_per_model if clips_per_model is None else clips_per_model
        if prompt_set == "all":
            return clips
        cycle = [kind == prompt_set for _, kind in self.prompt_cycle()]
        full, rest = divmod(clips, len(cycle))
        return full * sum(cycle) + sum(cycle[:rest])


class DecisionConfig(Contract):
    """The go/no-go rule (docs/operations.md, "The decision rule"): GO needs every criterion."""

    min_authenticity: Fraction = 0.35
    """GO needs the treatment's authenticity rate to clear this with confidence: its one-sided exact
    (Clopper-Pearson) lower bound at `authenticity_confidence` must be at least this."""
    authenticity_confidence: Annotated[float, Field(ge=0.5, lt=1)] = 0.95
    """Confidence of that lower bound (0.95 = an exact one-sided binomial test at 5%)."""
    improvement_alpha: Annotated[float, Field(gt=0, le=1)] = 0.05
    """GO needs treatment to beat control by McNemar's exact one-sided test on the paired clips at this
    significance level (1.0 drops the requirement)."""
    prompt_set: DecisionPromptSet = "amapiano"
    """Which evaluation clips the authenticity and beats-control criteria count. The hypothesis is about
    Amapiano on request, so the Amapiano prose prompts decide; the tag-style set is reported beside them to tell
    "did not learn" from "the Amapiano prompts are outside what it learnt". `all` counts both sets."""
    max_non_finite_clips: Annotated[int, Field(ge=0)] = 0
    """GO needs at most this many clips (both arms) with NaN/Inf generation: more make the evidence suspect."""
    max_val_loss: Annotated[float, Field(gt=0, le=100)] = 3.5
    """GO needs the checkpoint's validation loss at most this."""
    min_val_loss_improvement: Annotated[float, Field(ge=0, le=100)] | None = 0.05
    """GO needs the validation loss at least this far (nats) below the untouched model's, measured before the
    first step; null drops the criterion (for runs whose checkpoints carry no baseline)."""
    max_cost_usd: Annotated[float, Field(gt=0)] | None = None
    """Defaults to the budget."""


#: Fields a resume may change: the epoch counts (the schedule checks `total_epochs` itself) and how the job
#: computes, which changes the speed, not the result (up to float rounding).
RESUMABLE_CHANGES: dict[str, set[str]] = {
    "model": {"attention"},
    "training": {"total_epochs", "decision_epoch", "allow_schedule_change", "micro_batch_size",
                 "activation_checkpointing", "compile",
                 # what the job reports and when it calls a fp16 overflow run divergence: not the result
                 "log_every_steps", "max_overflow_steps"},
}


class RunConfig(Contract):
    """One fine-tuning run, from dataset selection to the go/no-go rule."""

    schema_version: Literal[1] = 1
    """Version of this config format."""
    run_id: RunId
    """Names the run everywhere: S3 prefixes, job names, alerts, events."""
    dataset: DatasetSelection = Field(default_factory=DatasetSelection)
    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    compute: ComputeConfig = Field(default_factory=ComputeConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    decision: DecisionConfig = Field(default_factory=DecisionConfig)

    @model_validator(mode="after")
    def _decision_has_clips(self) -> RunConfig:
        if not self.evaluation.clips_in(self.decision.prompt_set):
            raise ValueError(f"decision.prompt_set '{self.decision.prompt_set}' gets no evaluation clips (its "
                             "prompts are empty or clips_per_model is too small); give that set prompts, raise "
                             "evaluation.clips_per_model, or set decision.prompt_set: all")
        return self

    @property
    def max_cost_usd(self) -> float:
        return self.decision.max_cost_usd if self.decision.max_cost_usd is not None else self.budget.budget_usd

    def dataset_fingerprint(self) -> str:
        """sha256 of what determines the prepared dataset: the selection and the codec's model."""
        key = {"dataset": self.dataset.model_dump(mode="json"), "codec_model": self.model.model_id}
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()

    def training_fingerprint(self) -> str:
        """sha256 of what a checkpoint must agree with to be resumed: model, data and optimisation (not the
        fields in `RESUMABLE_CHANGES`, which a resume may change)."""
        key = {"dataset": self.dataset_fingerprint(),
               "model": self.model.model_dump(mode="json", exclude=RESUMABLE_CHANGES["model"]),
               "training": self.training.model_dump(mode="json", exclude=RESUMABLE_CHANGES["training"])}
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def parse_run_config(text: str, source: str = "run config") -> RunConfig:
    """Parse YAML or JSON text; raise `ContractError` naming each bad field and its fix."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ContractError(source, [f"not valid YAML/JSON: {exc}; fix: check indentation and quoting"]) from exc
    if not isinstance(data, dict):
        raise ContractError(source, [f"expected a mapping of fields, got {type(data).__name__}; "
                                     "fix: write `run_id: my-run` and the sections to override"])
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise describe_validation_error(source, exc, RunConfig) from exc


def load_run_config(location: str | Path) -> RunConfig:
    """The run config in a local file: a path, taken literally (`run #1.yaml`, `mix:a.yaml`), or a `file://` URI
    (`layout.parse_location`). Raises ContractError naming the location as given: when it cannot be read, is
    on S3 (the operator commands read a local copy) or does not validate."""
    source = str(location)
    try:
        where = parse_location(source)
    except LocationError as exc:
        raise ContractError(source, [f"{exc}; fix: give the path of a local YAML or JSON file"]) from None
    if where.scheme == "s3":
        raise ContractError(source, ["this command reads a local file, not S3; fix: copy it here first "
                                     f"(`aws s3 cp '{source}' run.yaml`) and give run.yaml"])
    try:
        text = Path(where.key).expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        raise ContractError(source, [f"cannot read it: {exc.strerror}; fix: check the path"]) from exc
    except UnicodeDecodeError as exc:
        raise ContractError(source, [f"cannot read it: not UTF-8 text ({exc.reason} at byte {exc.start}); fix: "
                                     "give the YAML or JSON run config (`aurax config example` writes one)"]) from exc
    return parse_run_config(text, source)
