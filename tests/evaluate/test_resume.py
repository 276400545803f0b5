"""An interrupted evaluation keeps its clips and resumes from them; odd clips are counted, never mixed in."""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from aurax import storage
from aurax.cli import main
from aurax.evaluate.clips import ClipRecord
from aurax.evaluate.job import run_evaluation
from aurax.train.checkpoint import load_trained_model
from aurax_contracts import EvalReport, JobExit, RunConfig, RunLayout
from aurax_contracts.metrics import Interruption, parse_metric_line
from aurax_control.decision import evaluation_criteria
from tests.evaluate.fixtures import tiny_config, write_checkpoint, write_dataset

CLIPS = 8


def _prepare(tmp: Path, run_id: str, config: RunConfig) -> dict[str, str]:
    root = (tmp / "bucket").as_uri()
    layout = RunLayout(root, config.run_id)
    run = {"run_uri": layout.run_uri, "dataset_uri": f"{root}/datasets/fixture", "config_uri": layout.config_uri,
           "eval_uri": layout.eval_uri("decision"), "metrics_uri": layout.metrics_uri}
    storage.write_text(layout.config_uri, config.model_dump_json())
    write_dataset(run["dataset_uri"], config)
    write_checkpoint(layout.checkpoints_uri, config, tmp / "work")
    return run


def _args(run: dict[str, str]) -> list[str]:
    return ["job", "evaluate", "--config", run["config_uri"], "--run-uri", run["run_uri"],
            "--dataset-uri", run["dataset_uri"], "--point", "decision"]


def _records(run: dict[str, str]) -> dict[str, bytes]:
    return {uri: storage.read_bytes(uri) for uri in storage.list_uris(run["eval_uri"] + "/clips")
            if uri.endswith(".json")}


def _audio(run: dict[str, str], name: str) -> np.ndarray:
    return soundfile.read(io.BytesIO(storage.read_bytes(f"{run['eval_uri']}/{name}")))[0]


