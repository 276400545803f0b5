"""The one retry/exit-code contract shared by the job, Batch `evaluateOnExit` and Step Functions.

Batch retries a job for spot reclaims, for `INTERRUPTED` (the job wrote an emergency checkpoint) and for a
task that failed to start on its host (image pull, container runtime, ECS agent); everything else exits at
once, and Step Functions classifies the failure instead of retrying it, so no failure is retried twice or not
at all. Transient infrastructure failures that Batch's five rules cannot name (an ECS agent that could not
inspect a container that already ran) are classified from the container's reason and resubmitted by the state
machine, a bounded number of times.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class JobExit(IntEnum):
    """Process exit codes of `aurax job ...` (values follow sysexits.h where one fits)."""

    SUCCEEDED = 0
    ERROR = 1  # an unexpected bug: not retried, a person must look
    BAD_CONFIG = 64  # EX_USAGE: the run config or arguments are wrong
    BAD_INPUT = 65  # EX_DATAERR: dataset, manifest or checkpoint is missing or corrupt
    INTERRUPTED = 75  # EX_TEMPFAIL: emergency checkpoint written; Batch retries and the job resumes
    DIVERGED = 76  # NaN/Inf loss or collapsing loss scale; last good checkpoint kept
    OVER_BUDGET = 77  # the job saw the budget guard's stop flag
    PREFLIGHT_FAILED = 78  # a preflight check failed; nothing was spent on training


class AbortReason(StrEnum):
    """Why a run stopped early; the state machine and reports use these words."""

    DIVERGED = "diverged"
    OVER_BUDGET = "over-budget"
    IDLE = "idle"
    BAD_CONFIG = "bad-config"
    BAD_INPUT = "bad-input"
    PREFLIGHT_FAILED = "preflight-failed"
    RETRIES_EXHAUSTED = "retries-exhausted"
    TIMED_OUT = "timed-out"
    INFRASTRUCTURE = "infrastructure"
    """Transient infrastructure failures (image pull, container runtime, ECS agent) kept recurring after the
    state machine's bounded resubmissions."""
    JOB_FAILED = "job-failed"
    NO_GO = "no-go"


#: Prefix of the reason the control plane gives `batch:TerminateJob`, so Batch never retries its own kills.
TERMINATE_REASON_PREFIX = "aurax:"

#: The status reason Batch gives an attempt that ran past its job definition's timeout (never retried by Batch).
TIMEOUT_STATUS_REASON = "Job attempt duration exceeded timeout"

#: The status reason of an attempt whose ECS task never started its container (pull, create, start); the
#: container's `reason` says why. Source: AWS Batch User Guide, "Automated job retries" (its example retries it).
TASK_FAILED_TO_START = "Task failed to start"

#: The status reason of an attempt whose instance went away (spot reclaim, instance failure).
HOST_TERMINATED_PREFIX = "Host EC2"

#: Container `reason` prefixes of failures of the host, not of the job: Amazon ECS "Stopped task error codes"
#: (CannotPullContainerError ... ResourceInitializationError) and ECS's `AGENT` failure (the instance's container
#: agent is disconnected). Each is worth another try on another attempt or host.
TRANSIENT_CONTAINER_REASONS = (
    "CannotPullContainerError", "CannotCreateContainerError", "CannotStartContainerError",
    "CannotInspectContainerError", "CannotStopContainerError", "DockerTimeoutError", "ContainerRuntimeError",
    "ContainerRuntimeTimeoutError", "ResourceInitializationError", "InternalError", "AGENT",
)

#: ... unless the reason says the deployment itself is wrong (no retry helps): the image or tag does not exist,
#: access to the registry is denied, or the image has no such executable (ECS "CannotPullContainerError" and
#: "CannotStartContainerError" troubleshooting pages). Matched case-insensitively anywhere in the reason.
PERMANENT_CONTAINER_MARKERS = (
    "not found", "manifest unknown", "does not exist", "accessdenied", "access denied", "denied:",
    "no basic auth credentials", "unauthorized",
)

#: Batch job attempts (Batch allows 1-10). Exhausting them on interruptions sends the state machine round
#: again from the last checkpoint, so a run of weeks is not limited by this number.
BATCH_ATTEMPTS = 10

