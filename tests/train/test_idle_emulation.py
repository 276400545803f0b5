"""In the emulation (`aurax local`'s template, state machine, handlers and job subprocesses): a training step
that never returns, while the job's heartbeat thread goes on beating, is terminated by the idle watch, with
its critical alert, and the run ends AbortedIdle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aurax.local.moto_patches import BatchJobRun
from aurax.local.pipeline import Progress, local_config, run_local

pytestmark = pytest.mark.slow
HANG_AT_STEP = 3


def test_a_hung_step_is_terminated_by_the_idle_watch_although_heartbeats_go_on(tmp_path: Path) -> None:
    timeout = timedelta(minutes=local_config("idle-test", "go", "s3://b/m", 8).monitoring.idle_timeout_minutes)
    offset: list[timedelta] = []
    seen: dict[str, datetime] = {}

    def hang(run: BatchJobRun) -> dict[str, str]:
        return {"AURAX_FAULT_HANG_AT_STEP": str(HANG_AT_STEP)} if "train" in run.command[:3] else {}

    def clock() -> datetime:
        return datetime.now(UTC) + (offset[0] if offset else timedelta(0))

    def watch(progress: Progress) -> None:
        state = progress.view.state if progress.view else None
        if offset or state is None or not (state.last_progress_at and state.last_heartbeat_at):
            return
        if state.step >= HANG_AT_STEP - 1 and state.last_heartbeat_at - state.last_progress_at >= \
                timedelta(seconds=20):
            # Beating for 20 s without progress: fire the schedules as if the timeout had passed since the last
            # progress, but not since the last heartbeat (a rule that looked at heartbeats would leave it alone).
            seen.update(progress=state.last_progress_at, heartbeat=state.last_heartbeat_at)
            offset.append(state.last_progress_at + timeout + timedelta(seconds=10) - datetime.now(UTC))

    result = run_local("go", keep=tmp_path, interrupt=False, timeout_s=400, attempt_env=hang, clock=clock,
                       progress=watch)

    assert seen, f"the job never hung as expected: {result.to_json()}"
    assert seen["heartbeat"] + timeout > seen["progress"] + timeout + timedelta(seconds=10)
    assert (result.execution_status, result.end_state) == ("FAILED", "AbortedIdle"), result.to_json()
    train = [a for a in result.batch_attempts if a["job"].endswith("train-to-decision")]
    assert len(train) == 1 and train[0]["status_reason"].startswith("aurax:idle")
    idle = [a for a in result.alerts if "Idle job terminated" in (a["subject"] or "")]
    assert len(idle) == 1 and "made no progress" in idle[0]["message"]
    aborted = [e["detail"] for e in result.events if e["detail_type"] == "AURA-X Run Aborted"]
    assert [a["reason"] for a in aborted] == ["idle"]
