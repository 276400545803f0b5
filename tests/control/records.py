"""Crafted metric streams for the tests (JSONL lines as the train job writes them)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def line(kind: str, run_id: str = "run-a", at: datetime = T0, **fields: Any) -> bytes:
    return json.dumps({"kind": kind, "run_id": run_id, "time": at.isoformat(), **fields}).encode()


def train(step: int, loss: float, at: datetime | None = None, run_id: str = "run-a", epoch: int = 0) -> bytes:
    # json.dumps writes NaN/Infinity as the JSON constants, as the job does.
    return line("train", run_id, at or T0 + timedelta(minutes=step), step=step, epoch=epoch, loss=loss, lr=1e-5,
                samples_per_s=12.5)


def heartbeat(step: int, at: datetime, run_id: str = "run-a", job_id: str = "job-1", attempt: int = 1,
              total_steps: int | None = 1000, progress: dict[str, int] | None = None) -> bytes:
    """A training heartbeat; `progress` is its counters (the idle watch's evidence of work), None for none."""
    extra = {"progress": progress} if progress is not None else {}
    return line("heartbeat", run_id, at, step=step, epoch=0, attempt=attempt, instance_type="g4dn.xlarge",
                availability_zone="us-east-1a", batch_job_id=job_id, total_steps=total_steps, **extra)
