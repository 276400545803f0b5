"""Updating one run's cost ledger from Batch, EC2 spot price history and S3, and enforcing its budget."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aurax_contracts import AbortReason, AlertDetail, AttemptCost, CostLedger, RunConfig, RunState, Severity

from . import cost, objects
from .aws import client
from .guard import stop_run
from .jobs import ACTIVE_JOB_STATUSES, TRAINING_STAGE, find_jobs, job_stage
from .monitor import MonitorState
from .runtime import Runtime
from .store import LEDGER, MONITOR


def spot_prices(span: cost.AttemptSpan, now: datetime) -> list[cost.PricePoint]:
    """The attempt's Linux spot price points over its running time (empty when its host is unknown)."""
    if not span.instance_type or not span.availability_zone:
        return []
    start, end = cost.price_window(span, now)
    rows: list[dict[str, Any]] = []
    paginator = client("ec2").get_paginator("describe_spot_price_history")
    for page in paginator.paginate(InstanceTypes=[span.instance_type], AvailabilityZone=span.availability_zone,
                                   ProductDescriptions=list(cost.LINUX_PRODUCTS), StartTime=start, EndTime=end):
        rows.extend(page.get("SpotPriceHistory", []))
    # Filter the rows again: a page may interleave other products, and some endpoints (moto) ignore filters.
    return cost.linux_spot_points(rows, span.instance_type, span.availability_zone)


def build_ledger(rt: Runtime, state: RunState, config: RunConfig, previous: CostLedger | None,
                 jobs: list[dict[str, Any]], hosts: dict[str, Any], now: datetime) -> CostLedger:
    """The ledger from the run's Batch jobs (`describe_jobs` descriptions) and the previous ledger, whose
    finished attempts are kept even after Batch has forgotten their jobs."""
    kept = previous.attempts if previous else []
    attempts: dict[tuple[str, int], AttemptCost] = {(a.job_id, a.attempt): a for a in kept}
    for job in jobs:
        for span in cost.attempt_spans(job, hosts):
            done = attempts.get((span.job_id, span.attempt))
            if done is not None and done.stopped_at is not None:
                continue  # a finished attempt's cost is final: no need to ask for its prices again
            attempts[(span.job_id, span.attempt)] = cost.cost_attempt(
                span, spot_prices(span, now), config.compute.on_demand_fallback_usd_per_hour, now)
    compute = round(sum(a.cost_usd for a in attempts.values()), 6)
    usage = objects.usage(rt.layout(state.run_id).run_uri)
    started = min([a.started_at for a in attempts.values()] + [t for t in (state.training_started_at, now) if t])
    storage = cost.storage_estimate(usage.bytes, usage.objects, started, now, config.budget)
    spend = round(compute + storage, 6)
    training = sum(a.cost_usd for a in attempts.values()
                   if job_stage(a.job_name, state.run_id) == TRAINING_STAGE)
    per_step, projected = cost.project(spend, training, state.step, state.total_steps)
    return CostLedger(run_id=state.run_id, attempts=sorted(attempts.values(), key=lambda a: (a.started_at, a.job_id)),
                      compute_usd=compute, storage_usd=storage, spend_usd=spend, projected_usd=projected,
                      usd_per_step=per_step, budget_usd=config.budget.budget_usd,
                      alerted_fractions=list(previous.alerted_fractions) if previous else [],
                      fallback_alerts=list(previous.fallback_alerts) if previous else [], updated_at=now)


