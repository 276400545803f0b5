"""Idle shutdown rules: a running job that makes no progress burns money; a job waiting for capacity is reported.

Progress, not liveness: a heartbeat thread keeps beating while the main thread hangs in a step, a data read
or a collective, so the rules take the job's last finished work (`RunState.last_progress_at`: a training,
validation or checkpoint record, or a heartbeat whose progress counters grew), never its last heartbeat."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field

from .jobs import batch_time


class WatchState(BaseModel):
    """The idle watch's memory (the `WATCH` item): when each stuck job was last reported."""

    stuck_alerted: dict[str, datetime] = Field(default_factory=dict)


def quiet_minutes(running_since: datetime, last_progress: datetime | None, now: datetime) -> float:
    """Minutes since the job last made progress, or since the current attempt started (a fresh attempt gets the
    full timeout before it must show progress)."""
    worked = max(running_since, last_progress) if last_progress else running_since
    return (now - worked).total_seconds() / 60.0


def is_idle(running_since: datetime, last_progress: datetime | None, now: datetime, timeout_minutes: float) -> bool:
    return quiet_minutes(running_since, last_progress, now) >= timeout_minutes


def runnable_since(job: dict[str, Any]) -> datetime | None:
    """When a RUNNABLE job began waiting: its creation, or the end of its last attempt (a retry)."""
    attempt_ends = [batch_time(a.get("stoppedAt")) for a in job.get("attempts") or []]
    candidates = [batch_time(job.get("createdAt"))] + attempt_ends
    times = [t for t in candidates if t is not None]
    return max(times) if times else None


def is_stuck(waiting_since: datetime | None, now: datetime, stuck_minutes: float) -> bool:
    return waiting_since is not None and now - waiting_since >= timedelta(minutes=stuck_minutes)


def running_since(job: dict[str, Any]) -> datetime | None:
    return batch_time(job.get("startedAt"))
