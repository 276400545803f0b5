"""`aurax local` as a command: its exit code, summary and progress display (the run itself is faked here;
test_local_pipeline runs it for real)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aurax.cli import main
from aurax.commands import local as command
from aurax.local import pipeline
from aurax.local.pipeline import LocalResult, Progress
from aurax.ops.status import RunStatusView
from aurax_contracts import RunState

DECISION = {"point": "decision", "outcome": "GO", "epoch": 1,
            "criteria": [{"name": "val_loss", "value": 3.2, "threshold": 3.5, "comparison": "<=", "passed": True}]}


def result(end_state: str, tmp_path: Path) -> LocalResult:
    return LocalResult(
        run_id="local-go-1", variant="go", execution_status="SUCCEEDED", end_state=end_state, error=None,
        decisions=[DECISION], reports=[tmp_path / "report.html"],
        alerts=[{"subject": "[AURA-X DECISION] local-go-1: GO at decision", "message": "..."}],
        events=[{"detail_type": "AURA-X Decision", "source": "aurax.train-control", "detail": {"decision": DECISION}}],
        batch_attempts=[{"job": "local-go-1-train", "attempt": 1, "exit_code": 75, "seconds": 1.0,
                         "status_reason": "Host EC2 (instance i-0) terminated."}],
        handler_errors=[], iam_denials=[], workdir=tmp_path, logs=tmp_path / "logs", seconds=12.0, deploy_seconds=1.0)


@pytest.mark.parametrize(("end_state", "code"), [("ModelPromoted", 0), ("AbortedJobFailed", 1)])
def test_exit_code_says_whether_the_run_reached_its_expected_end(monkeypatch, tmp_path, capsys, end_state, code):
    monkeypatch.setattr(pipeline, "run_local", lambda *a, **k: result(end_state, tmp_path))
    assert main(["local", "--json"]) == code
    printed = json.loads(capsys.readouterr().out)
    assert printed["end_state"] == end_state and printed["outcome"] == "GO"


def test_summary_lists_decision_reports_alerts_events_and_the_reclaim(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(pipeline, "run_local", lambda *a, **k: result("ModelPromoted", tmp_path))
    monkeypatch.setattr(command, "_Display", lambda: None)  # no live display in a test
    assert main(["local"]) == 0
    out = capsys.readouterr().out
    assert "OK: run local-go-1 ended in ModelPromoted" in out and "decision at the decision point: GO" in out
    assert "[pass] val_loss: 3.2, needs <= 3.5" in out and "spot interruptions injected: 1" in out
    assert str(tmp_path / "report.html") in out and "GO at decision" in out and "AURA-X Decision" in out


def test_progress_display_logs_states_retries_alerts_and_events(capsys):
    display = command._Display()
    state = RunState(run_id="r", status="training", step=3, total_steps=12, epoch=0, last_loss=4.1,
                     updated_at=datetime.now(UTC))
    view = RunStatusView("r", state, None, None, datetime.now(UTC))
    for p in (Progress(1, "TrainToDecision", view, None, [], []),
              Progress(2, "TrainToDecision", view, "r-train (attempt 1)", [], []),
              Progress(3, "TrainToDecision", view, None, [], []),
              Progress(4, "TrainToDecision", view, "r-train (attempt 2)",
                       [{"subject": "[AURA-X WARNING] r: loss spiked"}],
                       [{"detail_type": "AURA-X Alert",
                         "detail": {"severity": "warning", "code": "loss-spike", "what": "loss spiked"}}])):
        display.update(p)
    display.stop()
    err = capsys.readouterr().err
    assert "r-train (attempt 1)" in err and "r-train (attempt 2)  (retried by Batch)" in err
    assert "alert [AURA-X WARNING] r: loss spiked" in err and "warning loss-spike: loss spiked" in err


def test_a_denied_request_fails_the_run_even_when_it_reached_its_end(monkeypatch, tmp_path, capsys):
    denial = ("User: arn:aws:sts::123456789012:assumed-role/r/Decide is not authorized to perform: kms:Decrypt "
              "on resource: arn:aws:kms:us-east-1:123456789012:key/k")
    denied = replace(result("ModelPromoted", tmp_path), iam_denials=[denial])
    monkeypatch.setattr(pipeline, "run_local", lambda *a, **k: denied)
    monkeypatch.setattr(command, "_Display", lambda: None)
    assert main(["local"]) == 1
    out = capsys.readouterr().out
    assert "UNEXPECTED: run local-go-1" in out and "IAM DENIED (1;" in out and denial in out
