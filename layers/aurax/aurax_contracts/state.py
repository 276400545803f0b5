"""Run state and cost ledger, kept in the run-state DynamoDB table and shown by the CLI and dashboard."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, Field

from .base import Contract
from .exit_codes import AbortReason

RunStatus = Literal["planned", "preparing", "training", "evaluating", "decided", "aborted", "promoted", "finished"]


class AttemptCost(Contract):
    """One Batch attempt of one job, interrupted ones included."""

    job_id: str
    job_name: str | None = None
    """`<run_id>-<stage>...` as the state machine names it; the projection counts only training attempts."""
    attempt: Annotated[int, Field(ge=1)]
    instance_type: str | None
    availability_zone: str | None
    started_at: AwareDatetime
    stopped_at: AwareDatetime | None
    """None while running (costed up to the ledger's update time)."""
    usd_per_hour: Annotated[float, Field(ge=0)]
    price_source: Literal["spot-history", "fallback"]
    price_note: str | None = None
    """Why the on-demand fallback price was used (None when priced from spot history)."""
    cost_usd: Annotated[float, Field(ge=0)]


class CostLedger(Contract):
    run_id: str
    attempts: list[AttemptCost] = Field(default_factory=list)
    compute_usd: Annotated[float, Field(ge=0)] = 0.0
    storage_usd: Annotated[float, Field(ge=0)] = 0.0
    """Estimate: stored bytes x S3 price x elapsed months, plus requests (see BudgetConfig)."""
    spend_usd: Annotated[float, Field(ge=0)] = 0.0
    projected_usd: Annotated[float, Field(ge=0)] | None = None
    """spend + remaining steps x measured cost per step; None until a step rate is known."""
    usd_per_step: Annotated[float, Field(ge=0)] | None = None
    budget_usd: Annotated[float, Field(gt=0)]
    alerted_fractions: list[float] = Field(default_factory=list)
    fallback_alerts: list[str] = Field(default_factory=list)
    """Alert codes already sent about attempts priced at the on-demand fallback (each is sent once per run)."""
    updated_at: AwareDatetime


class RunState(Contract):
    run_id: str
    status: RunStatus = "planned"
    abort_reason: AbortReason | None = None
    abort_detail: str | None = None
    execution_arn: str | None = None
    current_job_id: str | None = None
    training_started_at: AwareDatetime | None = None
    last_heartbeat_at: AwareDatetime | None = None
    last_progress_at: AwareDatetime | None = None
    """When the job last finished work (a step, a validation batch, checkpoint bytes): what the idle watch
    judges, since a hung job's heartbeat thread goes on beating."""
    step: Annotated[int, Field(ge=0)] = 0
    epoch: Annotated[int, Field(ge=0)] = 0
    total_steps: Annotated[int, Field(ge=0)] | None = None
    last_loss: float | None = None
    last_val_loss: float | None = None
    interruptions: Annotated[int, Field(ge=0)] = 0
    alerts_sent: Annotated[int, Field(ge=0)] = 0
    bad_lines: Annotated[int, Field(ge=0)] = 0
    updated_at: AwareDatetime
