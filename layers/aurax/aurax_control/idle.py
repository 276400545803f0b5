"""Idle shutdown rules: a running job that has gone quiet burns money; a job waiting for capacity is reported."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field

from .jobs import batch_time


class WatchState(BaseModel):
    """The idle watch's memory (the `WATCH` item): when each stuck job was last reported."""

    stuck_alerted: dict[str, datetime] = Field(default_factory=dict)


def quiet_minutes(running_since: datetime, last_heartbeat: datetime | None, now: datetime) -> float:
    """Minutes since the job last showed life: its latest record, or the start of the current attempt
    (a fresh attempt gets the full timeout before it must report)."""
    alive = max(running_since, last_heartbeat) if last_heartbeat else running_since
    return (now - alive).total_seconds() / 60.0


def is_idle(running_since: datetime, last_heartbeat: datetime | None, now: datetime, timeout_minutes: float) -> bool:
    return quiet_minutes(running_since, last_heartbeat, now) >= timeout_minutes


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
