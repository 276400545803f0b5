"""Step Functions task: why did a stage fail, and may the run resume (FailureVerdict)?"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext

from aurax_contracts import FailureInput
from aurax_control.runtime import runtime
from aurax_control.tasks import classify

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    verdict = classify(runtime(), parse(event=event, model=FailureInput))
    logger.info("failure classified", extra=verdict.model_dump(mode="json"))
    return verdict.model_dump(mode="json")