@pytest.mark.slow
def test_sigterm_keeps_finished_clips_exits_75_and_the_retry_resumes_without_regenerating_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    config = tiny_config(run_id="resume-run", clips=CLIPS, batch=2)
    run = _prepare(tmp_path / "a", "resume-run", config)
    env = {**os.environ, "AURAX_IMDS_ENDPOINT": "off", "AWS_BATCH_JOB_ATTEMPT": "1", "OMP_NUM_THREADS": "1"}
    job = subprocess.Popen([sys.executable, "-m", "aurax.cli", *_args(run)], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while len(_records(run)) < 2:
            assert job.poll() is None, job.communicate()
            assert time.monotonic() < deadline, "no clip was written within 180 s"
            time.sleep(0.05)
        job.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        _, err = job.communicate(timeout=60)
        stop_seconds = time.monotonic() - sent
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == JobExit.INTERRUPTED, err
    assert stop_seconds < 15, f"took {stop_seconds:.1f} s to stop after SIGTERM"
    assert "run the same command again to resume" in err
    kept = _records(run)
    assert 2 <= len(kept) < 2 * CLIPS and not storage.exists(run["eval_uri"] + "/report.json")
    interruptions = [r for uri in storage.list_uris(run["metrics_uri"]) for line in storage.read_text(uri).splitlines()
                     if isinstance(r := parse_metric_line(line), Interruption)]
    assert [r.cause for r in interruptions] == ["sigterm"]

    # the retry (Batch's next attempt) resumes: the kept clips are neither generated nor written again
    monkeypatch.setenv("AWS_BATCH_JOB_ATTEMPT", "2")
    monkeypatch.setenv("AURAX_IMDS_ENDPOINT", "off")
    with caplog.at_level(logging.INFO, logger="aurax.evaluate.job"):
        assert main(_args(run)) == 0
    assert f"resuming: {len(kept)} of {2 * CLIPS} clips already written" in caplog.text
    after = _records(run)
    assert all(after[uri] == body for uri, body in kept.items())
    report = EvalReport.model_validate_json(storage.read_text(run["eval_uri"] + "/report.json"))
    first = {ClipRecord.model_validate_json(body).clip.audio for body in kept.values()}
    assert {c.audio for c in report.clips if c.attempt == 1} == first
    assert len(report.clips) == 2 * CLIPS and report.attempts == [1, 2]

    # and it ends where an uninterrupted evaluation ends
    fresh_run = _prepare(tmp_path / "b", "resume-run", config)
    assert main(_args(fresh_run)) == 0
    fresh = EvalReport.model_validate_json(storage.read_text(fresh_run["eval_uri"] + "/report.json"))
    assert [(c.arm, c.index, c.score) for c in fresh.clips] == \
        [(c.arm, c.index, pytest.approx(c.score, abs=1e-6)) for c in report.clips]
    for clip in report.clips:  # within one 16-bit step
        assert np.max(np.abs(_audio(run, clip.audio) - _audio(fresh_run, clip.audio))) <= 1 / 32768


def test_clips_of_another_configuration_are_generated_again(tmp_path: Path) -> None:
    config = tiny_config(run_id="stale-run", clips=2)
    run = _prepare(tmp_path, "stale-run", config)
    assert main(_args(run)) == 0
    before = _records(run)
    changed = config.model_copy(update={"evaluation": config.evaluation.model_copy(update={"guidance_scale": 2.0})})
    storage.write_text(run["config_uri"], changed.model_dump_json())
    assert main(_args(run)) == 0
    after = _records(run)
    assert set(after) == set(before) and all(after[uri] != before[uri] for uri in before)
    report = EvalReport.model_validate_json(storage.read_text(run["eval_uri"] + "/report.json"))
    assert report.guidance_scale == 2.0 and len(report.clips) == 4


def test_clips_of_another_precision_are_generated_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # e.g. a NaN report re-run with evaluation.precision fp32 (what its advice says), or a resume on a GPU that
    # resolves `auto` to bf16 where the first attempt drew in fp16: half precision draws differently
    import aurax.evaluate.job as job

    config = tiny_config(run_id="precision-run", clips=2)
    run = _prepare(tmp_path, "precision-run", config)
    monkeypatch.setattr(job, "resolve_generation_precision", lambda requested, device: "fp16")
    assert main(_args(run)) == 0  # keyed as generated in fp16 (the CPU still computes in fp32)
    before = _records(run)
    monkeypatch.undo()
    assert main(_args(run)) == 0
    after = _records(run)
    assert set(after) == set(before) and all(after[uri] != before[uri] for uri in before)


def test_non_finite_generation_is_counted_per_arm_flagged_and_fails_the_decision(tmp_path: Path) -> None:
    config = tiny_config(run_id="nan-run", clips=2)
    run = _prepare(tmp_path, "nan-run", config)

    def broken_treatment(uri: str, cfg: RunConfig):  # type: ignore[no-untyped-def]
        model, manifest, sha = load_trained_model(uri, cfg)
        with torch.no_grad():
            model.decoder.lm_heads[0].weight.fill_(float("nan"))
        return model, manifest.model_copy(update={"baseline_val_loss": 3.6}), sha

    report = run_evaluation(config, run_uri=run["run_uri"], dataset_uri=run["dataset_uri"], point="decision",
                            load_treatment=broken_treatment)
    assert (report.treatment.non_finite, report.control.non_finite) == (2, 0)
    assert all(not c.finite and c.score == 0 and not c.authentic for c in report.clips if c.arm == "treatment")
    assert len(report.flags) == 1 and "2 treatment clip(s)" in report.flags[0]
    assert report.baseline_val_loss == 3.6  # carried from the checkpoint manifest
    failed = {c.name for c in evaluation_criteria(report, config.decision) if not c.passed}
    assert "finite_audio" in failed


def test_a_plain_path_run_uri_resumes_from_its_written_clips(tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    # `--run-uri ./runs/x` (no file:// scheme): the clips written by the first attempt must be found again,
    # not read from "<eval uri>/file:///<eval uri>/clips/..." (exit 65).
    config = tiny_config(run_id="path-run", clips=2)
    run = _prepare(tmp_path, "path-run", config)
    plain = {key: storage.parse_uri(uri).key if uri.startswith("file://") else uri for key, uri in run.items()}
    assert not plain["run_uri"].startswith("file:")
    assert main(_args(plain)) == 0
    with caplog.at_level(logging.INFO, logger="aurax.evaluate.job"):
        assert main(_args(plain)) == 0
    assert "resuming: 4 of 4 clips already written" in caplog.text
