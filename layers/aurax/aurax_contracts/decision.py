"""`Decision`: the go/no-go outcome with each criterion and its evidence."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, Field

from .base import Contract
from .evaluation import ArmSummary, Comparison, DecisionPromptSet, PromptSetSummary, Provenance

CriterionName = Literal["authenticity", "beats_control", "finite_audio", "cost", "val_loss",
                        "val_loss_improvement"]


class Criterion(Contract):
    name: CriterionName
    value: float | None
    """The measured value (a rate, a difference, dollars, a loss); None when it could not be measured (the
    criterion then fails)."""
    threshold: float
    comparison: Literal[">=", "<=", ">"]
    passed: bool
    interval: tuple[float, float] | None = None
    """Confidence interval of `value` at `confidence` (one-sided bounds are closed with the range's end)."""
    confidence: Annotated[float, Field(gt=0, lt=1)] | None = None
    p_value: Annotated[float, Field(ge=0, le=1)] | None = None
    """p-value of the criterion's test (None for criteria without one: cost, val loss)."""
    alpha: Annotated[float, Field(gt=0, le=1)] | None = None
    """Significance level the p-value is held to."""
    test: str | None = None
    """The statistical test behind the criterion, in words."""
    detail: str = ""
    """One sentence a person reads: what was measured and why it passed or failed."""


class Decision(Contract):
    schema_version: Literal[2] = 2
    run_id: str
    point: Literal["decision", "final"]
    epoch: Annotated[int, Field(ge=0)]
    """Epochs fully trained when the decision was taken (from the evaluation report)."""
    outcome: Literal["GO", "NO-GO"]
    criteria: list[Criterion] = Field(min_length=1)
    prompt_set: DecisionPromptSet = "all"
    """Which evaluation clips the authenticity and beats-control criteria counted (`decision.prompt_set`; records
    from before the setting existed counted all)."""
    treatment: ArmSummary
    control: ArmSummary
    comparison: Comparison
    prompt_sets: list[PromptSetSummary] = Field(default_factory=list)
    """Per prompt set, as in the evaluation report."""
    flags: list[str] = Field(default_factory=list)
    """The evaluation's flags (e.g. non-finite audio)."""
    provenance: Provenance
    spend_usd: Annotated[float, Field(ge=0)]
    re_decision: bool = False
    """True for `aurax decide` run offline on a report: an audit or a what-if, never announced as the run's."""
    decided_at: AwareDatetime

    @property
    def failed(self) -> list[Criterion]:
        return [c for c in self.criteria if not c.passed]
