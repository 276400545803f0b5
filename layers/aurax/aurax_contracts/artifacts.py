"""Manifests of what the jobs write: the prepared dataset and each checkpoint."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, Field

from .base import Contract

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class ShardInfo(Contract):
    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    """File name relative to the dataset root."""
    split: Literal["train", "validation"]
    clips: Annotated[int, Field(ge=1)]
    frames: Annotated[int, Field(ge=1)]
    """EnCodec frames in the shard (50 per second at 32 kHz)."""
    sha256: Sha256
    bytes: Annotated[int, Field(ge=1)]


class DatasetManifest(Contract):
    """Written last by `aurax job prepare`; its presence means the dataset is complete."""

    schema_version: Literal[1] = 1
    fingerprint: Sha256
    """`RunConfig.dataset_fingerprint()` of the config that built it."""
    codec_model_id: str
    sample_rate: Annotated[int, Field(ge=1000)]
    frame_rate: Annotated[float, Field(gt=0)]
    num_codebooks: Annotated[int, Field(ge=1, le=32)]
    codebook_size: Annotated[int, Field(ge=2)]
    counts: dict[Literal["train", "validation"], Annotated[int, Field(ge=0)]]
    skipped: dict[str, Annotated[int, Field(ge=0)]]
    """Clips skipped by cause (corrupt, too-short, missing, known-broken)."""
    total_seconds: Annotated[float, Field(ge=0)]
    shards: list[ShardInfo] = Field(min_length=1)
    selection_report: str
    """Relative name of the JSON report of the tag histogram and why each clip was kept."""
    code_version: str
    created_at: AwareDatetime


class CheckpointFile(Contract):
    sha256: Sha256
    bytes: Annotated[int, Field(ge=0)]


class CheckpointManifest(Contract):
    """Written after the checkpoint's files and before the `latest` pointer: a checkpoint without a
    manifest, or whose files do not match it, is ignored on resume."""

    schema_version: Literal[1] = 1
    run_id: str
    training_fingerprint: Sha256
    """`RunConfig.training_fingerprint()`: resuming with a different model, data or recipe is refused."""
    dataset_fingerprint: Sha256
    model_id: str
    finetune: Literal["full", "lora"]
    step: Annotated[int, Field(ge=0)]
    """Optimizer steps completed."""
    epoch: Annotated[int, Field(ge=0)]
    """Epoch in progress (0-based)."""
    index_in_epoch: Annotated[int, Field(ge=0)]
    """Examples of this epoch's permutation already consumed."""
    epoch_complete: bool = False
    world_size: Annotated[int, Field(ge=1)] = 1
    val_loss: Annotated[float, Field(ge=0)] | None = None
    """Validation loss measured at this checkpoint (epoch-end checkpoints); the evaluation reports it."""
    baseline_val_loss: Annotated[float, Field(ge=0)] | None = None
    """Validation loss of the untouched model, measured once before the first optimizer step and carried into
    every later checkpoint (None when the dataset has no validation split); the decision's relative criterion."""
    files: dict[str, CheckpointFile] = Field(min_length=1)
    trigger: Literal["interval", "steps", "epoch", "interruption", "final"]
    code_version: str
    created_at: AwareDatetime
