"""Every 10 minutes: terminate running jobs that went quiet, report jobs stuck waiting for capacity."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from aurax_control.runtime import runtime
from aurax_control.watch import watch_run

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # A scheduled event (anything else is a wiring mistake). The rule is judged at the schedule's time (within
    # seconds of now on AWS): a late retry of an old event judges an earlier moment, so it can only be more
    # lenient, never terminate early; and the emulation can fire the schedule at a later moment.
    now = parse(event=event, model=EventBridgeModel).time
    rt = runtime()
    actions: dict[str, list[str]] = {}
    failed = []
    for state, config_uri in rt.store.active_runs():
        try:
            actions[state.run_id] = watch_run(rt, state, rt.load_config(config_uri, state.run_id), now)
        except Exception:  # one broken run must not stop the watch over the others
            logger.exception("idle watch failed", extra={"run_id": state.run_id})
            failed.append(state.run_id)
    logger.info("idle watch done", extra={"actions": actions})
    if failed:
        raise RuntimeError(f"idle watch failed for {failed}; see the log")
    return {"actions": actions}