def update_run(rt: Runtime, state: RunState, config: RunConfig, now: datetime) -> CostLedger:
    """Recompute the ledger, alert on newly crossed budget fractions and (once) on spot prices not found, stop
    the run when over budget."""
    previous, version = rt.store.get_doc(state.run_id, LEDGER, CostLedger)
    monitor, _ = rt.store.get_doc(state.run_id, MONITOR, MonitorState)
    hosts = {k: v.model_dump() for k, v in (monitor.hosts if monitor else {}).items()}
    known = [state.current_job_id or "", *(k.split("#")[0] for k in hosts),
             *(a.job_id for a in (previous.attempts if previous else []) if a.stopped_at is None)]
    jobs = find_jobs(state.run_id, rt.settings.job_queues, known)
    ledger = build_ledger(rt, state, config, previous, jobs, hosts, now)
    verdict = cost.judge_budget(ledger, config.budget)
    ledger.alerted_fractions = [*ledger.alerted_fractions, *verdict.crossed_fractions]
    fallback = cost.fallback_alert_due(ledger)
    if fallback:
        ledger.fallback_alerts = [*ledger.fallback_alerts, cost.FALLBACK_NO_HISTORY]
    # Store first (compare-and-swap): of two concurrent updates only one gets to send each alert.
    rt.store.put_doc(state.run_id, LEDGER, ledger, expected_version=version,
                     extra={"spend_usd": ledger.spend_usd, "projected_usd": ledger.projected_usd})
    for fraction in verdict.crossed_fractions:
        rt.notifier.alert(AlertDetail(
            run_id=state.run_id, severity=Severity.WARNING, code=f"budget-{round(fraction * 100)}",
            what=f"Spend reached {fraction:.0%} of the budget (${ledger.spend_usd:.2f} of ${ledger.budget_usd:.2f})",
            step=state.step, epoch=state.epoch, time=now,
            evidence={"spend_usd": ledger.spend_usd, "budget_usd": ledger.budget_usd,
                      "projected_usd": ledger.projected_usd, "usd_per_step": ledger.usd_per_step},
            action="Check the projection: if it exceeds the budget, cut training.total_epochs or stop the run "
                   "(`aurax stop`) before the guard does."))
    if fallback:
        rt.notifier.alert(_fallback_alert(state, ledger, config, fallback, now))
    if verdict.crossed_fractions or fallback:
        rt.store.update_state(state.run_id,
                              add_fields={"alerts_sent": len(verdict.crossed_fractions) + bool(fallback)})
    if verdict.stop_detail and state.abort_reason is None:
        active = [j["jobId"] for j in jobs if j.get("status") in ACTIVE_JOB_STATUSES]
        stop_run(rt.store, rt.notifier, rt.settings.root, state.run_id, AbortReason.OVER_BUDGET,
                 verdict.stop_detail, active, AlertDetail(
                     run_id=state.run_id, severity=Severity.CRITICAL, code="over-budget",
                     what=f"Run stopped: {verdict.stop_detail}", step=state.step, epoch=state.epoch, time=now,
                     evidence={"spend_usd": ledger.spend_usd, "budget_usd": ledger.budget_usd,
                               "projected_usd": ledger.projected_usd, "usd_per_step": ledger.usd_per_step,
                               "margin": config.budget.projection_margin},
                     action="The job checkpoints and stops; the abort report lists the spend. Raise "
                            "budget.budget_usd or shorten the run, then start a new execution to resume."))
    return ledger



def _fallback_alert(state: RunState, ledger: CostLedger, config: RunConfig, priced: list[AttemptCost],
                    now: datetime) -> AlertDetail:
    """Sent once per run: attempts on a known instance found no Linux spot price and were priced on demand."""
    rate = config.compute.on_demand_fallback_usd_per_hour
    return AlertDetail(
        run_id=state.run_id, severity=Severity.WARNING, code=cost.FALLBACK_NO_HISTORY, step=state.step,
        epoch=state.epoch, time=now,
        what=f"No spot price found: {len(priced)} attempt(s) priced at the on-demand fallback ${rate:g}/h",
        evidence={"fallback_usd_per_hour": rate, "attempts": len(priced), "why": priced[0].price_note,
                  "first": ", ".join(f"{a.job_name or a.job_id} attempt {a.attempt}" for a in priced[:3]),
                  "fallback_priced_usd": round(sum(a.cost_usd for a in priced), 4), "spend_usd": ledger.spend_usd},
        action="The ledger overstates spend for these attempts: check that the cost-ledger function may call "
               "ec2:DescribeSpotPriceHistory and that the instance type is offered as spot in that zone; set "
               "compute.on_demand_fallback_usd_per_hour to the type's on-demand price meanwhile.")
