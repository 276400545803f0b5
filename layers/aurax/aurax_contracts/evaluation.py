"""`EvalReport`: what `aurax job evaluate` writes and the decision reads."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, model_validator

from .artifacts import Sha256
from .base import Contract

Arm = Literal["treatment", "control"]
Score = Annotated[float, Field(ge=0, le=100)]
Probability = Annotated[float, Field(ge=0, le=1)]


class ClipScore(Contract):
    arm: Arm
    prompt: str
    seed: Annotated[int, Field(ge=0)]
    audio: str
    """Audio file name relative to the report."""
    score: Score
    authentic: bool
    components: dict[str, Annotated[float, Field(ge=0, le=1)]]
    """Each component's 0..1 sub-score (see the README's scoring table)."""
    log_drum_events: Annotated[int, Field(ge=0)] = 0


class ArmSummary(Contract):
    model: str
    """Model id (control) or checkpoint URI (treatment)."""
    clips: Annotated[int, Field(ge=0)]
    authentic: Annotated[int, Field(ge=0)]
    rate: Probability
    wilson_low: Probability
    """Wilson score 95% interval of the authenticity rate."""
    wilson_high: Probability
    mean_score: Score

    @model_validator(mode="after")
    def _consistent(self) -> ArmSummary:
        if self.authentic > self.clips:
            raise ValueError("authentic clips exceed clips")
        if not self.wilson_low <= self.rate <= self.wilson_high:
            raise ValueError("rate lies outside its Wilson interval")
        return self


class Comparison(Contract):
    difference: Annotated[float, Field(ge=-1, le=1)]
    """treatment rate - control rate."""
    p_value: Probability
    """One-sided Fisher's exact test that treatment's rate exceeds control's."""
    test: Literal["fisher-exact-greater"] = "fisher-exact-greater"


class Provenance(Contract):
    checkpoint_uri: str
    checkpoint_sha256: Sha256
    """sha256 of the checkpoint's manifest."""
    code_version: str
    dataset_manifest_sha256: Sha256


class EvalReport(Contract):
    schema_version: Literal[1] = 1
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
    control: ArmSummary
    comparison: Comparison
    val_loss: Annotated[float, Field(ge=0)] | None
    """Validation loss of the checkpoint under test (None only when the dataset has no validation split)."""
    provenance: Provenance
    clips: list[ClipScore]
    html_report: str = "report.html"
    created_at: AwareDatetime
