"""The control plane stopping a run through the real state machine: the train job writes its metrics, the S3
notification runs the real metrics monitor, which terminates the job, and the execution ends in the state that
says why (the path tests in tests/infra play the termination; here the monitor does it)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from aurax.local.moto_patches import BatchJobResult, BatchJobRun
from aurax_contracts import JobExit

from tests.infra.test_pipeline_paths import FakeJobs, Observed, _s3_put, run_pipeline  # noqa: F401 - fixture

from .records import train

RUN_ID = "path-test"  # the run the pipeline fixture starts


def diverging_train(job: BatchJobRun) -> BatchJobResult:
    """Writes a chunk whose loss turns NaN, then waits for the control plane to terminate it, as the real job
    would be killed: its SIGTERM handler exits 75 (interrupted), which Batch must not retry after our kill."""
    now = datetime.now(UTC)
    # No heartbeat has named the job yet: the monitor must find it in the stack's job queues itself.
    chunk = b"\n".join([train(10, 2.0, at=now, run_id=RUN_ID), train(20, float("nan"), at=now, run_id=RUN_ID)])
    _s3_put(f"{job.parameters['run_uri']}/metrics/attempt-{job.attempt:04d}/chunk-00000001.jsonl", chunk)
    deadline = time.monotonic() + 30
    while job.stop_reason() is None:
        assert time.monotonic() < deadline, "the metrics monitor never terminated the diverged job"
        time.sleep(0.05)
    return BatchJobResult(int(JobExit.INTERRUPTED), "Essential container in task exited")


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
