"""Payloads between the state machine and its Lambda tasks."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, Field

from .base import Contract
from .exit_codes import AbortReason


class ExecutionInput(Contract):
    """What `aurax start` passes to the state machine."""

    run_id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{2,62}$")
    config_uri: str = Field(pattern=r"^s3://[^/]+/.+")


class RunPlan(Contract):
    """`plan_run`'s output: everything later states need, derived once from the validated config."""

    run_id: str
    config_uri: str
    run_uri: str
    dataset_uri: str
    dataset_ready: bool
    """A manifest for the same dataset fingerprint exists: skip the prepare job."""
    decision_epoch: Annotated[int, Field(ge=1)]
    total_epochs: Annotated[int, Field(ge=1)]


class TaskError(Contract):
    """What a Step Functions Catch puts at its ResultPath."""

    Error: str
    Cause: str = ""
    """For a failed `batch:submitJob.sync`, the job description as JSON (status reason, exit code)."""


class FailureInput(Contract):
    """`classify_failure`'s input: the run and the Step Functions error of a failed task."""

    run_id: str
    stage: Literal["preflight", "prepare", "train", "evaluate"]
    failure: TaskError
    resubmissions: Annotated[int, Field(ge=0)] = 0
    """Resubmissions after transient failures since a stage last succeeded (the execution counts them)."""


class FailureVerdict(Contract):
    run_id: str
    stage: str
    reason: AbortReason
    resumable: bool
    """Submit the training job again at once: it resumes from its checkpoint (bounded by the budget guard)."""
    detail: str
    resubmit: bool = False
    """Submit the failed stage again after `resubmit_after_seconds`: a transient failure, under the cap."""
    resubmit_after_seconds: Annotated[int, Field(ge=0)] = 0
    resubmissions: Annotated[int, Field(ge=0)] = 0
    """The count including this resubmission (the execution keeps it until a stage succeeds)."""


class StopRequest(Contract):
    """Asks a running job to save a checkpoint and exit with the reason's exit code. The control plane writes
    it before terminating the Batch job, so the job stops cleanly wherever it runs (AWS or a laptop)."""

    reason: Literal[AbortReason.DIVERGED, AbortReason.OVER_BUDGET, AbortReason.IDLE]
    detail: str
    requested_at: AwareDatetime
