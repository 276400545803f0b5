"""`RunConfig`: everything a run is told, validated once, the same for the Lambdas and the job."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from .base import Contract, ContractError, describe_validation_error

#: The model the mission fine-tunes.
MUSICGEN_SMALL = "facebook/musicgen-small"
#: A randomly initialised MusicGen of a few hundred thousand parameters, for tests and `aurax local`.
TINY_MODEL_ID = "aurax/tiny-random-musicgen"
#: Where MagnaTagATune is published.
MTAT_BASE_URL = "https://mirg.city.ac.uk/datasets/magnatagatune/"

RunId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{2,62}$",
                             description="lower-case letters, digits and '-', 3-63 characters")]
Tag = Annotated[str, Field(min_length=1, max_length=40)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
HexFolder = Annotated[str, Field(pattern=r"^[0-9a-f]$")]

DEFAULT_INCLUDE_TAGS: dict[str, float] = {
    "house": 3.0, "techno": 2.0, "electronic": 1.5, "dance": 2.0, "beat": 1.5, "beats": 1.5, "drums": 1.5,
    "percussion": 2.0, "bass": 2.0, "deep": 2.0, "tribal": 2.5, "world": 1.5, "bongos": 2.0, "piano": 1.5,
    "jazzy": 2.0, "repetitive": 1.0, "funky": 1.0, "synth": 1.0,
}
DEFAULT_EXCLUDE_TAGS: list[str] = [
    "classical", "clasical", "opera", "choir", "choral", "harpsichord", "harpsicord", "no beat", "no drums",
    "baroque", "medieval", "chant", "violin", "strings",
]
DEFAULT_PROMPTS: list[str] = [
    "amapiano groove at 112 bpm with deep log drum bassline, rolling shakers and jazzy piano chords",
    "south african amapiano, soulful keys, log drum slides, sparse kick, 16th note shakers",
    "deep house influenced amapiano with woody log drums and minor ninth piano chords",
    "private school amapiano, mellow rhodes, warm pads, log drum, shaker groove, 110 bpm",
]
#: In-distribution evaluation prompts: written the way the training captions are built from MagnaTagATune tags
#: (`aurax/dataset/selection.py`: the clip's proxy tags by weight, then its other tags), from tags the default
#: selection trains on, so that the fine-tuned model is asked in the vocabulary it learnt.
DEFAULT_TAG_PROMPTS: list[str] = [
    "house, bass, deep, percussion, piano, beat",
    "house, tribal, bass, drums, jazzy, repetitive",
    "house, bongos, deep, percussion, electronic, fast",
    "house, dance, deep, jazzy, piano, synth",
]


class DatasetSelection(Contract):
    """Which MagnaTagATune clips the run trains on, chosen by proxy tags (MTAT has no Amapiano tag)."""

    source_uri: str = MTAT_BASE_URL
    """Where `annotations_final.csv` and `mp3.zip.00{1,2,3}` are: the MTAT site, `s3://...` or a local folder."""
    include_tags: dict[Tag, Annotated[float, Field(gt=0, le=100)]] = Field(
        default_factory=lambda: dict(DEFAULT_INCLUDE_TAGS), min_length=1)
    """Proxy tags and their weights; a clip's score is the sum of the weights of its tags."""
    exclude_tags: list[Tag] = Field(default_factory=lambda: list(DEFAULT_EXCLUDE_TAGS))
    """A clip with any of these tags is never selected."""
    min_score: Annotated[float, Field(gt=0, le=1000)] = 3.0
    """Least tag score a clip needs to be eligible."""
    target_clips: Annotated[int, Field(ge=1, le=25863)] = 8000
    """How many clips to select (highest score first, ties broken by a seeded hash)."""
    target_tolerance: Fraction = 0.05
    """The job fails when the selected count is short of the target by more than this fraction."""
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


class ModelConfig(Contract):
    """The pretrained model and how much of it trains."""

    model_id: str = Field(default=MUSICGEN_SMALL, min_length=1)
    """Hugging Face id or local path; `aurax/tiny-random-musicgen` builds a tiny random model for tests."""
    finetune: Literal["full", "lora"] = "full"
    """`full` trains the whole decoder; `lora` trains low-rank adapters (peft) on its attention projections."""
    lora_rank: Annotated[int, Field(ge=1, le=256)] = 16
    """Rank of the LoRA adapters (only with `finetune: lora`)."""
    precision: Literal["auto", "fp16", "bf16", "fp32"] = "auto"
    """`auto`: bf16 where the GPU supports it, fp16 with loss scaling on older GPUs (T4), fp32 on CPU."""
    attention: Literal["eager", "sdpa"] = "eager"
    """Eager attention avoids the NaN that SDPA gave on fully padded rows in older transformers."""


