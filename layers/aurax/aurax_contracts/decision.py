"""`Decision`: the go/no-go outcome with each criterion and its evidence."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, Field

from .base import Contract
from .evaluation import ArmSummary, Comparison, Provenance


class Criterion(Contract):
    name: Literal["authenticity", "cost", "val_loss"]
    value: float | None
    """The measured value; None when it could not be measured (the criterion then fails)."""
    threshold: float
    comparison: Literal[">=", "<="]
    passed: bool


class Decision(Contract):
    schema_version: Literal[1] = 1
    run_id: str
    point: Literal["decision", "final"]
    epoch: Annotated[int, Field(ge=0)]
    """Epochs fully trained when the decision was taken (from the evaluation report)."""
    outcome: Literal["GO", "NO-GO"]
    criteria: list[Criterion] = Field(min_length=1)
    treatment: ArmSummary
    control: ArmSummary
    comparison: Comparison
    provenance: Provenance
    spend_usd: Annotated[float, Field(ge=0)]
    decided_at: AwareDatetime

    @property
    def failed(self) -> list[Criterion]:
        return [c for c in self.criteria if not c.passed]
