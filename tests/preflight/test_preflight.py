"""`aurax preflight`: every check, its pass, failure and skip, and exit 78 on any failure."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from aurax import preflight, storage
from aurax.cli import main
from aurax.preflight import ALERT_TOPIC_ENV, IDLE_RULE_ENV, run_preflight
from tests.evaluate.fixtures import tiny_config, write_dataset


@pytest.fixture(autouse=True)
def _no_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(IDLE_RULE_ENV, raising=False)
    monkeypatch.delenv(ALERT_TOPIC_ENV, raising=False)


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        storage.reset_clients()
        yield
    storage.reset_clients()


@pytest.fixture
def fast_detector(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checks other than the detector's: skip re-running the suite (its own tests run it)."""
    monkeypatch.setattr(preflight, "check_detector",
                        lambda analysis: preflight.CheckResult("detector", "passed", "stubbed in this test"))


def _status(report: preflight.PreflightReport) -> dict[str, str]:
    return {c.name: c.status for c in report.checks}


def test_local_run_passes_with_skips_and_reasons(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["preflight", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert report["passed"] is True
    assert statuses == {"detector": "passed", "gpu": "skipped", "config": "skipped", "dataset": "skipped",
                        "dataset-plan": "skipped", "idle-rule": "skipped", "alert-topic": "skipped"}
    details = {c["name"]: c["detail"] for c in report["checks"]}
    assert IDLE_RULE_ENV in details["idle-rule"] and ALERT_TOPIC_ENV in details["alert-topic"]
    assert "detector validation cases passed" in details["detector"]


def test_broken_detector_threshold_fails_with_exit_78(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "analysis.yaml"
    broken.write_text("detector:\n  f0_min_hz: 100\n")  # a drifted threshold that misses low log drums
    assert main(["preflight", "--json", "--analysis-config", str(broken)]) == 78
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] is False
    assert len(report["checks"]) == 7  # every check is still listed
    detector = next(c for c in report["checks"] if c["name"] == "detector")
    assert detector["status"] == "failed" and "log-drum-52hz-300ms (expected log drum" in detector["detail"]


def test_require_gpu_without_gpu_fails(monkeypatch: pytest.MonkeyPatch, fast_detector: None,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["preflight", "--require-gpu"]) == 78
    out = capsys.readouterr().out
    assert "FAILED  gpu" in out and "no CUDA device" in out and "preflight FAILED: 1 check(s) failed" in out


def test_config_check(tmp_path: Path, fast_detector: None) -> None:
    good = tmp_path / "run.yaml"
    good.write_text("run_id: good-run\n")
    report = run_preflight(config_uri=str(good), dataset_uri=None, require_gpu=False)
    assert _status(report)["config"] == "passed"
    bad = tmp_path / "bad.yaml"
    bad.write_text("run_id: good-run\ntraining:\n  total_epoch: 3\n")
    report = run_preflight(config_uri=str(bad), dataset_uri=None, require_gpu=False)
    check = next(c for c in report.checks if c.name == "config")
    assert check.status == "failed" and "did you mean 'total_epochs'" in check.detail and not report.passed


def test_dataset_check(tmp_path: Path, fast_detector: None) -> None:
    config = tiny_config()
    config_file = tmp_path / "run.json"
    config_file.write_text(config.model_dump_json())
    dataset = (tmp_path / "dataset").as_uri()

    def dataset_check(config_uri: str | None = str(config_file)) -> preflight.CheckResult:
        report = run_preflight(config_uri=config_uri, dataset_uri=dataset, require_gpu=False)
        return next(c for c in report.checks if c.name == "dataset")

    assert dataset_check().status == "skipped"  # not prepared yet
    write_dataset(dataset, config, train_clips=3, validation_clips=1)
    check = dataset_check()
    assert check.status == "passed" and "train 3" in check.detail and "validation 1" in check.detail

    other = tiny_config(run_id="other-run").model_copy(update={"dataset": config.dataset.model_copy(
        update={"min_score": 5.0})})
    other_file = tmp_path / "other.json"
    other_file.write_text(other.model_dump_json())
    assert "another dataset selection" in dataset_check(str(other_file)).detail
    bigger = tiny_config(run_id="bigger-run").model_copy(update={"dataset": config.dataset.model_copy(
        update={"target_clips": 100, "target_tolerance": 0.05})})
    bigger_file = tmp_path / "bigger.json"
    bigger_file.write_text(bigger.model_dump_json())
    check = dataset_check(str(bigger_file))
    assert check.status == "failed" and "4 clips, fewer than the 95 this config needs" in check.detail

    (tmp_path / "dataset" / "validation-00000.npz").unlink()
    check = dataset_check()
    assert check.status == "failed" and "shards missing: validation-00000.npz" in check.detail

    manifest = tmp_path / "dataset" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"train": 3', '"train": 5'))
    assert "shards hold 3 clips, the manifest counts 5" in dataset_check().detail
    manifest.write_text(manifest.read_text().replace('"validation": 1', '"validation": 0'))
    assert "the validation split is empty" in dataset_check().detail
    manifest.write_text("{not json")
    check = dataset_check()
    assert check.status == "failed" and "corrupt" in check.detail


def test_idle_rule_and_alert_topic_checks(aws: None, monkeypatch: pytest.MonkeyPatch,
                                          fast_detector: None) -> None:
    events = boto3.client("events")
    events.put_rule(Name="aurax-idle", ScheduleExpression="rate(5 minutes)", State="ENABLED")
    topic = boto3.client("sns").create_topic(Name="aurax-alerts")["TopicArn"]
    monkeypatch.setenv(IDLE_RULE_ENV, "aurax-idle")
    monkeypatch.setenv(ALERT_TOPIC_ENV, topic)
    report = run_preflight(config_uri=None, dataset_uri=None, require_gpu=False)
    assert _status(report)["idle-rule"] == "passed" and _status(report)["alert-topic"] == "passed"
    assert report.passed

    events.disable_rule(Name="aurax-idle")
    report = run_preflight(config_uri=None, dataset_uri=None, require_gpu=False)
    detail = next(c.detail for c in report.checks if c.name == "idle-rule")
    assert not report.passed and "DISABLED" in detail and "enable-rule" in detail

    monkeypatch.setenv(IDLE_RULE_ENV, "no-such-rule")
    monkeypatch.setenv(ALERT_TOPIC_ENV, topic.replace("aurax-alerts", "no-such-topic"))
    report = run_preflight(config_uri=None, dataset_uri=None, require_gpu=False)
    assert _status(report)["idle-rule"] == "failed" and _status(report)["alert-topic"] == "failed"
    details = " ".join(c.detail for c in report.checks)
    assert "ResourceNotFoundException" in details and "NotFound" in details


def test_cli_exit_78_lists_every_check(aws: None, monkeypatch: pytest.MonkeyPatch, fast_detector: None,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(IDLE_RULE_ENV, "missing-rule")
    assert main(["preflight"]) == 78
    out = capsys.readouterr().out
    for name in ("detector", "gpu", "config", "dataset", "idle-rule", "alert-topic"):
        assert name in out
    assert "FAILED  idle-rule" in out


def test_a_crashing_check_fails_instead_of_aborting_the_report(monkeypatch: pytest.MonkeyPatch,
                                                                fast_detector: None) -> None:
    def explode(rule_name: str | None) -> preflight.CheckResult:
        raise RuntimeError("boom")

    monkeypatch.setattr(preflight, "check_idle_rule", explode)
    report = run_preflight(config_uri=None, dataset_uri=None, require_gpu=False)
    assert _status(report)["idle-rule"] == "failed" and len(report.checks) == 7
    assert "RuntimeError: boom" in next(c.detail for c in report.checks if c.name == "idle-rule")


def test_gpu_judgement() -> None:
    gib = 2**30
    assert preflight.judge_gpu("Tesla T4", 14 * gib, 15 * gib, 1e-3, 12.0).status == "passed"
    low = preflight.judge_gpu("Tesla T4", 4 * gib, 15 * gib, 1e-3, 12.0)
    assert low.status == "failed" and "only 4.0 GiB of GPU memory free, need 12" in low.detail
    for error in (0.5, float("nan")):
        wrong = preflight.judge_gpu("Tesla T4", 14 * gib, 15 * gib, error, 12.0)
        assert wrong.status == "failed" and "fp16 matmul is wrong" in wrong.detail


def test_fp16_probe_is_accurate_on_healthy_hardware() -> None:
    import torch

    assert preflight.fp16_relative_error(torch.device("cpu")) < preflight.FP16_MAX_RELATIVE_ERROR


def test_min_gpu_memory_flag_reaches_the_gpu_check(monkeypatch: pytest.MonkeyPatch, fast_detector: None) -> None:
    asked: list[float] = []

    def check_gpu(require: bool, min_memory_gib: float) -> preflight.CheckResult:
        asked.append(min_memory_gib)
        return preflight.CheckResult("gpu", "skipped", "recorded")

    monkeypatch.setattr(preflight, "check_gpu", check_gpu)
    assert main(["preflight", "--min-gpu-memory-gib", "0"]) == 0
    assert main(["preflight"]) == 0
    assert asked == [0.0, preflight.DEFAULT_MIN_GPU_MEMORY_GIB]
