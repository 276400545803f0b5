"""`aurax local` end to end: the real template, state machine, handlers and job subprocesses in the emulation.

The strongest test the project has: GO (with a spot reclaim mid-epoch, retried by Batch and resumed from the
checkpoint in emulated S3, then promoted) and NO-GO (stopped with an abort report).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from aurax.local.moto_patches import SPOT_RECLAIM_REASON
from aurax.local.pipeline import LocalResult, run_local
from aurax_contracts import JobExit, parse_metric_line
from aurax_contracts.metrics import Interruption, TrainStep

pytestmark = pytest.mark.slow


def metric_records(result: LocalResult, attempt: int) -> list:
    folder = result.workdir / "bucket" / "runs" / result.run_id / "metrics" / f"attempt-{attempt:04d}"
    return [parse_metric_line(line) for chunk in sorted(folder.glob("*.jsonl"))
            for line in chunk.read_text().splitlines() if line.strip()]


def attempts_of(result: LocalResult, stage: str) -> list[dict]:
    return [a for a in result.batch_attempts if a["job"] == f"{result.run_id}-{stage}"]


def detail_types(result: LocalResult) -> list[str]:
    return [e["detail_type"] for e in result.events]


def test_go_run_survives_a_spot_reclaim_and_promotes_the_model(tmp_path: Path):
    result = run_local("go", keep=tmp_path, timeout_s=600)

    assert (result.execution_status, result.end_state) == ("SUCCEEDED", "ModelPromoted"), result.to_json()
    assert result.handler_errors == [] and result.iam_denials == []
    assert [(d["point"], d["outcome"]) for d in result.decisions] == [("decision", "GO"), ("final", "GO")]
    assert all(c["passed"] for c in result.decisions[0]["criteria"])

    # The reclaim: attempt 1 stopped by Batch's spot reason after an emergency checkpoint, attempt 2 resumed.
    first, second = attempts_of(result, "train-to-decision")
    assert first["status_reason"] == SPOT_RECLAIM_REASON and first["exit_code"] == JobExit.INTERRUPTED
    assert second["exit_code"] == 0
    interrupted = [r for r in metric_records(result, 1) if isinstance(r, Interruption)]
    assert len(interrupted) == 1 and interrupted[0].cause == "sigterm"
    resumed_steps = [r.step for r in metric_records(result, 2) if isinstance(r, TrainStep)]
    assert resumed_steps and resumed_steps[0] == interrupted[0].step + 1  # from the checkpoint, not step 1

    assert detail_types(result).count("AURA-X Decision") == 2 and "AURA-X Model Promoted" in detail_types(result)
    assert any("GO at decision" in a["subject"] for a in result.alerts)
    assert {p.relative_to(result.workdir / "reports" / result.run_id).as_posix() for p in result.reports} == \
        {"eval/decision/report.html", "eval/final/report.html"}
    assert any((result.workdir / "bucket" / "models" / result.run_id).rglob("*")), "the model was not promoted"
    assert any(result.logs.glob("*train-to-decision-attempt-2.log"))
    monitor_log = next((result.logs / "lambda").glob("*MetricsMonitorFunction*.log")).read_text()
    assert result.run_id in monitor_log  # each function's logs land in its own file


def test_no_go_run_stops_with_an_abort_report(tmp_path: Path):
    result = run_local("no-go", keep=tmp_path, interrupt=False, timeout_s=600)

    assert (result.execution_status, result.end_state) == ("SUCCEEDED", "StoppedNoGo"), result.to_json()
    assert result.handler_errors == [] and result.iam_denials == []
    assert [(d["point"], d["outcome"]) for d in result.decisions] == [("decision", "NO-GO")]
    failed = [c["name"] for c in result.decisions[0]["criteria"] if not c["passed"]]
    assert failed == ["authenticity"]
    assert attempts_of(result, "train-to-final") == []
    assert detail_types(result) == ["AURA-X Decision", "AURA-X Run Aborted"]
    aborted = result.events[1]["detail"]
    assert aborted["reason"] == "no-go"
    assert any(p.name == "abort.html" for p in result.reports)
    assert any("NO-GO" in a["subject"] for a in result.alerts)
