"""Lazily created, cached boto3 clients: a handler pays only for the clients it uses, and tests can
drop them between moto contexts with `reset_clients()`."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

# Standard mode retries throttling and transient errors with backoff; the Lambda retries the rest.
_CONFIG = Config(retries={"max_attempts": 5, "mode": "standard"})


@cache
def client(service: str) -> Any:
    return boto3.client(service, config=_CONFIG)  # type: ignore[call-overload]


def reset_clients() -> None:
    client.cache_clear()
