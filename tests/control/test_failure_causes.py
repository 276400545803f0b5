"""Real-shaped failed Batch job descriptions (data/batch-failure-causes.json, a copy of shared/cases) and the
handling each must get: from Batch's retry rules (the emulation's evaluator of `evaluateOnExit`) and from
ClassifyFailure (read from the container's reason and the attempts, not only the status)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aurax.local.moto_patches import BatchJobResult, batch_retry_action
from aurax_contracts import AbortReason, FailureInput, batch_retry_strategy
from aurax_control.failures import MAX_RESUBMISSIONS, judge, parse_cause, resubmit_delay

CASES = json.loads((Path(__file__).parent / "data" / "batch-failure-causes.json").read_text())["cases"]
STAGES = ("preflight", "prepare", "train", "evaluate")

#: What Batch's rules do with each case's last attempt: a task that failed to start is retried on the spot;
#: a container the agent could not inspect after it ran exits (five rules cannot name every ECS error) and
#: the state machine resubmits it instead.
BATCH_ACTION = {
    "image pull throttled on a fresh spot host": "RETRY",
    "container runtime timed out creating the container": "RETRY",
    "ECS agent could not inspect a container that had exited": "EXIT",
    "spot reclaim on the last attempt": "RETRY",
    "diverged": "EXIT",
    "unexpected crash": "EXIT",
}


def request(case: dict[str, Any], stage: str = "train", resubmissions: int = 0) -> FailureInput:
    return FailureInput(run_id="run-a", stage=stage, resubmissions=resubmissions,
                        failure={"Error": "States.TaskFailed", "Cause": json.dumps(case["cause"])})


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_batch_rules_handle_each_case(case: dict[str, Any]) -> None:
    failure = parse_cause(json.dumps(case["cause"]))
    assert failure is not None
    result = BatchJobResult(failure.exit_code, failure.status_reason, failure.container_reason)
    assert batch_retry_action(batch_retry_strategy(), result) == BATCH_ACTION[case["name"]]


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_classification_of_each_case(case: dict[str, Any], stage: str) -> None:
    verdict = judge(request(case, stage))
    expect = case["expect"]
    if expect == "retry":
        assert verdict.reason == AbortReason.INFRASTRUCTURE, verdict.detail
        assert verdict.resubmit and verdict.resubmit_after_seconds == resubmit_delay(0)
        assert verdict.resubmissions == 1 and not verdict.resumable
        assert case["cause"]["Container"]["Reason"] in verdict.detail  # the container's reason is reported
    elif expect == "resume":
        assert verdict.reason == AbortReason.RETRIES_EXHAUSTED
        # training resumes from its checkpoint at once; another stage is resubmitted, bounded
        assert (verdict.resumable, verdict.resubmit) == ((True, False) if stage == "train" else (False, True))
    else:
        assert expect.startswith("abort-")
        assert verdict.reason == AbortReason(expect.removeprefix("abort-"))
        assert not verdict.resumable and not verdict.resubmit


@pytest.mark.parametrize("case", [c for c in CASES if c["expect"] == "retry"], ids=lambda c: c["name"])
def test_a_flapping_infrastructure_fault_is_capped(case: dict[str, Any]) -> None:
    delays = [judge(request(case, "evaluate", n)).resubmit_after_seconds for n in range(MAX_RESUBMISSIONS)]
    assert delays == sorted(delays) and delays[0] < delays[-1]  # backoff grows
    capped = judge(request(case, "evaluate", MAX_RESUBMISSIONS))
    assert capped.reason == AbortReason.INFRASTRUCTURE and not capped.resubmit and not capped.resumable
    assert f"after {MAX_RESUBMISSIONS} resubmissions" in capped.detail


@pytest.mark.parametrize(("status", "reason", "exit_code"), [
    ("Task failed to start", "CannotPullContainerError: pull image manifest has been retried 5 time(s): failed "
     "to resolve ref 123456789012.dkr.ecr.us-east-1.amazonaws.com/aurax-job:latest: not found", None),
    ("Task failed to start", "CannotPullContainerError: pull access denied for aurax-job, repository does not "
     "exist", None),
    ("Task failed to start", 'CannotStartContainerError: Error response from daemon: failed to create shim task: '
     'OCI runtime create failed: exec: "aurax": executable file not found in $PATH', None),
    ("Essential container in task exited", "OutOfMemoryError: Container killed due to memory usage", 137),
])
def test_deployment_errors_and_oom_are_not_retried_as_transient(status: str, reason: str,
                                                                 exit_code: int | None) -> None:
    cause = {"Status": "FAILED", "StatusReason": status, "Container": {"Reason": reason, "ExitCode": exit_code}}
    verdict = judge(FailureInput(run_id="run-a", stage="preflight",
                                 failure={"Error": "States.TaskFailed", "Cause": json.dumps(cause)}))
    assert verdict.reason == AbortReason.JOB_FAILED and not verdict.resubmit
    assert reason in verdict.detail


def test_the_container_reason_of_the_last_attempt_counts_when_the_job_has_none() -> None:
    cause = {"jobId": "j", "status": "FAILED", "statusReason": "Essential container in task exited",
             "container": {}, "attempts": [
                 {"container": {"exitCode": 75}, "statusReason": "Essential container in task exited"},
                 {"container": {"reason": "DockerTimeoutError: Could not transition to running"},
                  "statusReason": "Essential container in task exited"}]}
    failure = parse_cause(json.dumps(cause))
    assert failure is not None and failure.container_reason.startswith("DockerTimeoutError")
    verdict = judge(FailureInput(run_id="run-a", stage="train",
                                 failure={"Error": "States.TaskFailed", "Cause": json.dumps(cause)}))
    assert verdict.reason == AbortReason.INFRASTRUCTURE and verdict.resubmit
    assert "after 2 Batch attempt(s)" in verdict.detail


def test_a_recorded_control_plane_reason_is_never_resubmitted() -> None:
    case = next(c for c in CASES if c["expect"] == "retry")
    verdict = judge(request(case), AbortReason.IDLE, "no heartbeat for 2 h")
    assert verdict.reason == AbortReason.IDLE and not verdict.resubmit
    assert "no heartbeat for 2 h" in verdict.detail
