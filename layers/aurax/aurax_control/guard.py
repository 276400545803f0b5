"""Stopping a run from the control plane: the one sequence the monitor, the ledger and the idle watch share."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from aurax_contracts import AbortReason, AlertDetail, RunLayout, StopRequest

from . import objects
from .jobs import Terminated, terminate
from .notify import Notifier
from .store import RunStore


@dataclass(frozen=True)
class StopOutcome:
    first: bool
    """This call recorded the abort reason (an earlier stop's reason is kept otherwise)."""
    terminated: Terminated


def stop_run(store: RunStore, notifier: Notifier, root: str, run_id: str, reason: AbortReason, detail: str,
             job_ids: Iterable[str], alert: AlertDetail) -> StopOutcome:
    """Record the abort reason, ask the job to stop (StopRequest), terminate it, alert once.

    The reason is recorded first so that `classify_failure` finds it when the terminated job's failure reaches
    the state machine; the StopRequest lets a job running outside Batch (or between polls) stop cleanly. A job
    Batch refuses to terminate does not stop the alert, which names it so that a person can.
    """
    first = store.record_abort(run_id, reason, detail)
    request = StopRequest(reason=reason, detail=detail[:1000], requested_at=datetime.now(UTC))
    objects.write(RunLayout(root, run_id).stop_request_uri, request.model_dump_json())
    terminated = terminate(job_ids, reason, detail)
    if first:
        evidence = {**alert.evidence, "terminated_jobs": ", ".join(terminated.done) or "none found"}
        if terminated.failed:
            evidence["not_terminated"] = "; ".join(f"{j} ({why})" for j, why in terminated.failed.items())
        notifier.alert(alert.model_copy(update={"evidence": evidence}))
        store.update_state(run_id, add_fields={"alerts_sent": 1})
    return StopOutcome(first, terminated)
