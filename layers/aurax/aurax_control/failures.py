"""Why a Batch stage failed, from the job description a failed `batch:submitJob.sync` task reports, and what
the state machine does next: resume training, resubmit the stage after a backoff (bounded), or abort.

Resubmission policy (bounded, with backoff): a transient failure (infrastructure, or a non-training stage
whose Batch attempts ran out on spot reclaims) is resubmitted after `resubmit_delay(n)` seconds, at most
`MAX_RESUBMISSIONS` times in a row; any stage that succeeds resets the count (the state machine does). The cap
reached, the run aborts with the failure's reason and the abort message is the alert. Training that used up
its attempts on interruptions resumes at once and without this cap: the budget guard bounds it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aurax_contracts import AbortReason, FailureInput, FailureVerdict, classify_failure
from aurax_contracts.exit_codes import RESUMABLE

#: Resubmissions in a row after transient failures before the run aborts (each one after Batch's own attempts).
MAX_RESUBMISSIONS = 4
#: First backoff; it doubles with each resubmission in a row (2, 4, 8, 16 minutes), capped below.
BASE_DELAY_SECONDS = 120
MAX_DELAY_SECONDS = 1800
TRAINING_STAGE = "train"


@dataclass(frozen=True)
class BatchFailure:
    """What a failed job description says about its last attempt."""

    exit_code: int | None
    status_reason: str | None
    container_reason: str | None
    """The container's `reason` (`CannotPullContainerError: ...`, `OutOfMemoryError: ...`), if any."""
    attempts: int


def _lower_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k).lower(): _lower_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_lower_keys(v) for v in value]
    return value


def parse_cause(cause: str) -> BatchFailure | None:
    """The failure in a failed Batch task's Cause: the job description as JSON, with the PascalCase keys Step
    Functions writes (`Container.Reason`) or the API's camelCase (`container.reason`). The job's own fields
    describe its last attempt; where one is missing, the last entry of `attempts` supplies it. None when the
    Cause is not a job description (a States.Timeout, a Lambda error)."""
    try:
        job = _lower_keys(json.loads(cause))
    except (json.JSONDecodeError, TypeError):
        return None
    if not isinstance(job, dict):
        return None
    attempts = [a for a in job.get("attempts") or [] if isinstance(a, dict)]
    last = attempts[-1] if attempts else {}
    container = job.get("container") or {}
    last_container = last.get("container") or {}
    exit_code = container.get("exitcode")
    if exit_code is None:
        exit_code = last_container.get("exitcode")
    return BatchFailure(
        exit_code=int(exit_code) if isinstance(exit_code, (int, float)) else None,
        status_reason=job.get("statusreason") or last.get("statusreason"),
        container_reason=container.get("reason") or last_container.get("reason"),
        attempts=len(attempts))


def resubmit_delay(resubmissions: int) -> int:
    """Seconds to wait before resubmission number `resubmissions + 1` (exponential, capped)."""
    return min(MAX_DELAY_SECONDS, BASE_DELAY_SECONDS * 2 ** resubmissions)


def _is_transient(reason: AbortReason, stage: str) -> bool:
    return reason == AbortReason.INFRASTRUCTURE or (
        reason == AbortReason.RETRIES_EXHAUSTED and stage != TRAINING_STAGE)


def judge(request: FailureInput, recorded: AbortReason | None = None, recorded_detail: str | None = None
          ) -> FailureVerdict:
    """The verdict on a failed stage. `recorded` is the reason the control plane stored before it terminated
    the job (the job itself only saw SIGTERM): it is the truth when present."""
    failure = parse_cause(request.failure.Cause)
    if request.failure.Error == "BadConfigError":
        reason = AbortReason.BAD_CONFIG
    elif failure is None:
        reason = AbortReason.JOB_FAILED
    else:
        reason = classify_failure(failure.exit_code, failure.status_reason, failure.container_reason)
    if recorded is not None:
        reason = recorded
    parts = [f"{request.stage} failed: {request.failure.Error}"]
    if failure is not None:
        parts += [f"exit code {failure.exit_code}" if failure.exit_code is not None else "",
                  f"status: {failure.status_reason}" if failure.status_reason else "",
                  f"container: {failure.container_reason}" if failure.container_reason else "",
                  f"after {failure.attempts} Batch attempt(s)" if failure.attempts else ""]
    if recorded is not None and recorded_detail:
        parts.append(f"recorded by the control plane: {recorded_detail}")
    if failure is None or not (failure.status_reason or failure.exit_code is not None):
        parts.append(request.failure.Cause[:300])
    resubmit = recorded is None and _is_transient(reason, request.stage)
    if resubmit and request.resubmissions >= MAX_RESUBMISSIONS:
        resubmit = False
        parts.append(f"still failing after {request.resubmissions} resubmissions with backoff (the cap): a "
                     "persistent fault of the instances, the image registry or the ECS agent")
    detail = "; ".join(p for p in parts if p)
    return FailureVerdict(
        run_id=request.run_id, stage=request.stage, reason=reason,
        resumable=request.stage == TRAINING_STAGE and reason in RESUMABLE, detail=detail[:2000],
        resubmit=resubmit, resubmit_after_seconds=resubmit_delay(request.resubmissions) if resubmit else 0,
        resubmissions=request.resubmissions + 1 if resubmit else request.resubmissions)