class TrainingConfig(Contract):
    """Optimisation, following audiocraft's MusicGen recipe."""

    total_epochs: Annotated[int, Field(ge=1, le=1000)] = 20
    """Epochs of the whole run; after a GO at the decision epoch, training continues to here."""
    decision_epoch: Annotated[int, Field(ge=1, le=1000)] = 5
    """The "week 5" point: training stops here for the go/no-go evaluation."""
    batch_size: Annotated[int, Field(ge=1, le=512)] = 4
    """Examples per forward pass on each GPU (4 x 30 s fits a T4 with fp16 and gradient checkpointing)."""
    grad_accum_steps: Annotated[int, Field(ge=1, le=512)] = 4
    """Forward passes per optimizer step (effective batch = batch_size x grad_accum_steps x GPUs)."""
    learning_rate: Annotated[float, Field(gt=0, le=1e-2)] = 1e-5
    """Peak AdamW learning rate after warm-up (cosine decay to zero at total_epochs)."""
    adam_betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (0.9, 0.95)
    """AdamW betas (audiocraft's MusicGen recipe)."""
    weight_decay: Annotated[float, Field(ge=0, le=1)] = 0.1
    """AdamW decoupled weight decay."""
    warmup_steps: Annotated[int, Field(ge=0, le=100_000)] = 500
    """Optimizer steps of linear warm-up."""
    grad_clip_norm: Annotated[float, Field(gt=0, le=1000)] = 1.0
    """Gradients are clipped to this global norm."""
    segment_seconds: Annotated[float, Field(gt=0, le=30)] = 30.0
    """Length of each training example (MusicGen was trained on 30 s)."""
    condition_dropout: Fraction = 0.3
    """Fraction of examples trained with an empty prompt, for classifier-free guidance."""
    gradient_checkpointing: bool = True
    """Recompute activations in the backward pass: less memory for 30 s segments on 16 GB."""
    max_overflow_steps: Annotated[int, Field(ge=1, le=10_000)] = 50
    """With fp16 loss scaling, this many skipped (overflowed) steps in a row means divergence."""
    log_every_steps: Annotated[int, Field(ge=1, le=10_000)] = 10
    """A training metric record every this many optimizer steps."""
    seed: Annotated[int, Field(ge=0)] = 0
    """Seed of initialisation, data order and dropout: the same seed gives the same run, resumed or not."""

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
    """Training time during which every warning alerts at once (a stricter profile)."""
    idle_timeout_minutes: Annotated[float, Field(ge=5, le=7 * 24 * 60)] = 120.0
    """A running job with no heartbeat this long is terminated."""
    stuck_runnable_minutes: Annotated[float, Field(ge=5, le=30 * 24 * 60)] = 360.0
    """A job waiting this long for spot capacity is reported."""
    spike_factor: Annotated[float, Field(gt=1, le=1000)] = 3.0
    """A loss this many times its recent moving level is a spike."""
    spike_window_records: Annotated[int, Field(ge=2, le=10_000)] = 20
    """Training records in the moving level a spike is measured against."""
    plateau_records: Annotated[int, Field(ge=2, le=100_000)] = 500
    """Records of training loss with no improvement beyond plateau_min_delta that count as a plateau."""
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
    clips_per_model: Annotated[int, Field(ge=1, le=10_000)] = 320
    """Clips generated for each arm: 320 gives the exact test against min_authenticity 35% 97% power at a true
    45% (`aurax estimate` shows the power and cost of any value). Prompts cycle, seeds follow `seed`."""
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
    prompt_set: Literal["all", "amapiano", "in-distribution"] = "all"
    """Which evaluation clips the authenticity criteria count."""
    max_non_finite_clips: Annotated[int, Field(ge=0)] = 0
    """GO needs at most this many clips (both arms) with NaN/Inf generation: more make the evidence suspect."""
    max_val_loss: Annotated[float, Field(gt=0, le=100)] = 3.5
    """GO needs the checkpoint's validation loss at most this."""
    min_val_loss_improvement: Annotated[float, Field(ge=0, le=100)] | None = 0.05
    """GO needs the validation loss at least this far (nats) below the untouched model's, measured before the
    first step; null drops the criterion (for runs whose checkpoints carry no baseline)."""
    max_cost_usd: Annotated[float, Field(gt=0)] | None = None
    """Defaults to the budget."""


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

    @property
    def max_cost_usd(self) -> float:
        return self.decision.max_cost_usd if self.decision.max_cost_usd is not None else self.budget.budget_usd

    def dataset_fingerprint(self) -> str:
        """sha256 of what determines the prepared dataset: the selection and the codec's model."""
        key = {"dataset": self.dataset.model_dump(mode="json"), "codec_model": self.model.model_id}
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()

    def training_fingerprint(self) -> str:
        """sha256 of what a checkpoint must agree with to be resumed: model, data and optimisation."""
        key = {"dataset": self.dataset_fingerprint(), "model": self.model.model_dump(mode="json"),
               "training": self.training.model_dump(mode="json", exclude={"total_epochs", "decision_epoch"})}
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


def load_run_config(path: str | Path) -> RunConfig:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ContractError(str(path), [f"cannot read it: {exc.strerror}; fix: check the path"]) from exc
    return parse_run_config(text, str(path))
