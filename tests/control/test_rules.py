"""Cost, budget, idle, decision and report rules (no AWS)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from aurax_contracts import AbortReason, CostLedger, RunConfig, RunState
from aurax_contracts.config import BudgetConfig
from aurax_control import cost, idle, report
from aurax_control.decision import decide

from .evals import eval_report
from .records import T0

H = timedelta(hours=1)


def test_time_weighted_cost_follows_price_changes() -> None:
    points = [cost.PricePoint(T0 - H, 0.20), cost.PricePoint(T0 + H, 0.40)]
    # 1 h at 0.20 (the price in effect at start), then 2 h at 0.40
    assert cost.time_weighted_cost(points, T0, T0 + 3 * H) == pytest.approx(0.20 + 0.80)
    # history that starts after the attempt: the first known price covers the gap
    assert cost.time_weighted_cost([cost.PricePoint(T0 + H, 0.30)], T0, T0 + 2 * H) == pytest.approx(0.60)
    assert cost.time_weighted_cost(points, T0, T0) == 0.0


def test_attempt_cost_uses_fallback_without_history_and_costs_running_attempts_to_now() -> None:
    span = cost.AttemptSpan("job-1", 1, T0, None, None, None)
    priced = cost.cost_attempt(span, [], 0.526, T0 + 2 * H)
    assert priced.price_source == "fallback" and priced.cost_usd == pytest.approx(1.052)
    spot = cost.cost_attempt(cost.AttemptSpan("job-1", 2, T0, T0 + H, "g4dn.xlarge", "us-east-1a"),
                             [cost.PricePoint(T0 - H, 0.16)], 0.526, T0 + 5 * H)
    assert spot.price_source == "spot-history" and spot.cost_usd == pytest.approx(0.16)
    assert spot.usd_per_hour == pytest.approx(0.16)


def test_storage_estimate_is_documented_upper_bound() -> None:
    budget = BudgetConfig(storage_usd_per_gb_month=0.023, requests_usd_per_1000=0.005)
    usd = cost.storage_estimate(10**10, 1000, T0, T0 + timedelta(days=cost.DAYS_PER_MONTH), budget)
    assert usd == pytest.approx(10 * 0.023 + 1000 * cost.REQUESTS_PER_OBJECT / 1000 * 0.005)


def test_projection_from_measured_cost_per_step() -> None:
    assert cost.project(10.0, 8.0, 100, 1000) == (pytest.approx(0.08), pytest.approx(10.0 + 900 * 0.08))
    assert cost.project(10.0, 8.0, 0, 1000) == (None, None)
    assert cost.project(10.0, 8.0, 100, None) == (None, None)


def ledger(spend: float, projected: float | None = None, alerted: list[float] | None = None) -> CostLedger:
    return CostLedger(run_id="run-a", spend_usd=spend, projected_usd=projected, budget_usd=100.0,
                      alerted_fractions=alerted or [], updated_at=T0)


def test_budget_fractions_alert_once_each() -> None:
    budget = BudgetConfig(budget_usd=100, alert_fractions=[0.5, 0.8])
    assert cost.judge_budget(ledger(49), budget).crossed_fractions == []
    assert cost.judge_budget(ledger(55), budget).crossed_fractions == [0.5]
    assert cost.judge_budget(ledger(85, alerted=[0.5]), budget).crossed_fractions == [0.8]
    assert cost.judge_budget(ledger(85, alerted=[0.5, 0.8]), budget).crossed_fractions == []


def test_budget_stop_at_budget_or_projection_beyond_margin() -> None:
    budget = BudgetConfig(budget_usd=100, projection_margin=0.10)
    assert cost.judge_budget(ledger(99, projected=109), budget).stop_detail is None
    assert "projected" in cost.judge_budget(ledger(20, projected=111), budget).stop_detail
    assert "reached the budget" in cost.judge_budget(ledger(100), budget).stop_detail


def ms(t) -> int:
    return int(t.timestamp() * 1000)


def test_attempt_spans_include_interrupted_and_running_attempts_with_their_hosts() -> None:
    job = {"jobId": "j", "status": "RUNNING", "startedAt": ms(T0 + 3 * H),
           "attempts": [{"startedAt": ms(T0), "stoppedAt": ms(T0 + H)},
                        {"startedAt": ms(T0 + H), "stoppedAt": ms(T0 + 2 * H)}]}
    hosts = {"j#1": {"instance_type": "g4dn.xlarge", "availability_zone": "us-east-1a"},
             "j#3": {"instance_type": "g4dn.2xlarge", "availability_zone": "us-east-1b"}}
    spans = cost.attempt_spans(job, hosts)
    assert [(s.attempt, s.stopped_at is None) for s in spans] == [(1, False), (2, False), (3, True)]
    assert spans[0].instance_type == "g4dn.xlarge"
    assert spans[1].instance_type == "g4dn.2xlarge"  # no heartbeat for attempt 2: the job's latest host
    assert spans[2].availability_zone == "us-east-1b"


def test_job_stage_from_the_state_machine_job_names() -> None:
    from aurax_control.jobs import job_stage

    assert job_stage("run-a-train-to-decision", "run-a") == "train"
    assert job_stage("run-a-prepare", "run-a") == "prepare"
    assert job_stage("run-a-evaluate-final", "run-a") == "evaluate"
    assert job_stage("run-b-train", "run-a") is None and job_stage(None, "run-a") is None


def test_idle_rules() -> None:
    assert not idle.is_idle(T0, None, T0 + timedelta(minutes=119), 120)
    assert idle.is_idle(T0, None, T0 + timedelta(minutes=120), 120)
    assert not idle.is_idle(T0, T0 + H, T0 + 2.5 * H, 120)  # heartbeat an hour in
    # a heartbeat from the previous attempt does not shorten a fresh attempt's grace
    assert not idle.is_idle(T0 + 5 * H, T0, T0 + 6 * H, 120)
    job = {"createdAt": ms(T0), "attempts": [{"stoppedAt": ms(T0 + 2 * H)}]}
    assert idle.runnable_since(job) == T0 + 2 * H
    assert idle.is_stuck(T0, T0 + timedelta(minutes=360), 360)
    assert not idle.is_stuck(T0, T0 + timedelta(minutes=359), 360)


CONFIG = RunConfig(run_id="run-a", budget={"budget_usd": 600})


def test_abort_report_in_markdown_and_html() -> None:
    state = RunState(run_id="run-a", status="training", step=120, epoch=2, last_loss=float("nan"),
                     bad_lines=3, updated_at=T0)
    spend = CostLedger(run_id="run-a", budget_usd=600, spend_usd=42.5, compute_usd=40, storage_usd=2.5,
                       updated_at=T0)
    decision = decide(eval_report(authentic=20, val_loss=4.0), 42.5, CONFIG, T0)
    sections = report.build_sections("run-a", AbortReason.NO_GO, "criteria failed <b>", state, spend,
                                     eval_report(authentic=20), decision, T0)
    md, page = report.to_markdown("run-a", sections), report.to_html("run-a", sections)
    for text in (md, page):
        assert "no-go" in text and "42.50" in text and "20.0%" in text and "What the data suggests next" in text
    assert "## Spend" in md and "| Step | 120 |" in md
    assert "&lt;b&gt;" in page and "<b>" not in page.replace("<body>", "")
    assert "more epochs" in md and "proxy tags" not in md  # p = 0.001: the gain is significant
    assert "3 metric lines" in md


@pytest.mark.parametrize("reason", list(AbortReason))
def test_every_abort_reason_has_advice(reason: AbortReason) -> None:
    assert report.suggestions(reason, None, None, None, None)


def test_abort_report_names_the_prompt_set_the_decision_counted() -> None:
    # The report's headline rates are over every clip; the decision counted the Amapiano set's 300 of them.
    evaluation = eval_report(authentic=20)
    decision = decide(evaluation, 42.5, CONFIG, T0)
    sections = report.build_sections("run-a", AbortReason.NO_GO, "NO-GO", None, None, evaluation, decision, T0)
    md = report.to_markdown("run-a", sections)
    assert "counting prompt set 'amapiano' (300 clips per arm)" in md
    assert "| Treatment authenticity (all clips) |" in md
    # A re-decision of a report without that set advises re-deciding, not retraining.
    missing = decide(evaluation.model_copy(update={"prompt_sets": []}), 42.5, CONFIG, T0)
    md = report.to_markdown("run-a", report.build_sections("run-a", AbortReason.NO_GO, "NO-GO", None, None,
                                                           evaluation, missing, T0))
    assert "counting prompt set 'amapiano' (none in the report)" in md
    advice = report.suggestions(AbortReason.NO_GO, None, None, evaluation, missing)
    assert any("decision.prompt_set: all" in s for s in advice)
    assert not any("proxy tags" in s or "more epochs" in s for s in advice)
