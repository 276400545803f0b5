"""Metric records: what the train job writes as JSONL chunks and the monitor Lambda reads."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, Field, TypeAdapter

from .base import Contract

Step = Annotated[int, Field(ge=0, le=10**9)]
Epoch = Annotated[int, Field(ge=0, le=10_000)]
Attempt = Annotated[int, Field(ge=1, le=10_000)]
# Strict: "NaN" as a string is a bad line, but the JSON constants NaN/Infinity are real non-finite values.
MAX_LOSS = 1e6


def _loss_in_range(value: float) -> float:
    if math.isfinite(value) and not 0 <= value <= MAX_LOSS:
        raise ValueError(f"a finite loss must lie in [0, {MAX_LOSS:g}]")
    return value


Loss = Annotated[float, Field(strict=True, allow_inf_nan=True), AfterValidator(_loss_in_range)]


class _Record(Contract):
    run_id: str = Field(min_length=1, max_length=63)
    time: AwareDatetime
    attempt: Attempt = 1
    """Batch attempt number (1 = first)."""


class TrainStep(_Record):
    """Every `log_every_steps` optimizer steps."""

    kind: Literal["train"] = "train"
    step: Step
    epoch: Epoch
    loss: Loss
    grad_norm: Annotated[float, Field(strict=True, ge=0, allow_inf_nan=True)] | None = None
    """Inf under fp16 loss scaling is a normal skipped step."""
    lr: Annotated[float, Field(strict=True, ge=0, le=1)]
    samples_per_s: Annotated[float, Field(strict=True, ge=0, le=1e7)]
    loss_scale: Annotated[float, Field(strict=True, ge=0)] | None = None


class ValLoss(_Record):
    kind: Literal["val"] = "val"
    step: Step
    epoch: Epoch
    val_loss: Loss


class CheckpointSaved(_Record):
    kind: Literal["checkpoint"] = "checkpoint"
    step: Step
    epoch: Epoch
    uri: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    """Hash of the checkpoint's manifest."""
    seconds: Annotated[float, Field(ge=0)]
    bytes: Annotated[int, Field(ge=0)]
    trigger: Literal["interval", "steps", "epoch", "interruption", "final"]


class Interruption(_Record):
    kind: Literal["interruption"] = "interruption"
    step: Step
    epoch: Epoch
    cause: Literal["sigterm", "spot-notice", "budget-stop"]
    steps_lost: Annotated[int, Field(ge=0)] = 0
    """Optimizer steps since the last checkpoint that the emergency save did not cover (0 when it did)."""


class Heartbeat(_Record):
    """Sent at least once a minute while the job is alive, with where it runs (for the cost ledger)."""

    kind: Literal["heartbeat"] = "heartbeat"
    step: Step
    epoch: Epoch
    phase: Literal["prepare", "train", "evaluate"] = "train"
    instance_type: str | None = None
    availability_zone: str | None = None
    batch_job_id: str | None = None
    total_steps: Annotated[int, Field(ge=0)] | None = None
    """Steps to the end of the run's final epoch; the ledger projects spend from it."""


class JobWarning(_Record):
    """Something the job noticed and survived (high loss, corrupt checkpoint skipped, overflow run)."""

    kind: Literal["warning"] = "warning"
    code: Literal["high-loss", "checkpoint-corrupt", "overflow-steps", "slow-checkpoint", "data-skipped"]
    message: str = Field(max_length=2000)
    step: Step | None = None
    epoch: Epoch | None = None


class Diverged(_Record):
    kind: Literal["diverged"] = "diverged"
    step: Step
    epoch: Epoch
    cause: Literal["nan-loss", "inf-loss", "overflow-collapse"]
    last_good_checkpoint: str | None = None


MetricRecord = Annotated[
    TrainStep | ValLoss | CheckpointSaved | Interruption | Heartbeat | JobWarning | Diverged,
    Field(discriminator="kind"),
]
METRIC_RECORD = TypeAdapter(MetricRecord)


def parse_metric_line(line: str | bytes) -> MetricRecord:
    """One JSONL line to a record; raises `pydantic.ValidationError` on any bad line."""
    return METRIC_RECORD.validate_json(line)


def dump_metric_line(record: MetricRecord) -> str:
    return record.model_dump_json() + "\n"


def utc_now() -> datetime:
    return datetime.now(UTC)
