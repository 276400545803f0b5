"""The same job against S3 URIs (moto), and `load_trained_model` for the evaluation (full and LoRA)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import boto3
import pytest
import torch
from moto import mock_aws

from aurax import storage
from aurax.cli import main
from aurax.errors import InputError
from aurax.train.checkpoint import load_trained_model
from aurax_contracts import JobExit
from aurax_contracts.metrics import CheckpointSaved, Heartbeat, TrainStep, ValLoss

from .conftest import parse_metric_line, tiny_config, train_argv, write_dataset

BUCKET = "aurax-test-data"


@pytest.fixture
def s3_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AURAX_IMDS_ENDPOINT", "off")
    with mock_aws():
        storage.reset_clients()
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        config = tiny_config()
        local = write_dataset(tmp_path / "dataset", config)
        for path in local.iterdir():
            s3.upload_file(str(path), BUCKET, f"datasets/tiny/{path.name}")
        s3.put_object(Bucket=BUCKET, Key="runs/tiny-run/config.json", Body=config.model_dump_json().encode())
        yield {"config": f"s3://{BUCKET}/runs/tiny-run/config.json", "run": f"s3://{BUCKET}/runs/tiny-run",
               "dataset": f"s3://{BUCKET}/datasets/tiny", "work": tmp_path / "work"}, config, s3
        storage.reset_clients()


def test_train_and_resume_on_s3_uris(s3_run, monkeypatch) -> None:
    paths, config, s3 = s3_run
    assert main(train_argv(paths, until=1)) == JobExit.SUCCEEDED
    monkeypatch.setenv("AWS_BATCH_JOB_ATTEMPT", "2")  # as Batch's retry of the same job would run it
    monkeypatch.setenv("AWS_BATCH_JOB_ID", "job-123")
    assert main(train_argv(paths, until=2)) == JobExit.SUCCEEDED  # resumes from S3 (downloads and verifies)
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/tiny-run/")["Contents"])
    checkpoints = sorted({k.split("/")[3] for k in keys if k.startswith("runs/tiny-run/checkpoints/step-")})
    assert checkpoints == ["step-000000004", "step-000000006-end"]  # keep_last 2
    pointer = s3.get_object(Bucket=BUCKET, Key="runs/tiny-run/checkpoints/latest")["Body"].read()
    assert pointer.decode().strip() == "step-000000006-end"
    chunks = [k for k in keys if k.startswith("runs/tiny-run/metrics/attempt-")]
    lines = [parse_metric_line(line) for k in chunks
             for line in s3.get_object(Bucket=BUCKET, Key=k)["Body"].read().decode().splitlines()]
    assert sorted((r.attempt, r.step) for r in lines if isinstance(r, TrainStep)) == [
        (1, 1), (1, 2), (1, 3), (2, 4), (2, 5), (2, 6)]
    assert [(r.epoch, r.step, r.baseline) for r in lines if isinstance(r, ValLoss)] == [
        (0, 0, True), (0, 3, False), (1, 6, False)]  # the baseline once, before attempt 1's first step
    beats = [r for r in lines if isinstance(r, Heartbeat)]
    assert beats and {r.batch_job_id for r in beats if r.attempt == 2} == {"job-123"}
    saved = [r for r in lines if isinstance(r, CheckpointSaved)]
    assert saved[-1].uri == f"{paths['run']}/checkpoints/step-000000006-end" and saved[-1].trigger == "epoch"

    model, manifest, digest = load_trained_model(f"{paths['run']}/checkpoints", config)
    raw = s3.get_object(Bucket=BUCKET, Key="runs/tiny-run/checkpoints/step-000000006-end/manifest.json")["Body"].read()
    assert digest == hashlib.sha256(raw).hexdigest()
    assert (manifest.step, manifest.epoch_complete, manifest.val_loss is not None) == (6, True, True)
    assert manifest.baseline_val_loss == next(r.val_loss for r in lines if isinstance(r, ValLoss) and r.baseline)
    assert not model.training and not any(p.requires_grad for p in model.parameters())

    assert main(train_argv(paths, until=3)) == JobExit.SUCCEEDED  # a second resume on the same host
    assert [p.name for p in (paths["work"] / "restore").iterdir()] == ["step-000000006-end"]  # no stale copies


def test_load_trained_model_raises_input_error_when_nothing_verifies(tmp_path: Path) -> None:
    (tmp_path / "step-000000002").mkdir(parents=True)
    (tmp_path / "step-000000002" / "model.safetensors").write_bytes(b"partial")
    with pytest.raises(InputError, match="no verified checkpoint.*no manifest"):
        load_trained_model(str(tmp_path), tiny_config())


def test_lora_fine_tune_trains_only_adapters_and_loads_merged(make_run, monkeypatch) -> None:
    monkeypatch.setenv("AURAX_IMDS_ENDPOINT", "off")
    config = tiny_config(activation_checkpointing="on")  # the T4 plan's memory saver, with adapters
    config.model.finetune = "lora"
    config.model.lora_rank = 4
    paths = make_run(config=config)
    assert main(train_argv(paths, until=1)) == JobExit.SUCCEEDED
    model, manifest, _ = load_trained_model(str(paths["run"] / "checkpoints"), config)
    assert manifest.finetune == "lora"
    from safetensors.torch import load_file

    saved = load_file(str(paths["run"] / "checkpoints" / "step-000000003-end" / "model.safetensors"))
    assert saved and all("lora_" in name for name in saved)  # only adapters are checkpointed
    base = __import__("aurax.model", fromlist=["load_musicgen"]).load_musicgen(config.model.model_id)
    name = "decoder.model.decoder.layers.0.self_attn.q_proj"
    merged = dict(model.named_modules())[name].base_layer.weight
    assert not torch.equal(merged, dict(base.named_modules())[name].weight)  # the adapters were folded in
