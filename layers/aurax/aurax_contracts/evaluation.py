"""`EvalReport`: what `aurax job evaluate` writes and the decision reads.

Clip i of both arms has the same prompt and seed, so the arms are compared pair by pair (McNemar's test on
the discordant pairs); every summary below carries the counts the decision rule recomputes its statistics
from, so a re-decision with other thresholds needs no audio.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, model_validator

from .artifacts import Sha256
from .base import Contract

Arm = Literal["treatment", "control"]
PromptSet = Literal["amapiano", "in-distribution"]
"""`amapiano`: prose prompts describing the target genre (`evaluation.prompts`); `in-distribution`: prompts in
the MagnaTagATune tag style the model was fine-tuned on (`evaluation.tag_prompts`)."""
DecisionPromptSet = Literal["all", PromptSet]
"""The clips a decision counts: one prompt set, or all of them."""
Score = Annotated[float, Field(ge=0, le=100)]
Probability = Annotated[float, Field(ge=0, le=1)]
Count = Annotated[int, Field(ge=0)]


class ClipScore(Contract):
    arm: Arm
    index: Count
    """Clip index within its arm: clip i of treatment and clip i of control form a pair."""
    prompt: str
    prompt_set: PromptSet
    seed: Annotated[int, Field(ge=0)]
    audio: str
    """Audio file name relative to the report."""
    finite: bool = True
    """False when generation produced NaN/Inf (logits or audio): the clip then scores 0 and is not authentic."""
    score: Score
    authentic: bool
    components: dict[str, Annotated[float, Field(ge=0, le=1)]]
    """Each component's 0..1 sub-score (see docs/scoring.md)."""
    tempo_bpm: Annotated[float, Field(gt=0)] | None = None
    """The scorer's tempo; None when the clip has no clear pulse."""
    log_drum_events: Count = 0
    attempt: Annotated[int, Field(ge=1)] = 1
    """The Batch job attempt that generated the clip (an interrupted evaluation resumes from written clips)."""


class ArmSummary(Contract):
    model: str
    """Model id (control) or checkpoint URI (treatment)."""
    clips: Count
    authentic: Count
    rate: Probability
    wilson_low: Probability
    """Wilson score 95% interval of the authenticity rate (descriptive; the decision uses exact bounds)."""
    wilson_high: Probability
    mean_score: Score
    non_finite: Count = 0
    """Clips whose generation produced NaN/Inf (counted as not authentic)."""

    @model_validator(mode="after")
    def _consistent(self) -> ArmSummary:
        if self.authentic > self.clips or self.non_finite > self.clips:
            raise ValueError("authentic or non-finite clips exceed clips")
        if not self.wilson_low <= self.rate <= self.wilson_high:
            raise ValueError("rate lies outside its Wilson interval")
        return self


class Comparison(Contract):
    """Treatment against control on matched pairs (same prompt and seed)."""

    pairs: Count
    both: Count
    """Pairs where both clips are authentic."""
    treatment_only: Count
    """Discordant pairs won by treatment (only its clip is authentic)."""
    control_only: Count
    """Discordant pairs won by control."""
    difference: Annotated[float, Field(ge=-1, le=1)]
    """treatment rate - control rate over the pairs: (treatment_only - control_only) / pairs."""
    difference_low: Annotated[float, Field(ge=-1, le=1)]
    """One-sided 95% lower confidence bound of the difference (Agresti-Min adjusted Wald)."""
    p_value: Probability
    """One-sided exact McNemar test that treatment's rate exceeds control's."""
    test: Literal["mcnemar-exact-greater"] = "mcnemar-exact-greater"

    @model_validator(mode="after")
    def _consistent(self) -> Comparison:
        if self.both + self.treatment_only + self.control_only > self.pairs:
            raise ValueError("both + treatment_only + control_only exceed pairs")
        return self


class GroupSummary(Contract):
    """Both arms and their comparison over one group of prompts (a prompt set, or a single prompt)."""

    treatment: ArmSummary
    control: ArmSummary
    comparison: Comparison


class PromptSetSummary(GroupSummary):
    prompt_set: PromptSet
    prompts: list[str]


class PromptSummary(GroupSummary):
    prompt: str
    prompt_set: PromptSet


class Provenance(Contract):
    checkpoint_uri: str
    checkpoint_sha256: Sha256
    """sha256 of the checkpoint's manifest."""
    code_version: str
    dataset_manifest_sha256: Sha256
    base_model: str | None = None
    """The pretrained model both arms start from (`model.model_id`)."""
    base_revision: str | None = None
    """Its hub revision, as both arms loaded it (None: a local copy, the tiny test model, or an older report)."""


class GenerationInfo(Contract):
    """How the clips were generated (the same for both arms)."""

    device: str
    """e.g. `cuda (NVIDIA T4)` or `cpu`."""
    precision: Literal["fp32", "fp16", "bf16"]
    batch_size: Annotated[int, Field(ge=1)]
    """Clips per `generate` call (chosen from memory)."""
    top_k: Annotated[int, Field(ge=0)]
    """Top-k sampling (0: the whole vocabulary)."""
    temperature: Annotated[float, Field(gt=0)]
    seconds: Annotated[float, Field(ge=0)]
    """Wall-clock seconds spent generating (this attempt's clips only)."""


class EvalReport(Contract):
    schema_version: Literal[2] = 2
    run_id: str
    point: Literal["decision", "final"]
    epoch: Annotated[int, Field(ge=0)]
    """Epochs fully trained at the checkpoint under test (equals training.decision_epoch at the decision point)."""
    step: Annotated[int, Field(ge=0)]
    """Optimizer steps of the checkpoint under test."""
    score_threshold: Score
    clip_seconds: Annotated[float, Field(gt=0)]
    guidance_scale: Annotated[float, Field(ge=1)]
    treatment: ArmSummary
    """Over every clip (both prompt sets)."""
    control: ArmSummary
    comparison: Comparison
    prompt_sets: list[PromptSetSummary] = Field(default_factory=list)
    """Per prompt set: tells "the model did not learn" from "the prompts are outside what it learnt"."""
    prompts: list[PromptSummary] = Field(default_factory=list)
    val_loss: Annotated[float, Field(ge=0)] | None
    """Validation loss of the checkpoint under test (None only when the dataset has no validation split)."""
    baseline_val_loss: Annotated[float, Field(ge=0)] | None
    """Validation loss of the untouched model, measured before the first training step (None when the run's
    checkpoints carry none: no validation split, or written before it was measured)."""
    generation: GenerationInfo | None = None
    provenance: Provenance
    flags: list[str] = Field(default_factory=list)
    """What makes this evaluation suspect (e.g. non-finite audio); shown with the decision."""
    clips: list[ClipScore]
    attempts: list[Annotated[int, Field(ge=1)]] = Field(default_factory=list)
    """Batch job attempts that generated the clips (more than one after a resumed interruption)."""
    html_report: str = "report.html"
    created_at: AwareDatetime
