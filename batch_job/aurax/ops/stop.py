"""Stop a run on purpose: end its execution and terminate its Batch jobs (each checkpoints on SIGTERM, so the
run can be resumed later by starting it again)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from aurax_contracts.exit_codes import TERMINATE_REASON_PREFIX

from .stack_outputs import StackOutputs
from .start import running_execution
from .status import UnknownRun

#: The Batch status reason of an operator's stop: the `aurax:` prefix makes Batch exit instead of retrying.
STOP_REASON = f"{TERMINATE_REASON_PREFIX}stopped: by the operator (aurax stop)"
_ACTIVE = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")


@dataclass(frozen=True)
class StoppedRun:
    run_id: str
    execution_arn: str | None
    terminated_jobs: list[str]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def run_jobs(batch: Any, queues: list[str], run_id: str) -> list[str]:
    """Active Batch jobs of the run (the state machine names them `<run_id>-<stage>`)."""
    found = []
    for queue in queues:
        for status in _ACTIVE:
            for page in batch.get_paginator("list_jobs").paginate(jobQueue=queue, jobStatus=status):
                found += [j["jobId"] for j in page["jobSummaryList"] if j["jobName"].startswith(f"{run_id}-")]
    return found


def stop_run(stack: StackOutputs, run_id: str, *, sfn: Any, batch: Any) -> StoppedRun:
    execution = running_execution(sfn, stack.state_machine_arn, run_id)
    jobs = run_jobs(batch, list(stack.job_queues), run_id)
    if execution is None and not jobs:
        raise UnknownRun(f"run {run_id!r} has no running execution and no active job; nothing to stop "
                         f"(`aurax status {run_id}` shows how it ended)")
    if execution:
        sfn.stop_execution(executionArn=execution, error="StoppedByOperator",
                           cause=f"aurax stop {run_id}: the run was stopped on purpose; start it again to resume")
    for job_id in jobs:
        batch.terminate_job(jobId=job_id, reason=STOP_REASON)
    return StoppedRun(run_id, execution, jobs)
