"""Fixtures for the train job: a tiny run config and a prepared dataset for it, both generated here."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import torch

from aurax.dataset.shards import MANIFEST_NAME, Clip, encode_shard, shard_name
from aurax.train.checkpoint import CheckpointStore, VerifiedCheckpoint
from aurax_contracts import TINY_MODEL_ID, DatasetManifest, RunConfig, ShardInfo, parse_metric_line
from aurax_contracts.metrics import TrainStep

PROMPTS = ["deep house groove with log drum", "jazzy piano and shakers", "tribal percussion, bass"]


def tiny_config(**training: object) -> RunConfig:
    """The tiny model, 0.4 s segments (20 frames), 4-clip steps in micro-batches of 2: a step takes
    milliseconds on a CPU. Decoder dropout 0.1 (not the recipe's 0), so that the tests see dropout's randomness."""
    return RunConfig.model_validate({
        "run_id": "tiny-run",
        "model": {"model_id": TINY_MODEL_ID, "decoder_dropout": 0.1},
        "training": {"total_epochs": 3, "decision_epoch": 1, "batch_size": 4, "micro_batch_size": 2,
                     "learning_rate": 3e-3, "warmup_steps": 2, "segment_seconds": 0.4,
                     "log_every_steps": 1, "seed": 7, **training},
        "checkpoint": {"keep_last": 2},
    })


def write_dataset(root: Path, config: RunConfig, train_clips: int = 12, val_clips: int = 3,
                  fingerprint: str | None = None) -> Path:
    """A prepared dataset as `aurax job prepare` writes it: shards, then the manifest."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    shards = []
    for split, count in (("train", train_clips), ("validation", val_clips)):
        clips = [Clip(clip_id=i, prompt=PROMPTS[i % len(PROMPTS)],
                      codes=rng.integers(0, 64, size=(4, int(rng.integers(14, 40))), dtype=np.int16))
                 for i in range(count)]
        data = encode_shard(clips)
        name = shard_name(split, 0)
        (root / name).write_bytes(data)
        shards.append(ShardInfo(name=name, split=split, clips=count, frames=sum(c.codes.shape[1] for c in clips),
                                sha256=hashlib.sha256(data).hexdigest(), bytes=len(data)))
    manifest = DatasetManifest(
        fingerprint=fingerprint or config.dataset_fingerprint(), codec_model_id=TINY_MODEL_ID, sample_rate=32000,
        frame_rate=50.0, num_codebooks=4, codebook_size=64, counts={"train": train_clips, "validation": val_clips},
        skipped={}, total_seconds=1.0, shards=shards, selection_report="selection.json", code_version="test",
        created_at=datetime.now(UTC))
    (root / MANIFEST_NAME).write_text(json.dumps(manifest.model_dump(mode="json")))
    return root


@pytest.fixture
def make_run(tmp_path: Path) -> Callable[..., dict[str, Path]]:
    """A run folder with its config and dataset; returns the paths the command needs."""

    def make(name: str = "run", config: RunConfig | None = None) -> dict[str, Path]:
        config = config or tiny_config()
        base = tmp_path / name
        base.mkdir()
        config_path = base / "config.json"
        config_path.write_text(config.model_dump_json())
        dataset = write_dataset(base / "dataset", config)
        return {"config": config_path, "run": base / "run", "dataset": dataset, "work": base / "work"}

    return make


# ---- running the command and reading what it wrote ------------------------------------------------------

CHECKPOINT_EVERY = 2


def train_argv(paths: dict[str, Path], until: int, every: int | None = CHECKPOINT_EVERY) -> list[str]:
    argv = ["job", "train", "--config", str(paths["config"]), "--run-uri", str(paths["run"]),
            "--dataset-uri", str(paths["dataset"]), "--until-epoch", str(until), "--work-dir", str(paths["work"]),
            "--metrics-flush-seconds", "0"]
    return argv + (["--checkpoint-every-steps", str(every)] if every else [])


def job_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AURAX_FAULT_")}
    env.update({"AURAX_IMDS_ENDPOINT": "off", "PYTHONUNBUFFERED": "1"}, **extra)
    return env


def start_train(paths: dict[str, Path], until: int, every: int | None = CHECKPOINT_EVERY,
                **env: str) -> subprocess.Popen[str]:
    """`python -m aurax.cli job train ...` as a child process (stderr piped, for its step log lines)."""
    return subprocess.Popen([sys.executable, "-m", "aurax.cli", *train_argv(paths, until, every)],
                            env=job_env(**env), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)


def run_train(paths: dict[str, Path], until: int, every: int | None = CHECKPOINT_EVERY,
              **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aurax.cli", *train_argv(paths, until, every)], env=job_env(**env),
                          capture_output=True, text=True, timeout=300, check=False)


def wait_for_line(proc: subprocess.Popen[str], needle: str) -> list[str]:
    """Read the child's stderr until a line contains `needle`; the lines read."""
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if needle in line:
            return seen
    raise AssertionError(f"{needle!r} never logged; stderr:\n{''.join(seen)}")


def records(paths: dict[str, Path]) -> list:
    root = paths["run"] / "metrics"
    return [parse_metric_line(line) for chunk in sorted(root.rglob("*.jsonl"))
            for line in chunk.read_text().splitlines() if line]


def step_losses(paths: dict[str, Path]) -> dict[int, float]:
    """Loss per step; a step logged twice (replayed after a kill) must have logged the same loss both times."""
    losses: dict[int, float] = {}
    for record in records(paths):
        if isinstance(record, TrainStep):
            assert losses.setdefault(record.step, record.loss) == record.loss, f"step {record.step} differs on replay"
    return losses


def latest_checkpoint(paths: dict[str, Path]) -> VerifiedCheckpoint:
    found = CheckpointStore(str(paths["run"] / "checkpoints"), paths["work"]).find_latest().found
    assert found is not None
    return found


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [name for name in a if not torch.equal(a[name], b[name])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


@pytest.fixture(scope="session")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The uninterrupted run every interrupted one must match: 3 epochs of 3 steps."""
    base = tmp_path_factory.mktemp("baseline")
    config = tiny_config()
    (base / "config.json").write_text(config.model_dump_json())
    paths = {"config": base / "config.json", "run": base / "run", "dataset": write_dataset(base / "dataset", config),
             "work": base / "work"}
    done = run_train(paths, until=3)
    assert done.returncode == 0, done.stderr
    final = latest_checkpoint(paths)
    return {"paths": paths, "losses": step_losses(paths), "weights": final.load_tensors(), "manifest": final.manifest}
