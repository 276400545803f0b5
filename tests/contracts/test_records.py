"""Metric records, reports, decisions and events: round trips and rejection of bad values."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from aurax_contracts import (
    AlertDetail,
    ArmSummary,
    Comparison,
    Criterion,
    Decision,
    DecisionDetail,
    EvalReport,
    Provenance,
    Severity,
    dump_metric_line,
    parse_metric_line,
)
from aurax_contracts.metrics import Heartbeat, TrainStep

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SHA = "a" * 64


def test_non_finite_loss_survives_a_round_trip() -> None:
    record = TrainStep(run_id="r", time=NOW, step=10, epoch=0, loss=math.nan, lr=1e-5, samples_per_s=2.0)
    line = dump_metric_line(record)
    assert '"loss":NaN' in line
    assert math.isnan(parse_metric_line(line).loss)
    inf = TrainStep(run_id="r", time=NOW, step=10, epoch=0, loss=math.inf, lr=1e-5, samples_per_s=2.0)
    assert parse_metric_line(dump_metric_line(inf)).loss == math.inf


@pytest.mark.parametrize(
    "line",
    [
        '{"kind":"train","run_id":"r","time":"2026-01-01T00:00:00Z","step":1,"epoch":0,"loss":"NaN","lr":0.1,"samples_per_s":1}',
        '{"kind":"train","run_id":"r","time":"2026-01-01T00:00:00Z","step":1,"epoch":0,"loss":-1,"lr":0.1,"samples_per_s":1}',
        '{"kind":"train","run_id":"r","time":"2026-01-01T00:00:00Z","step":-5,"epoch":0,"loss":1,"lr":0.1,"samples_per_s":1}',
        '{"kind":"train","run_id":"r","time":"2026-01-01T00:00:00","step":1,"epoch":0,"loss":1,"lr":0.1,"samples_per_s":1}',
        '{"kind":"train","run_id":"r","time":"2026-01-01T00:00:00Z","step":1,"epoch":0,"loss":1,"lr":0.1,"samples_per_s":1,"x":1}',
        '{"kind":"mystery","run_id":"r","time":"2026-01-01T00:00:00Z"}',
        '{"kind":"train","run_id":"r","time":"2026-01-01T00:00:00Z","step":1,"epoch":0,"loss":1,"lr',
        "{}",
        "\x00\x01\x02",
    ],
)
def test_bad_metric_lines_are_rejected(line: str) -> None:
    with pytest.raises(ValidationError):
        parse_metric_line(line)


def test_heartbeat_round_trip() -> None:
    beat = Heartbeat(run_id="r", time=NOW, step=3, epoch=1, instance_type="g4dn.xlarge",
                     availability_zone="us-east-1a", batch_job_id="j-1", total_steps=100)
    assert parse_metric_line(dump_metric_line(beat)) == beat


def _arm(clips: int, authentic: int, low: float, high: float) -> ArmSummary:
    return ArmSummary(model="m", clips=clips, authentic=authentic, rate=authentic / clips, wilson_low=low,
                      wilson_high=high, mean_score=50.0)


def test_arm_summary_rejects_inconsistent_counts() -> None:
    with pytest.raises(ValidationError, match="authentic or non-finite clips exceed clips"):
        ArmSummary(model="m", clips=2, authentic=3, rate=1.0, wilson_low=0.5, wilson_high=1.0, mean_score=1)
    with pytest.raises(ValidationError, match="outside its Wilson interval"):
        _arm(10, 5, 0.6, 0.9)


def test_decision_and_event_detail_round_trip() -> None:
    provenance = Provenance(checkpoint_uri="s3://b/k", checkpoint_sha256=SHA, code_version="git-1",
                            dataset_manifest_sha256=SHA)
    decision = Decision(run_id="r", point="decision", epoch=5, outcome="NO-GO",
                        criteria=[Criterion(name="authenticity", value=0.2, threshold=0.35, comparison=">=",
                                            passed=False)],
                        treatment=_arm(10, 2, 0.05, 0.5), control=_arm(10, 1, 0.02, 0.4),
                        comparison=Comparison(pairs=10, both=1, treatment_only=1, control_only=0, difference=0.1,
                                              difference_low=-0.1, p_value=0.5), provenance=provenance, spend_usd=3.0,
                        decided_at=NOW)
    detail = DecisionDetail(decision=decision, report_uri="s3://b/runs/r/eval/decision/report.json")
    assert DecisionDetail.model_validate_json(detail.model_dump_json()) == detail
    assert [c.name for c in decision.failed] == ["authenticity"]
    report = EvalReport(run_id="r", point="decision", epoch=5, step=100, score_threshold=80, clip_seconds=10,
                        guidance_scale=3, treatment=decision.treatment, control=decision.control,
                        comparison=decision.comparison, val_loss=3.0, baseline_val_loss=3.4, provenance=provenance,
                        clips=[],
                        created_at=NOW)
    assert EvalReport.model_validate_json(report.model_dump_json()) == report


def test_alert_message_says_what_when_evidence_and_action() -> None:
    alert = AlertDetail(run_id="r", severity=Severity.CRITICAL, code="nan-loss", what="Loss became NaN", step=120,
                        epoch=2, evidence={"loss": "NaN"}, action="Inspect the last good checkpoint.", time=NOW)
    message = alert.message()
    for part in ("Loss became NaN", "epoch 2, step 120", "loss: NaN", "What to do: Inspect", "#nan-loss"):
        assert part in message
    assert alert.subject().startswith("[AURA-X CRITICAL] r:")
