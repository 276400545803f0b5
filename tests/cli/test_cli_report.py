"""`aurax report`: downloads the evaluation and abort reports with what they link to."""

from __future__ import annotations

import boto3

from aurax.local.stack import LocalStack
from aurax_contracts import JobExit
from tests.cli.conftest import STACK


def put(deployed: LocalStack, key: str, body: bytes = b"x") -> None:
    boto3.client("s3").put_object(Bucket=deployed.bucket, Key=key, Body=body)


def test_report_fetches_evaluation_and_abort_reports(deployed: LocalStack, aurax, tmp_path):
    put(deployed, "runs/rep-1/eval/decision/report.html", b"<html>decision</html>")
    put(deployed, "runs/rep-1/eval/decision/report.json", b"{}")
    put(deployed, "runs/rep-1/eval/decision/clips/treatment-0.wav", b"RIFF")
    put(deployed, "runs/rep-1/reports/abort.html", b"<html>abort</html>")
    put(deployed, "runs/rep-1/checkpoints/step-000000002/model.safetensors", b"weights")
    result = aurax("report", "rep-1", "--stack", STACK, "--out", str(tmp_path), "--json")
    assert result.code == 0, result.err
    reports = result.json()["reports"]
    assert reports == [str(tmp_path / "rep-1/eval/decision/report.html"), str(tmp_path / "rep-1/reports/abort.html")]
    assert (tmp_path / "rep-1/eval/decision/report.html").read_bytes() == b"<html>decision</html>"
    assert (tmp_path / "rep-1/eval/decision/clips/treatment-0.wav").is_file()
    assert not (tmp_path / "rep-1/checkpoints").exists()


def test_a_run_without_a_report_yet_says_when_one_appears(deployed: LocalStack, aurax, tmp_path):
    put(deployed, "runs/rep-2/config.json", b"{}")
    result = aurax("report", "rep-2", "--stack", STACK, "--out", str(tmp_path))
    assert result.code == JobExit.BAD_INPUT
    assert "has no report yet" in result.err and "eval/decision/report.html" in result.err


def test_an_unknown_run(deployed: LocalStack, aurax, tmp_path):
    result = aurax("report", "never-ran", "--stack", STACK, "--out", str(tmp_path))
    assert result.code == JobExit.BAD_INPUT and "no run 'never-ran'" in result.err
