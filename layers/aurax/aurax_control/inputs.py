"""Inputs of the state machine's decide / abort / promote tasks (the state machine builds them with
Parameters; unknown keys are ignored so that passing a whole state object does not break a task)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from aurax_contracts import AbortReason, Decision


class TaskInput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    run_id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{2,62}$")
    config_uri: str = Field(pattern=r"^s3://[^/]+/.+")
    run_uri: str = Field(pattern=r"^s3://[^/]+/.+")


class DecideInput(TaskInput):
    point: Literal["decision", "final"]


class AbortInput(TaskInput):
    reason: AbortReason
    detail: str = ""
    decision: Decision | None = None


class PromoteInput(TaskInput):
    decision: Decision


class S3ObjectRef(BaseModel):
    key: str
    """URL-encoded as S3 sends it."""
    eTag: str | None = None
    sequencer: str | None = None


class S3BucketRef(BaseModel):
    name: str


class S3Entity(BaseModel):
    bucket: S3BucketRef
    object: S3ObjectRef


class S3Record(BaseModel):
    eventName: str
    s3: S3Entity


class S3Notification(BaseModel):
    """The parts of an S3 event notification the monitor reads. Narrower than Powertools' `S3Model`, which
    also requires identity and request fields that emulators (moto) leave out and the monitor never uses."""

    Records: list[S3Record] = Field(min_length=1)
