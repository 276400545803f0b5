"""The idle watch over one run: terminate a running job that went quiet, report jobs stuck waiting."""

from __future__ import annotations

from datetime import datetime

from aurax_contracts import AbortReason, AlertDetail, RunConfig, RunState, Severity

from . import idle
from .guard import stop_run
from .jobs import HEARTBEAT_STAGES, find_jobs, job_stage
from .runtime import Runtime
from .store import WATCH


def watch_run(rt: Runtime, state: RunState, config: RunConfig, now: datetime) -> list[str]:
    """Returns what it did, one line per action (for the log)."""
    actions: list[str] = []
    mon = config.monitoring
    memory, version = rt.store.get_doc(state.run_id, WATCH, idle.WatchState)
    memory = memory or idle.WatchState()
    changed = False
    for job in find_jobs(state.run_id, rt.settings.job_queues, [state.current_job_id or ""]):
        status, job_id = job.get("status"), job["jobId"]
        # Only jobs that send heartbeats can be judged idle (a long dataset preparation is not a hang): the
        # stages that do, and any job that has sent one.
        stage = job_stage(job.get("jobName"), state.run_id)
        sends_heartbeats = stage in HEARTBEAT_STAGES or job_id == state.current_job_id
        if status == "RUNNING" and state.abort_reason is None and sends_heartbeats:
            since = idle.running_since(job)
            if since and idle.is_idle(since, state.last_progress_at, now, mon.idle_timeout_minutes):
                quiet = idle.quiet_minutes(since, state.last_progress_at, now)
                beat = f"; its last heartbeat was {(now - state.last_heartbeat_at).total_seconds() / 60:.0f} " \
                    "minutes ago" if state.last_heartbeat_at else ""
                detail = (f"job {job_id} made no progress for {quiet:.0f} minutes (limit "
                          f"{mon.idle_timeout_minutes:g}){beat}")
                stop_run(rt.store, rt.notifier, rt.settings.root, state.run_id, AbortReason.IDLE, detail, [job_id],
                         AlertDetail(run_id=state.run_id, severity=Severity.CRITICAL, code="idle",
                                     what=f"Idle job terminated: {detail}", step=state.step, epoch=state.epoch,
                                     time=now, evidence={"job_id": job_id, "quiet_minutes": round(quiet, 1),
                                                         "last_progress_at": _iso(state.last_progress_at),
                                                         "last_heartbeat_at": _iso(state.last_heartbeat_at),
                                                         "running_since": since.isoformat()},
                                     action="A job that beats but makes no progress is hung (a step, a data read, "
                                            "an S3 transfer or a collective): read its log for the last step, fix "
                                            "the cause, then start a new execution to resume from the last "
                                            "checkpoint."))
                actions.append(f"terminated idle job {job_id}")
        elif status == "RUNNABLE":
            waiting = idle.runnable_since(job)
            if idle.is_stuck(waiting, now, mon.stuck_runnable_minutes) and job_id not in memory.stuck_alerted:
                minutes = (now - waiting).total_seconds() / 60.0 if waiting else 0.0
                rt.notifier.alert(AlertDetail(
                    run_id=state.run_id, severity=Severity.WARNING, code="stuck-runnable",
                    what=f"Job {job_id} has waited {minutes / 60:.1f} h for spot capacity",
                    step=state.step, epoch=state.epoch, time=now,
                    evidence={"job_id": job_id, "job_name": job.get("jobName"), "waiting_minutes": round(minutes, 1),
                              "limit_minutes": mon.stuck_runnable_minutes},
                    action="Nothing is spent while it waits. Add spot instance types to the stack parameter "
                           "GpuInstanceTypes or zones to the compute environment, or wait for capacity."))
                memory.stuck_alerted[job_id] = now
                changed = True
                rt.store.update_state(state.run_id, add_fields={"alerts_sent": 1})
                actions.append(f"reported stuck job {job_id}")
    if changed:
        rt.store.put_doc(state.run_id, WATCH, memory, expected_version=version)
    return actions


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None
