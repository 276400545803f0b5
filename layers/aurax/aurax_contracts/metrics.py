"""Metric records: what the train job writes as JSONL chunks and the monitor Lambda reads."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, Field, TypeAdapter

from .artifacts import LrSchedule, TrainingPlan
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
#: Bounds of the learning rate a record carries (the config caps the peak at 1e-2).
MAX_LR = 1.0


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
    """Inf under fp16 loss scaling is a normal skipped step (a NaN norm is written as inf)."""
    lr: Annotated[float, Field(strict=True, ge=0, le=MAX_LR)]
    samples_per_s: Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]
    """Examples per second over the steps since the previous record (all ranks)."""
    loss_scale: Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)] | None = None
    """fp16's dynamic loss scale; a scale of zero or a non-finite one is divergence, never a record."""
    gpu_memory_gib: Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)] | None = None
    """Peak GPU memory allocated on rank 0 since the previous record (None on the CPU)."""


class ValLoss(_Record):
    kind: Literal["val"] = "val"
    step: Step
    epoch: Epoch
    val_loss: Loss
    baseline: bool = False
    """True for the untouched model's validation loss, measured once before the first optimizer step (step 0);
    the checkpoint manifests carry it as `baseline_val_loss`."""


class TrainingSetup(_Record):
    """Once per attempt, before its first step: how this attempt computes (micro-batch, accumulation,
    checkpointing, kernels) and the learning-rate schedule it follows."""

    kind: Literal["setup"] = "setup"
    step: Step
    epoch: Epoch
    plan: TrainingPlan
    schedule: LrSchedule


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


class Progress(Contract):
    """Work an attempt has finished so far; every counter only grows. The idle watch judges a job by these (and
    by the records of finished work), never by the heartbeat alone: a job hung inside a step, a data read or a
    collective still sends heartbeats from its background thread, with counters that stand still."""

    optimizer_steps: Annotated[int, Field(ge=0)] = 0
    validation_batches: Annotated[int, Field(ge=0)] = 0
    checkpoint_bytes: Annotated[int, Field(ge=0)] = 0
    """Checkpoint bytes written or uploaded (a multi-GB upload reports as it goes)."""
    clips: Annotated[int, Field(ge=0)] = 0
    """Clips generated (the evaluation job)."""


class Heartbeat(_Record):
    """Sent at least once a minute while the job is alive, with where it runs (for the cost ledger) and the
    attempt's progress (for the idle watch)."""

    kind: Literal["heartbeat"] = "heartbeat"
    step: Step
    epoch: Epoch
    phase: Literal["prepare", "train", "evaluate"] = "train"
    instance_type: str | None = None
    availability_zone: str | None = None
    batch_job_id: str | None = None
    total_steps: Annotated[int, Field(ge=0)] | None = None
    """Steps to the end of the run's final epoch; the ledger projects spend from it."""
    progress: Progress | None = None
    """The attempt's finished work; None from a job that does not count it (then the heartbeat shows only that
    the process lives, and the idle watch does not take it for progress)."""


class JobWarning(_Record):
    """Something the job noticed and survived (high loss, corrupt checkpoint skipped, overflow run)."""

    kind: Literal["warning"] = "warning"
    code: Literal["high-loss", "checkpoint-corrupt", "overflow-steps", "slow-checkpoint", "data-skipped",
                  "schedule-changed"]
    message: str = Field(max_length=2000)
    step: Step | None = None
    epoch: Epoch | None = None


class Diverged(_Record):
    kind: Literal["diverged"] = "diverged"
    step: Step
    epoch: Epoch
    cause: Literal["nan-loss", "inf-loss", "loss-out-of-range", "overflow-collapse", "loss-scale-collapse",
                   "lr-out-of-range"]
    """`loss-out-of-range`: a finite loss above MAX_LOSS (or below 0); `loss-scale-collapse`: fp16's loss scale
    reached zero or overflowed; `lr-out-of-range`: the schedule produced a learning rate outside [0, MAX_LR]."""
    last_good_checkpoint: str | None = None
    value: float | None = None
    """The offending value (loss, learning rate or loss scale), when there is one."""


MetricRecord = Annotated[
    TrainStep | ValLoss | CheckpointSaved | Interruption | Heartbeat | JobWarning | Diverged | TrainingSetup,
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
