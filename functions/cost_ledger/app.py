"""Every 15 minutes and on each Batch job state change: update the cost ledger of the active runs and
enforce their budgets (alerts at the configured fractions; stop as over budget)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from aurax_control.dashboard import publish, run_metrics
from aurax_control.jobs import belongs_to_run
from aurax_control.ledger import update_run
from aurax_control.runtime import runtime

logger = Logger()
metrics = run_metrics()


def batch_job(event: EventBridgeModel) -> dict[str, Any] | None:
    """The job a "Batch Job State Change" event is about (None for the schedule)."""
    if event.source == "aws.batch" and isinstance(event.detail, dict):
        return event.detail
    return None


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    job = batch_job(parse(event=event, model=EventBridgeModel))
    rt = runtime()
    now = datetime.now(UTC)
    done, failed = [], []
    for state, config_uri in rt.store.active_runs():
        if job is not None and not belongs_to_run(job, state.run_id):
            continue
        try:
            ledger = update_run(rt, state, rt.load_config(config_uri, state.run_id), now)
        except Exception:  # one broken run must not stop the others' budget guard
            logger.exception("ledger update failed", extra={"run_id": state.run_id})
            failed.append(state.run_id)
            continue
        publish(metrics, state.run_id, {"SpendUSD": ledger.spend_usd, "ProjectedSpendUSD": ledger.projected_usd})
        logger.info("ledger updated", extra={"run_id": state.run_id, "spend_usd": ledger.spend_usd,
                                             "projected_usd": ledger.projected_usd})
        done.append(state.run_id)
    if failed:
        raise RuntimeError(f"ledger update failed for {failed}; see the log (the others were updated: {done})")
    return {"updated": done}
