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


class TrainingPlan(Contract):
    """How the job computes one optimizer step on the hardware it landed on: recorded in each checkpoint and in
    a `setup` metric record per attempt. Changing it changes the speed, not the result (up to float rounding)."""

    batch_size: Annotated[int, Field(ge=1)]
    """Examples per optimizer step over all ranks (`training.batch_size`)."""
    world_size: Annotated[int, Field(ge=1)] = 1
    micro_batch_size: Annotated[int, Field(ge=1)]
    """Largest forward pass on one rank."""
    accumulation_steps: Annotated[int, Field(ge=1)]
    """Micro-batches per optimizer step on the rank with the most examples."""
    activation_checkpointing: bool
    attention: Literal["sdpa", "eager"]
    """Decoder and text-encoder attention kernel (EnCodec is always eager)."""
    precision: Literal["fp32", "fp16", "bf16"]
    optimizer: Literal["adamw-fused", "adamw-foreach", "adamw"]
    compiled: bool = False
    decoder_dropout: Annotated[float, Field(ge=0, le=1)] = 0.0
    device: str
    """e.g. `NVIDIA H200`, `cpu`."""
    device_memory_gib: Annotated[float, Field(ge=0)] | None = None
    """Memory the plan was made for (the GPU's, or AURAX_GPU_MEMORY_GIB when set); None on the CPU."""
    chosen_by: Literal["config", "memory-probe", "cpu"]
    """`memory-probe`: measured at start; `config`: training.micro_batch_size; `cpu`: the whole batch."""
    probe_peak_gib: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)
    """Peak memory the probe measured, e.g. `{"checkpointing-off@1": 5.1, ...}` (empty unless probed)."""


class ScheduleSegment(Contract):
    """From `start_step` on, the learning-rate factor decays by a cosine from `start_factor` to zero at
    `end_step`: the tail a run gets when its length changes on resume (`training.allow_schedule_change`)."""

    start_step: Annotated[int, Field(ge=0)]
    start_factor: Annotated[float, Field(ge=0, le=1)]
    end_step: Annotated[int, Field(ge=1)]
    reason: str = Field(max_length=500)


class LrSchedule(Contract):
    """The learning-rate schedule's totals, saved in each checkpoint so that a resume can tell a changed run
    length from an unchanged one: linear warm-up to the peak over `warmup_steps`, then a cosine to zero at
    `total_steps` (audiocraft's recipe), then any `segments` (later ones win from their start step)."""

    kind: Literal["cosine-with-warmup"] = "cosine-with-warmup"
    warmup_steps: Annotated[int, Field(ge=0)]
    steps_per_epoch: Annotated[int, Field(ge=1)]
    total_epochs: Annotated[int, Field(ge=1)]
    total_steps: Annotated[int, Field(ge=1)]
    """Where the learning rate reaches zero (the end of the last segment, if any)."""
    base_total_steps: Annotated[int, Field(ge=1)] | None = None
    """End of the original cosine, once segments have replaced its tail (None: `total_steps`)."""
    segments: list[ScheduleSegment] = Field(default_factory=list)


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
    """Validation loss of the untouched model, measured once before the run's first optimizer step and carried
    into every later checkpoint (None without a validation split, or for a run begun before it was measured)."""
    model_revision: str | None = None
    """Hub revision the weights were loaded from (`ModelConfig.resolved_revision()`; None for a local copy)."""
    plan: TrainingPlan | None = None
    """How the attempt that saved this checkpoint computed its steps."""
    schedule: LrSchedule | None = None
    """The learning-rate schedule this checkpoint was trained with (None: saved by an older version)."""
    files: dict[str, CheckpointFile] = Field(min_length=1)
    trigger: Literal["interval", "steps", "epoch", "interruption", "final"]
    code_version: str
    created_at: AwareDatetime
