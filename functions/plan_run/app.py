"""Step Functions task: validate the run config and plan the run (RunPlan)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from aurax_contracts import ExecutionInput, describe_validation_error
from aurax_control.runtime import runtime
from aurax_control.tasks import BadConfigError, plan

__all__ = ["BadConfigError", "lambda_handler"]

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # The state machine passes the execution ARN beside the ExecutionInput fields.
    payload = {k: v for k, v in event.items() if k != "execution_arn"}
    try:
        request = parse(event=payload, model=ExecutionInput)
    except ValidationError as exc:
        raise BadConfigError(str(describe_validation_error("execution input", exc, ExecutionInput))) from exc
    result = plan(runtime(), request, event.get("execution_arn"), datetime.now(UTC))
    logger.info("run planned", extra={"run_id": result.run_id, "dataset_ready": result.dataset_ready})
    return result.model_dump(mode="json")
