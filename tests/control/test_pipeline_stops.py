"""The control plane stopping a run through the real state machine: the train job writes its metrics, the S3
notification runs the real metrics monitor, the real cost ledger or idle watch (invoked as their schedules would)
terminates the job, and the execution ends in the state that says why. (The path tests in tests/infra play the
termination; here the control plane's own handlers do it.)"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import boto3

from aurax.local.moto_patches import BatchJobResult, BatchJobRun
from aurax_contracts import JobExit, RunConfig
from tests.infra.test_pipeline_paths import FakeJobs, Observed, _s3_put, run_pipeline  # noqa: F401 - fixture

from .records import line, train

RUN_ID = "path-test"  # the run the pipeline fixture starts


def _wait_for_termination(job: BatchJobRun, by: str) -> BatchJobResult:
    """Block like a running job until the control plane terminates it; then exit as the real job's SIGTERM
    handler does (75, interrupted), which Batch must not retry after our own kill."""
    deadline = time.monotonic() + 30
    while job.stop_reason() is None:
        assert time.monotonic() < deadline, f"the {by} never terminated the job"
        time.sleep(0.05)
    return BatchJobResult(int(JobExit.INTERRUPTED), "Essential container in task exited")


def _invoke_scheduled(function_fragment: str) -> None:
    """Invoke a scheduled handler the way its EventBridge schedule does."""
    client = boto3.client("lambda", region_name="us-east-1")
    name = next(f["FunctionName"] for f in client.list_functions()["Functions"]
                if function_fragment in f["FunctionName"])
    event = {"version": "0", "id": "schedule-1", "detail-type": "Scheduled Event", "source": "aws.events",
             "account": "123456789012", "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
             "region": "us-east-1", "resources": ["arn:aws:events:us-east-1:123456789012:rule/schedule"],
             "detail": {}}
    response = client.invoke(FunctionName=name, Payload=json.dumps(event).encode())
    assert "FunctionError" not in response, response["Payload"].read()


def _beat(job: BatchJobRun, at: datetime, total_steps: int = 1000, zone: str = "us-east-1a") -> None:
    chunk = line("heartbeat", RUN_ID, at, step=1, epoch=0, attempt=job.attempt, instance_type="g4dn.xlarge",
                 availability_zone=zone, batch_job_id=job.job_id, total_steps=total_steps)
    _s3_put(f"{job.parameters['run_uri']}/metrics/attempt-{job.attempt:04d}/chunk-00000000.jsonl", chunk)


def over_budget_train(job: BatchJobRun) -> BatchJobResult:
    """One step done of a run of 10^8 steps: at this step's cost the projection is far over budget, though the
    spend so far is not; the ledger stops the job before the money is spent. (The zone has no spot price history
    in moto, whose prices are a token $0.00001/h, so the ledger prices the attempt at its on-demand fallback.)"""
    _beat(job, datetime.now(UTC), total_steps=10**8, zone="us-east-1x")
    _invoke_scheduled("CostLedgerFunction")
    return _wait_for_termination(job, "cost ledger")


def _running_for(job: BatchJobRun, hours: float) -> None:
    """Backdate the running attempt in moto's Batch, as if it had started `hours` ago (moto has no clock)."""
    from moto.batch.models import batch_backends
    from moto.core.utils import unix_time_millis

    model = batch_backends["123456789012"]["us-east-1"]._jobs[job.job_id]
    model.job_started_at = datetime.now() - timedelta(hours=hours)  # naive, as moto's own clock reads
    model.latest_attempt["startedAt"] = int(unix_time_millis(model.job_started_at))


def hung_train(job: BatchJobRun) -> BatchJobResult:
    """Running for three hours, its last heartbeat 2.5 hours old: it hung; the idle watch stops it."""
    _running_for(job, hours=3)
    _beat(job, datetime.now(UTC) - timedelta(hours=2.5))
    _invoke_scheduled("IdleWatchFunction")
    return _wait_for_termination(job, "idle watch")


def diverging_train(job: BatchJobRun) -> BatchJobResult:
    """Writes a chunk whose loss turns NaN, then waits for the control plane to terminate it, as the real job
    would be killed: its SIGTERM handler exits 75 (interrupted), which Batch must not retry after our kill."""
    now = datetime.now(UTC)
    # No heartbeat has named the job yet: the monitor must find it in the stack's job queues itself.
    chunk = b"\n".join([train(10, 2.0, at=now, run_id=RUN_ID), train(20, float("nan"), at=now, run_id=RUN_ID)])
    _s3_put(f"{job.parameters['run_uri']}/metrics/attempt-{job.attempt:04d}/chunk-00000001.jsonl", chunk)
    return _wait_for_termination(job, "metrics monitor")


def test_the_monitor_stops_a_diverged_run(run_pipeline: Callable[..., Observed]) -> None:  # noqa: F811
    observed = run_pipeline(FakeJobs({"train": diverging_train}))
    assert (observed.status, observed.final_state) == ("FAILED", "AbortedDiverged")
    assert [stage for stage in observed.jobs.stages() if stage == "train"] == ["train"]  # never retried
    alerts = [e["detail"] for e in observed.events if e["detail-type"] == "AURA-X Alert"]
    assert [a["code"] for a in alerts] == ["nan-loss"] and alerts[0]["step"] == 20
    aborted = [e["detail"] for e in observed.events if e["detail-type"] == "AURA-X Run Aborted"]
    assert [a["reason"] for a in aborted] == ["diverged"]
    assert any(m.get("Subject", "").startswith("[AURA-X CRITICAL] path-test: Training diverged")
               for m in observed.alerts)


def test_the_cost_ledger_stops_a_run_over_budget(run_pipeline: Callable[..., Observed]) -> None:  # noqa: F811
    config = RunConfig(run_id=RUN_ID, training={"total_epochs": 2, "decision_epoch": 1},
                       budget={"budget_usd": 1.0})
    observed = run_pipeline(FakeJobs({"train": over_budget_train}), config_text=config.model_dump_json())
    assert (observed.status, observed.final_state) == ("FAILED", "AbortedOverBudget")
    assert [stage for stage in observed.jobs.stages() if stage == "train"] == ["train"]  # never retried
    alerts = [e["detail"] for e in observed.events if e["detail-type"] == "AURA-X Alert"]
    over = [a for a in alerts if a["code"] == "over-budget"]
    assert len(over) == 1 and over[0]["evidence"]["spend_usd"] < 1.0 < over[0]["evidence"]["projected_usd"]
    aborted = [e["detail"] for e in observed.events if e["detail-type"] == "AURA-X Run Aborted"]
    assert [a["reason"] for a in aborted] == ["over-budget"]


def test_the_idle_watch_stops_a_hung_run(run_pipeline: Callable[..., Observed]) -> None:  # noqa: F811
    observed = run_pipeline(FakeJobs({"train": hung_train}))
    assert (observed.status, observed.final_state) == ("FAILED", "AbortedIdle")
    assert [stage for stage in observed.jobs.stages() if stage == "train"] == ["train"]
    alerts = [e["detail"] for e in observed.events if e["detail-type"] == "AURA-X Alert"]
    assert [a["code"] for a in alerts if a["severity"] == "critical"] == ["idle"]
    aborted = [e["detail"] for e in observed.events if e["detail-type"] == "AURA-X Run Aborted"]
    assert [a["reason"] for a in aborted] == ["idle"]
