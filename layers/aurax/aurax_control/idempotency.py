"""Powertools Idempotency on the project's DynamoDB table (key `id`, TTL attribute `expiration`)."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig

from .store import RunStore

DAY = 24 * 3600


def persistence_layer() -> DynamoDBPersistenceLayer:
    table = os.environ.get("IDEMPOTENCY_TABLE", "")
    if not table:
        raise RuntimeError("environment variable IDEMPOTENCY_TABLE is not set; set it on the function in "
                           "template.yaml")
    return DynamoDBPersistenceLayer(table_name=table, key_attr="id", expiry_attr="expiration")


def idempotency_config(key_jmespath: str, days: float) -> IdempotencyConfig:
    """Keys must be present: a missing key would silently disable the protection."""
    return IdempotencyConfig(event_key_jmespath=key_jmespath, raise_on_no_idempotency_key=True,
                             expires_after_seconds=int(days * DAY))


def with_plan_id(event: dict[str, Any], store: RunStore) -> dict[str, Any]:
    """The task's payload plus the run's current plan id, for keys that must tell a retry within one
    execution (same plan) from a later execution of the same run (a new plan)."""
    run_id = event.get("run_id")
    return {**event, "plan_id": store.get_plan_id(run_id) if isinstance(run_id, str) else None}
