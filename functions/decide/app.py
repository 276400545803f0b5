"""Step Functions task: the go/no-go decision, announced exactly once per run and decision point."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.idempotency import idempotent_function
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext

from aurax_control.idempotency import idempotency_config, persistence_layer, with_plan_id
from aurax_control.inputs import DecideInput
from aurax_control.runtime import runtime
from aurax_control.tasks import EvalReportMissingError, make_decision

__all__ = ["EvalReportMissingError", "lambda_handler"]

logger = Logger()
config = idempotency_config("[run_id, point, plan_id]", days=365)


@idempotent_function(data_keyword_argument="request", persistence_store=persistence_layer(), config=config)
def decide_once(request: dict[str, Any]) -> dict[str, Any]:
    decision = make_decision(runtime(), parse(event=request, model=DecideInput), datetime.now(UTC))
    logger.info("decided", extra={"run_id": decision.run_id, "point": decision.point, "outcome": decision.outcome})
    return decision.model_dump(mode="json")


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    config.register_lambda_context(context)
    return decide_once(request=with_plan_id(event, runtime().store))
