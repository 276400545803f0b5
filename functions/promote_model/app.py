"""Step Functions task: copy the final verified checkpoint to the models prefix with its provenance."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.idempotency import idempotent_function
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext

from aurax_control.idempotency import idempotency_config, persistence_layer, with_plan_id
from aurax_control.inputs import PromoteInput
from aurax_control.runtime import runtime
from aurax_control.tasks import NoVerifiedCheckpointError, promote

__all__ = ["NoVerifiedCheckpointError", "lambda_handler"]

logger = Logger()
config = idempotency_config("[run_id, plan_id]", days=365)


@idempotent_function(data_keyword_argument="request", persistence_store=persistence_layer(), config=config)
def promote_once(request: dict[str, Any]) -> dict[str, Any]:
    result = promote(runtime(), parse(event=request, model=PromoteInput), datetime.now(UTC))
    logger.info("model promoted", extra=result)
    return result


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    config.register_lambda_context(context)
    return promote_once(request=with_plan_id(event, runtime().store))
