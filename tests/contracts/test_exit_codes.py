"""The exit-code contract: Batch retry rules and failure classification agree with each other."""

from __future__ import annotations

import fnmatch
import re

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
        (None, "Task failed to start", "RETRY"),
    ],
)
def test_batch_retries_interruptions_and_tasks_that_failed_to_start(exit_code: int | None, status: str,
                                                                   action: str) -> None:
    assert batch_action(exit_code, status) == action


def test_rule_patterns_are_what_batch_accepts() -> None:
    # AWS Batch API Reference, EvaluateOnExit: exit codes are digits; reasons letters, digits, periods, colons
    # and white space; each may end with one `*`; at most 512 characters; action RETRY or EXIT.
    for rule in batch_retry_strategy()["EvaluateOnExit"]:  # type: ignore[union-attr]
        assert rule["Action"] in ("RETRY", "EXIT")
        for key, allowed in (("OnExitCode", r"[0-9]*"), ("OnStatusReason", r"[A-Za-z0-9.: \t]*"),
                             ("OnReason", r"[A-Za-z0-9.: \t]*")):
            if key in rule:
                assert re.fullmatch(allowed + r"\*?", rule[key]) and len(rule[key]) <= 512, rule


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
        (None, "Task failed to start", AbortReason.INFRASTRUCTURE),
    ],
)
def test_classify_failure(exit_code: int | None, status: str, reason: AbortReason) -> None:
    assert classify_failure(exit_code, status) == reason


@pytest.mark.parametrize(("exit_code", "status", "container", "reason"), [
    (None, "Essential container in task exited", "CannotInspectContainerError: timed out", AbortReason.INFRASTRUCTURE),
    (None, "Task failed to start", "CannotPullContainerError: 429 Too Many Requests", AbortReason.INFRASTRUCTURE),
    (None, "Task failed to start", "ResourceInitializationError: unable to pull secrets", AbortReason.INFRASTRUCTURE),
    (None, "Essential container in task exited", "AGENT", AbortReason.INFRASTRUCTURE),
    (None, "Task failed to start", "CannotPullContainerError: aurax-job:v9: not found", AbortReason.JOB_FAILED),
    (137, "Essential container in task exited", "OutOfMemoryError: Container killed", AbortReason.JOB_FAILED),
    (None, "aurax:idle: quiet", "CannotInspectContainerError: timed out", AbortReason.IDLE),
    (JobExit.DIVERGED, "Essential container in task exited", None, AbortReason.DIVERGED),
])
def test_classify_failure_reads_the_container_reason(exit_code: int | None, status: str, container: str | None,
                                                     reason: AbortReason) -> None:
    assert classify_failure(exit_code, status, container) == reason


def test_only_exhausted_interruptions_and_timeouts_resume() -> None:
    assert RESUMABLE == {AbortReason.RETRIES_EXHAUSTED, AbortReason.TIMED_OUT}
