"""The environment every control-plane function is deployed with (template.yaml sets it)."""

from __future__ import annotations

import os
from dataclasses import dataclass


class SettingsError(RuntimeError):
    """A required environment variable is missing: the function was deployed without it."""


def _required(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise SettingsError(f"environment variable {name} is not set; set it on the function in template.yaml")
    return value


@dataclass(frozen=True)
class Settings:
    data_bucket: str
    run_table: str
    idempotency_table: str
    alert_topic_arn: str
    event_bus_name: str
    job_queues: tuple[str, ...]

    @property
    def root(self) -> str:
        """Root URI of the run layout (`RunLayout(root, run_id)`)."""
        return f"s3://{self.data_bucket}"

    @classmethod
    def from_env(cls) -> Settings:
        queues = tuple(q.strip() for q in os.environ.get("JOB_QUEUES", "").split(",") if q.strip())
        return cls(
            data_bucket=_required("DATA_BUCKET"),
            run_table=_required("RUN_TABLE"),
            idempotency_table=_required("IDEMPOTENCY_TABLE"),
            alert_topic_arn=_required("ALERT_TOPIC_ARN"),
            event_bus_name=_required("EVENT_BUS_NAME"),
            job_queues=queues,
        )
