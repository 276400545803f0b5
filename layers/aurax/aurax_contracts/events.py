"""EventBridge details and alert messages the control plane emits (source `aurax.train-control`)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, Field

from .base import Contract
from .decision import Decision
from .exit_codes import AbortReason

EVENT_SOURCE = "aurax.train-control"


class DetailType(StrEnum):
    DECISION = "AURA-X Decision"
    ALERT = "AURA-X Alert"
    RUN_ABORTED = "AURA-X Run Aborted"
    MODEL_PROMOTED = "AURA-X Model Promoted"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class AlertDetail(Contract):
    """Every alert says what happened, when, the evidence and what to do."""

    run_id: str
    severity: Severity
    code: str = Field(pattern=r"^[a-z0-9-]+$", max_length=60)
    """Stable machine name, e.g. `nan-loss`, `high-loss`, `budget-80`, `idle`: the runbook's headings."""
    what: str = Field(max_length=500)
    step: Annotated[int, Field(ge=0)] | None = None
    epoch: Annotated[int, Field(ge=0)] | None = None
    evidence: dict[str, float | int | str | None] = Field(default_factory=dict)
    action: str = Field(max_length=1000)
    """What the operator should do."""
    time: AwareDatetime

    def subject(self) -> str:
        return f"[AURA-X {self.severity.value.upper()}] {self.run_id}: {self.what}"[:100]

    def message(self) -> str:
        where = ", ".join(x for x in (f"epoch {self.epoch}" if self.epoch is not None else "",
                                      f"step {self.step}" if self.step is not None else "") if x)
        evidence = "\n".join(f"  {k}: {v}" for k, v in self.evidence.items()) or "  (none)"
        return (f"{self.what}\n\nRun: {self.run_id}\nWhen: {self.time.isoformat()}"
                f"{' (' + where + ')' if where else ''}\nSeverity: {self.severity.value}\n\nEvidence:\n"
                f"{evidence}\n\nWhat to do: {self.action}\nRunbook: docs/operations.md#{self.code}\n")


class DecisionDetail(Contract):
    decision: Decision
    report_uri: str
    """The evaluation report (JSON) the decision read; report.html sits beside it."""


class RunAbortedDetail(Contract):
    run_id: str
    reason: AbortReason
    summary: str
    report_uri: str | None
    """Markdown abort report; the HTML one sits beside it."""
    time: AwareDatetime


class ModelPromotedDetail(Contract):
    run_id: str
    model_uri: str
    decision: Decision
    time: AwareDatetime

