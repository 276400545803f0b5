"""The idle watch judges progress, not heartbeats: the monitor's progress rules on crafted streams, and the
handlers against moto with a job that goes on beating while its counters stand still."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3

from aurax_contracts.config import MonitoringConfig
from aurax_control.monitor import ChunkMonitor, MonitorState

from .conftest import BUCKET, FakeContext, load_handler, s3_event, scheduled_event
from .records import T0, heartbeat, line, train
from .test_handlers import RUN, job, plan, state

CTX = FakeContext()
STEPS = {"optimizer_steps": 40, "validation_batches": 0, "checkpoint_bytes": 0}


def feed(state: MonitorState, *lines: bytes) -> MonitorState:
    monitor = ChunkMonitor("run-a", MonitoringConfig(), state)
    for item in lines:
        monitor.feed_line(item)
    return monitor.finish(T0 + timedelta(days=1)).state


def test_only_growing_counters_and_records_of_finished_work_count_as_progress() -> None:
    at = [T0 + timedelta(minutes=m) for m in range(10)]
    s = feed(MonitorState(), heartbeat(40, at[0], progress=STEPS))
    assert s.last_progress_at == at[0]  # the attempt's first heartbeat: its start counts
    s = feed(s, heartbeat(40, at[1], progress=STEPS), heartbeat(40, at[2], progress=STEPS))
    assert s.last_progress_at == at[0] and s.last_record_at == at[2]  # beating, not working
    s = feed(s, heartbeat(40, at[3], progress={**STEPS, "validation_batches": 3}))
    assert s.last_progress_at == at[3]  # a long validation reports its batches
    s = feed(s, heartbeat(40, at[4], progress={**STEPS, "validation_batches": 3, "checkpoint_bytes": 2 << 30}))
    assert s.last_progress_at == at[4]  # and an upload its bytes
    s = feed(s, heartbeat(40, at[2], progress=STEPS))  # a late chunk with older counters
    assert s.last_progress_at == at[4] and s.progress.checkpoint_bytes == 2 << 30
    s = feed(s, heartbeat(41, at[5]))  # a heartbeat without counters proves only that the process lives
    assert s.last_progress_at == at[4]
    s = feed(s, heartbeat(0, at[6], attempt=2, progress={"optimizer_steps": 0}))  # a retry starts from zero
    assert s.last_progress_at == at[6]
    s = feed(s, train(50, 2.0, at=at[7]))
    assert s.last_progress_at == at[7]
    s = feed(s, line("checkpoint", "run-a", at[8], step=50, epoch=0, uri="s3://b/k", sha256="a" * 64, seconds=1.0,
                     bytes=10, trigger="steps"))
    assert s.last_progress_at == at[8]


def test_a_job_that_beats_without_progress_is_terminated_with_its_alert(account, jobs) -> None:
    plan(monitoring={"idle_timeout_minutes": 120})
    now = datetime.now(UTC)
    job_id = jobs(f"{RUN}-train", "RUNNING", started=now - timedelta(hours=5))
    key = f"runs/{RUN}/metrics/attempt-0001/chunk-00000001.jsonl"
    beats = [heartbeat(40, now - timedelta(minutes=m), job_id=job_id, progress=STEPS) for m in (180, 60, 5)]
    boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=b"\n".join(beats))
    load_handler("metrics_monitor").lambda_handler(s3_event(key), CTX)
    assert now - state().last_heartbeat_at < timedelta(minutes=10)  # alive by its heartbeats
    load_handler("idle_watch").lambda_handler(scheduled_event(now), CTX)
    assert job(job_id)["statusReason"].startswith("aurax:idle")
    assert state().abort_reason == "idle"
    [message] = account.sns_messages()
    assert "made no progress for 180 minutes" in message["Message"] and "last heartbeat was 5 minutes ago" in \
        message["Message"]


def test_the_watch_judges_the_moment_its_schedule_fired(account, jobs) -> None:
    plan(monitoring={"idle_timeout_minutes": 120})
    now = datetime.now(UTC)
    job_id = jobs(f"{RUN}-train", "RUNNING", started=now - timedelta(minutes=30))
    load_handler("idle_watch").lambda_handler(scheduled_event(now), CTX)
    assert "statusReason" not in job(job_id)
    load_handler("idle_watch").lambda_handler(scheduled_event(now + timedelta(minutes=91)), CTX)
    assert job(job_id)["statusReason"].startswith("aurax:idle")
