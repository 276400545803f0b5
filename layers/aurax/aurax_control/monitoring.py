"""The metrics monitor over one new S3 object: stream it through the rules, persist, alert, stop."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from aurax_contracts import AbortReason, ContractError, CostLedger
from aurax_contracts.config import MonitoringConfig
from aurax_contracts.layout import run_id_from_metrics_key

from . import objects
from .guard import stop_run
from .jobs import ACTIVE_JOB_STATUSES, find_jobs
from .monitor import ChunkMonitor, ChunkSummary, MonitorState
from .runtime import Runtime
from .store import LEDGER, MONITOR

#: Job phase (heartbeats) -> run status.
PHASE_STATUS = {"prepare": "preparing", "train": "training", "evaluate": "evaluating"}


@dataclass
class ObjectReport:
    run_id: str
    key: str
    summary: ChunkSummary
    alerts: list[str] = field(default_factory=list)
    stopped: bool = False
    epoch: int = 0
    spend_usd: float | None = None
    projected_usd: float | None = None

    def metrics(self) -> dict[str, float | None]:
        """The dashboard's metrics from this chunk (`dashboard.publish` drops None and non-finite values)."""
        s = self.summary
        return {"Loss": s.last_loss, "ValLoss": s.last_val_loss, "Epoch": float(self.epoch),
                "SamplesPerSecond": s.mean_samples_per_s, "SpendUSD": self.spend_usd,
                "ProjectedSpendUSD": self.projected_usd, "Interruptions": float(s.interruptions),
                "BadLines": float(s.bad_total)}


def monitoring_config(rt: Runtime, run_id: str) -> MonitoringConfig:
    """The run's monitoring thresholds; the defaults for a run that was never planned (a local run
    writing to the bucket), so its metrics are still watched."""
    try:
        return rt.load_config(rt.store.get_config_uri(run_id), run_id).monitoring
    except ContractError:
        return MonitoringConfig()


def process_object(rt: Runtime, bucket: str, key: str, now: datetime) -> ObjectReport | None:
    """None when the key is not a metrics chunk."""
    run_id = run_id_from_metrics_key(key)
    if run_id is None:
        return None
    state = rt.store.get_state(run_id)
    monitor_state, version = rt.store.get_doc(run_id, MONITOR, MonitorState)
    monitor = ChunkMonitor(run_id, monitoring_config(rt, run_id), monitor_state or MonitorState(),
                           already_stopped=state is not None and state.abort_reason is not None)
    for line in objects.iter_lines(bucket, key):
        monitor.feed_line(line)
    result = monitor.finish(now)
    new = result.state
    # State first (compare-and-swap): a concurrent invocation makes this one fail and be retried before it
    # has alerted anyone.
    rt.store.put_doc(run_id, MONITOR, new, expected_version=version)
    # A record stamped in the future (a wrong clock, junk that still parses) must not keep the run looking alive
    # to the idle watch: the chunk's arrival is the latest sign of life there can be.
    heartbeat = min(new.last_record_at, now) if new.last_record_at else None
    worked = min(new.last_progress_at, now) if new.last_progress_at else None
    fields = {"step": new.step, "epoch": new.epoch, "total_steps": new.total_steps, "last_loss": new.last_loss,
              "last_val_loss": new.last_val_loss, "interruptions": new.interruptions, "bad_lines": new.bad_lines,
              "last_heartbeat_at": heartbeat, "last_progress_at": worked,
              "training_started_at": new.training_started_at}
    if new.job_id:
        fields["current_job_id"] = new.job_id
    rt.store.update_state(run_id, {k: v for k, v in fields.items() if v is not None})
    if result.summary.phase in PHASE_STATUS:
        rt.store.advance_status(run_id, PHASE_STATUS[result.summary.phase])
    report = ObjectReport(run_id, key, result.summary, epoch=new.epoch)
    warnings = [a for a in result.alerts if result.stop is None or a is not result.stop.alert]
    if result.stop is not None:
        # The NaN may come before any heartbeat named the job: ask Batch for the run's active jobs too.
        known = [j for j in (new.job_id, state.current_job_id if state else None) if j]
        job_ids = [job["jobId"] for job in find_jobs(run_id, rt.settings.job_queues, known)
                   if job.get("status") in ACTIVE_JOB_STATUSES]
        outcome = stop_run(rt.store, rt.notifier, rt.settings.root, run_id, AbortReason.DIVERGED,
                           result.stop.detail, job_ids, result.stop.alert)
        report.stopped = True
        if outcome.first:
            report.alerts.append(result.stop.alert.code)
    for alert in warnings:
        rt.notifier.alert(alert)
        report.alerts.append(alert.code)
    if warnings:
        rt.store.update_state(run_id, add_fields={"alerts_sent": len(warnings)})
    ledger, _ = rt.store.get_doc(run_id, LEDGER, CostLedger)
    if ledger is not None:
        report.spend_usd, report.projected_usd = ledger.spend_usd, ledger.projected_usd
    return report
