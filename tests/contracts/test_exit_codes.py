"""The exit-code contract: Batch retry rules and failure classification agree with each other."""

from __future__ import annotations

import fnmatch

import pytest

from aurax_contracts import AbortReason, JobExit, batch_retry_strategy, classify_failure
from aurax_contracts.exit_codes import RESUMABLE, terminate_reason


def batch_action(exit_code: int | None, status_reason: str, reason: str = "") -> str:
    """What AWS Batch does with a failed attempt under our rules (first match wins; no match retries)."""
    for rule in batch_retry_strategy()["EvaluateOnExit"]:  # type: ignore[union-attr]
        checks = []
        if "OnExitCode" in rule:
            checks.append(exit_code is not None and fnmatch.fnmatch(str(exit_code), rule["OnExitCode"]))
        if "OnStatusReason" in rule:
            checks.append(fnmatch.fnmatch(status_reason, rule["OnStatusReason"]))
        if "OnReason" in rule:
            checks.append(fnmatch.fnmatch(reason, rule["OnReason"]))
        if all(checks):
            return rule["Action"]
    return "RETRY"


@pytest.mark.parametrize(
    ("exit_code", "status", "action"),
    [
        (JobExit.INTERRUPTED, "Essential container in task exited", "RETRY"),
        (None, "Host EC2 (instance i-0abc) terminated.", "RETRY"),
        (JobExit.DIVERGED, "Essential container in task exited", "EXIT"),
        (JobExit.OVER_BUDGET, "Essential container in task exited", "EXIT"),
        (JobExit.BAD_CONFIG, "Essential container in task exited", "EXIT"),
        (JobExit.ERROR, "Essential container in task exited", "EXIT"),
        (JobExit.SUCCEEDED, "", "EXIT"),
        (JobExit.INTERRUPTED, terminate_reason(AbortReason.OVER_BUDGET, "spend 601 of 600"), "EXIT"),
        (137, "aurax:idle: no heartbeat for 2h", "EXIT"),
    ],
)
def test_batch_retries_only_interruptions(exit_code: int | None, status: str, action: str) -> None:
    assert batch_action(exit_code, status) == action


def test_every_exit_rule_set_ends_with_catch_all_exit() -> None:
    rules = batch_retry_strategy()["EvaluateOnExit"]
    assert rules[-1] == {"OnReason": "*", "Action": "EXIT"}  # type: ignore[index]
    assert len(rules) <= 5  # type: ignore[arg-type]  # Batch's limit


@pytest.mark.parametrize(
    ("exit_code", "status", "reason"),
    [
        (JobExit.DIVERGED, "Essential container in task exited", AbortReason.DIVERGED),
        (JobExit.BAD_CONFIG, "", AbortReason.BAD_CONFIG),
        (JobExit.BAD_INPUT, "", AbortReason.BAD_INPUT),
        (JobExit.PREFLIGHT_FAILED, "", AbortReason.PREFLIGHT_FAILED),
        (JobExit.INTERRUPTED, "", AbortReason.RETRIES_EXHAUSTED),
        (None, "Host EC2 (instance i-1) terminated.", AbortReason.RETRIES_EXHAUSTED),
        (JobExit.INTERRUPTED, terminate_reason(AbortReason.OVER_BUDGET, "x"), AbortReason.OVER_BUDGET),
        (None, terminate_reason(AbortReason.IDLE, "x"), AbortReason.IDLE),
        (None, "aurax:unheard-of: x", AbortReason.JOB_FAILED),
        (3, "", AbortReason.JOB_FAILED),
        (None, "Job attempt duration exceeded timeout", AbortReason.TIMED_OUT),
        (JobExit.INTERRUPTED, "Job attempt duration exceeded timeout", AbortReason.TIMED_OUT),
    ],
)
def test_classify_failure(exit_code: int | None, status: str, reason: AbortReason) -> None:
    assert classify_failure(exit_code, status) == reason


def test_only_exhausted_interruptions_and_timeouts_resume() -> None:
    assert RESUMABLE == {AbortReason.RETRIES_EXHAUSTED, AbortReason.TIMED_OUT}
