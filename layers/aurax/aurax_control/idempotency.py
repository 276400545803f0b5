"""Powertools Idempotency on the project's DynamoDB table (key `id`, TTL attribute `expiration`)."""

from __future__ import annotations

import os

from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig

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