EXIT_TO_REASON: dict[JobExit, AbortReason] = {
    JobExit.ERROR: AbortReason.JOB_FAILED,
    JobExit.BAD_CONFIG: AbortReason.BAD_CONFIG,
    JobExit.BAD_INPUT: AbortReason.BAD_INPUT,
    JobExit.INTERRUPTED: AbortReason.RETRIES_EXHAUSTED,
    JobExit.DIVERGED: AbortReason.DIVERGED,
    JobExit.OVER_BUDGET: AbortReason.OVER_BUDGET,
    JobExit.PREFLIGHT_FAILED: AbortReason.PREFLIGHT_FAILED,
}


def terminate_reason(reason: AbortReason, detail: str) -> str:
    """The `reason` string for `batch:TerminateJob` (Batch caps it; keep it short)."""
    return f"{TERMINATE_REASON_PREFIX}{reason.value}: {detail}"[:250]


def batch_retry_strategy() -> dict[str, object]:
    """The `RetryStrategy` every job definition uses (template.yaml must equal this; a test checks it).

    Order matters: Batch applies the first matching rule, and retries when none matches, hence the final
    catch-all EXIT. Batch allows at most five rules, hence one rule for a task that failed to start (whatever
    the container's reason) and none for the rarer failures after the container ran
    (`CannotInspectContainerError`): those exit here and the state machine resubmits them
    (`is_transient_infrastructure`). Source: AWS Batch API Reference, `EvaluateOnExit`.
    """
    return {
        "Attempts": BATCH_ATTEMPTS,
        "EvaluateOnExit": [
            {"OnStatusReason": f"{TERMINATE_REASON_PREFIX}*", "Action": "EXIT"},
            {"OnStatusReason": f"{HOST_TERMINATED_PREFIX}*", "Action": "RETRY"},
            {"OnStatusReason": f"{TASK_FAILED_TO_START}*", "Action": "RETRY"},
            {"OnExitCode": str(int(JobExit.INTERRUPTED)), "Action": "RETRY"},
            {"OnReason": "*", "Action": "EXIT"},
        ],
    }


def is_transient_infrastructure(status_reason: str | None, container_reason: str | None) -> bool:
    """The attempt failed on its host, before or around the job's own code, for a reason another try may not
    meet: a task that failed to start, or a container reason in `TRANSIENT_CONTAINER_REASONS`, unless the
    container's reason shows a deployment error (`PERMANENT_CONTAINER_MARKERS`)."""
    reason = container_reason or ""
    if any(marker in reason.lower() for marker in PERMANENT_CONTAINER_MARKERS):
        return False
    return reason.startswith(TRANSIENT_CONTAINER_REASONS) or \
        bool(status_reason and status_reason.startswith(TASK_FAILED_TO_START))


def classify_failure(exit_code: int | None, status_reason: str | None,
                     container_reason: str | None = None) -> AbortReason:
    """Why a Batch job that Step Functions saw fail stopped.

    A control-plane termination carries its reason in the status reason; a timeout says so there too; a
    failure of the host (`is_transient_infrastructure`, read from the container's `reason`) is
    `INFRASTRUCTURE`; otherwise the job's own exit code says; a job killed with no exit code (spot reclaim on
    its last attempt) counts as exhausted retries.
    """
    if status_reason and status_reason.startswith(TERMINATE_REASON_PREFIX):
        word = status_reason[len(TERMINATE_REASON_PREFIX):].split(":", 1)[0].strip()
        try:
            return AbortReason(word)
        except ValueError:
            return AbortReason.JOB_FAILED
    if status_reason and status_reason.startswith(TIMEOUT_STATUS_REASON):
        return AbortReason.TIMED_OUT
    if is_transient_infrastructure(status_reason, container_reason):
        return AbortReason.INFRASTRUCTURE
    if exit_code is None:
        return AbortReason.RETRIES_EXHAUSTED if status_reason and status_reason.startswith(HOST_TERMINATED_PREFIX) \
            else AbortReason.JOB_FAILED
    try:
        return EXIT_TO_REASON.get(JobExit(exit_code), AbortReason.JOB_FAILED)
    except ValueError:
        return AbortReason.JOB_FAILED


#: Abort reasons after which the state machine submits a training job again; it resumes from its last
#: checkpoint. Batch allows only 10 attempts and never retries a timed-out one, and a run lasts weeks.
RESUMABLE = frozenset({AbortReason.RETRIES_EXHAUSTED, AbortReason.TIMED_OUT})
