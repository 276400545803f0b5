"""Builders of fixture runs: a tiny prepared dataset, a tiny trained checkpoint and metric chunks."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import numpy as np
import torch

from aurax import storage
from aurax.dataset.shards import MANIFEST_NAME, Clip, encode_shard, manifest_json
from aurax_contracts import TINY_MODEL_ID, DatasetManifest, RunConfig, ShardInfo
from aurax_contracts.layout import join
from aurax_contracts.metrics import TrainStep, ValLoss, dump_metric_line

CHECKPOINT_STEP = 12
CHECKPOINT_EPOCH = 1
CHECKPOINT_VAL_LOSS = 3.21


PROMPTS = ["amapiano groove with log drums", "deep house with piano"]
TAG_PROMPTS = ["house, bass, deep, percussion"]


def tiny_config(run_id: str = "eval-test", clips: int = 3, seconds: float = 1.0, batch: int = 64) -> RunConfig:
    return RunConfig.model_validate({
        "run_id": run_id,
        "model": {"model_id": TINY_MODEL_ID},
        "dataset": {"target_clips": 4},  # what `write_dataset` holds by default
        "evaluation": {"clips_per_model": clips, "clip_seconds": seconds, "guidance_scale": 3.0,
                       "prompts": PROMPTS, "tag_prompts": TAG_PROMPTS, "seed": 5, "max_batch_size": batch},
    })


def write_dataset(dataset_uri: str, config: RunConfig, train_clips: int = 3,
                  validation_clips: int = 1) -> str:
    """A prepared dataset of random codes; returns the sha256 of its manifest."""
    rng = np.random.default_rng(0)
    shards = []
    for split, count in (("train", train_clips), ("validation", validation_clips)):
        clips = [Clip(100 + i, f"{split} clip {i}", rng.integers(0, 64, size=(4, 50)).astype(np.int16))
                 for i in range(count)]
        data = encode_shard(clips)
        name = f"{split}-00000.npz"
        storage.write_bytes(join(dataset_uri, name), data)
        shards.append(ShardInfo(name=name, split=split, clips=count,  # type: ignore[arg-type]
                                frames=50 * count, sha256=hashlib.sha256(data).hexdigest(), bytes=len(data)))
    manifest = DatasetManifest(
        fingerprint=config.dataset_fingerprint(), codec_model_id=config.model.model_id, sample_rate=32000,
        frame_rate=50.0, num_codebooks=4, codebook_size=64,
        counts={"train": train_clips, "validation": validation_clips},
        skipped={}, total_seconds=float(train_clips + validation_clips), shards=shards,
        selection_report="selection.json", code_version="test", created_at=datetime.now(UTC))
    text = manifest_json(manifest)
    storage.write_text(join(dataset_uri, MANIFEST_NAME), text)
    return hashlib.sha256(text.encode()).hexdigest()


def write_checkpoint(checkpoint_uri: str, config: RunConfig, work_dir: object) -> str:
    """A tiny "trained" checkpoint (the base weights visibly perturbed), saved the way training saves it.
    Returns the sha256 of its manifest."""
    from pathlib import Path

    from aurax.model import load_musicgen
    from aurax.train.checkpoint import CheckpointContent, CheckpointStore, Position
    from aurax.train.trainable import make_trainable, trainable_state

    model = load_musicgen(config.model.model_id, attention=config.model.attention)
    make_trainable(model, config)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(0.5 * torch.randn(param.shape, generator=generator))
    store = CheckpointStore(checkpoint_uri, Path(str(work_dir)))
    saved = store.save(CheckpointContent(trainable_state(model), {"note": "fixture"}, config),
                       Position(step=CHECKPOINT_STEP, epoch=CHECKPOINT_EPOCH, index_in_epoch=0,
                                epoch_complete=True),
                       run_id=config.run_id, trigger="epoch", world_size=1, val_loss=CHECKPOINT_VAL_LOSS)
    return saved.manifest_sha256


def write_metrics(metrics_uri: str, run_id: str) -> None:
    """Training and validation losses, plus one corrupt line the report must skip."""
    now = datetime.now(UTC)
    lines = [dump_metric_line(TrainStep(run_id=run_id, time=now, step=s, epoch=s // 6, loss=4.0 - 0.1 * s,
                                        lr=1e-4, samples_per_s=10.0)) for s in range(1, 13)]
    lines += [dump_metric_line(ValLoss(run_id=run_id, time=now, step=s, epoch=s // 6 - 1,
                                       val_loss=3.5 - 0.02 * s)) for s in (6, 12)]
    lines.insert(3, '{"kind": "train", "loss": "NaN"}\n')
    storage.write_text(join(metrics_uri, "attempt-0001/chunk-00000000.jsonl"), "".join(lines))
