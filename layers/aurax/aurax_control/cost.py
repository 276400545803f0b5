"""Cost ledger rules: what each Batch attempt cost, the storage estimate, the projection and the budget guard.

Spend = sum over every attempt of every job of the run (interrupted ones included) of the time-weighted spot
price of its instance type in its zone over its running time, + the storage/request estimate below.

Storage/request estimate (documented, deliberately an upper bound): the bytes under the run's prefix today
are charged as if stored since the run began, at `storage_usd_per_gb_month` (30.44-day months, 1 GB = 1e9
bytes), plus `REQUESTS_PER_OBJECT` requests per object at `requests_usd_per_1000`. Data transfer inside the
region is free and is not counted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aurax_contracts import AttemptCost, CostLedger
from aurax_contracts.config import BudgetConfig

from .jobs import batch_time

#: One PUT when written, one GET when read back (checkpoints on resume, metrics by the monitor).
REQUESTS_PER_OBJECT = 2
DAYS_PER_MONTH = 30.4375
BYTES_PER_GB = 1e9


#: The spot products Batch's Amazon Linux ECS AMIs are billed as. Every account today sees VPC instances' prices
#: as "Linux/UNIX"; accounts that once had EC2-Classic saw them as "Linux/UNIX (Amazon VPC)" (EC2 API reference,
#: DescribeSpotPriceHistory, `product-description`; Karpenter queries both for the same reason).
LINUX_PRODUCTS = ("Linux/UNIX", "Linux/UNIX (Amazon VPC)")


@dataclass(frozen=True)
class PricePoint:
    time: datetime
    usd_per_hour: float


def linux_spot_points(rows: Iterable[Mapping[str, Any]], instance_type: str, zone: str) -> list[PricePoint]:
    """The Linux spot price points of one instance type in one zone, from `DescribeSpotPriceHistory` rows.

    A history page may interleave other products (Windows, SUSE, Red Hat), types and zones: only matching rows
    count. Where both Linux products appear, one series is used (the first of `LINUX_PRODUCTS` with rows),
    never a mix of the two.
    """
    series: dict[str, list[PricePoint]] = {}
    for row in rows:
        product = row.get("ProductDescription")
        if product in LINUX_PRODUCTS and row.get("InstanceType") == instance_type \
                and row.get("AvailabilityZone") == zone:
            series.setdefault(product, []).append(PricePoint(row["Timestamp"], float(row["SpotPrice"])))
    return next((series[p] for p in LINUX_PRODUCTS if series.get(p)), [])


@dataclass(frozen=True)
class AttemptSpan:
    job_id: str
    attempt: int
    started_at: datetime
    stopped_at: datetime | None
    instance_type: str | None
    availability_zone: str | None
    job_name: str | None = None


def time_weighted_cost(points: Sequence[PricePoint], start: datetime, end: datetime) -> float:
    """USD for running from start to end when the price changes at each point.

    The price in effect at t is the latest point at or before t; before the first point, the first point's
    price (spot history may begin just after the instance started).
    """
    if end <= start or not points:
        return 0.0
    ordered = sorted(points, key=lambda p: p.time)
    total = 0.0
    for i, point in enumerate(ordered):
        seg_start = start if i == 0 else max(start, point.time)
        seg_end = min(end, ordered[i + 1].time) if i + 1 < len(ordered) else end
        if seg_end > seg_start:
            total += point.usd_per_hour * (seg_end - seg_start).total_seconds() / 3600.0
    return total


def cost_attempt(span: AttemptSpan, points: Sequence[PricePoint] | None, fallback_usd_per_hour: float,
                 now: datetime) -> AttemptCost:
    """Price one attempt; a running attempt is costed up to `now`. No price history -> the fallback price, with
    the reason in `price_note`."""
    end = span.stopped_at or now
    hours = max(0.0, (end - span.started_at).total_seconds() / 3600.0)
    note = None
    if points:
        source = "spot-history"
        usd = time_weighted_cost(points, span.started_at, end)
        rate = usd / hours if hours > 0 else max(points, key=lambda p: p.time).usd_per_hour
    else:
        source, rate = "fallback", fallback_usd_per_hour
        usd = rate * hours
        note = (f"no {LINUX_PRODUCTS[0]} spot price history for {span.instance_type} in {span.availability_zone}"
                if span.instance_type and span.availability_zone else
                "instance type and zone unknown (no heartbeat from this attempt)")
    return AttemptCost(job_id=span.job_id, job_name=span.job_name, attempt=span.attempt,
                       instance_type=span.instance_type, availability_zone=span.availability_zone,
                       started_at=span.started_at, stopped_at=span.stopped_at, usd_per_hour=round(rate, 6),
                       price_source=source, price_note=note, cost_usd=round(usd, 6))


#: Alert code, sent once per run, for attempts whose known instance type and zone had no Linux spot price
#: history, so the on-demand fallback was used instead (the ledger then overstates spend). Attempts whose host
#: is unknown (preflight and preparation send no heartbeats; a training attempt before its first one) are
#: priced at the fallback too, by design, and recorded in `price_note` without an alert.
FALLBACK_NO_HISTORY = "price-fallback"


def fallback_alert_due(ledger: CostLedger) -> list[AttemptCost]:
    """Attempts priced at the fallback although their host is known, when the run has not yet been alerted
    about them (`FALLBACK_NO_HISTORY`, once per run); else none."""
    if FALLBACK_NO_HISTORY in ledger.fallback_alerts:
        return []
    return [a for a in ledger.attempts if a.price_source == "fallback" and a.instance_type and a.availability_zone]


def storage_estimate(stored_bytes: int, objects: int, run_started: datetime, now: datetime,
                     budget: BudgetConfig) -> float:
    months = max(0.0, (now - run_started).total_seconds() / 86400.0 / DAYS_PER_MONTH)
    storage = stored_bytes / BYTES_PER_GB * budget.storage_usd_per_gb_month * months
    requests = objects * REQUESTS_PER_OBJECT / 1000.0 * budget.requests_usd_per_1000
    return round(storage + requests, 6)


def project(spend_usd: float, training_usd: float, step: int,
            total_steps: int | None) -> tuple[float | None, float | None]:
    """(usd per step, projected spend): spend + remaining steps x measured cost per step.

    The cost per step is the training jobs' compute (interrupted attempts and their lost work included) over
    the steps done: one-off jobs (preflight, dataset preparation) spread over the first few steps would
    project a false over-budget stop at the start of training.
    """
    if step <= 0 or total_steps is None:
        return None, None
    per_step = training_usd / step
    return per_step, spend_usd + max(0, total_steps - step) * per_step


@dataclass(frozen=True)
class BudgetVerdict:
    crossed_fractions: list[float]
    """Alert fractions newly reached (each alerts once)."""
    stop_detail: str | None
    """Why the run must stop as over budget, or None."""


def judge_budget(ledger: CostLedger, budget: BudgetConfig) -> BudgetVerdict:
    """Which alert fractions the spend newly crossed, and whether to stop the run."""
    limit = ledger.budget_usd
    crossed = [f for f in sorted(budget.alert_fractions)
               if ledger.spend_usd >= f * limit and not any(math.isclose(f, a) for a in ledger.alerted_fractions)]
    stop = None
    if ledger.spend_usd >= limit:
        stop = f"spend ${ledger.spend_usd:.2f} reached the budget ${limit:.2f}"
    elif ledger.projected_usd is not None and ledger.projected_usd > limit * (1 + budget.projection_margin):
        stop = (f"projected spend ${ledger.projected_usd:.2f} exceeds the budget ${limit:.2f} by more than "
                f"{budget.projection_margin:.0%}")
    return BudgetVerdict(crossed, stop)


def attempt_spans(job: Mapping[str, Any], hosts: Mapping[str, Any]) -> list[AttemptSpan]:
    """Every attempt of a Batch job description (`describe_jobs`), the running one included.

    `hosts` maps `<job id>#<attempt>` to where the attempt ran (from the job's heartbeats); an attempt
    without its own entry takes the job's latest known host.
    """
    job_id = job["jobId"]
    spans: list[tuple[int, datetime, datetime | None]] = []
    for number, attempt in enumerate(job.get("attempts") or [], start=1):
        started = batch_time(attempt.get("startedAt"))
        if started is not None:
            spans.append((number, started, batch_time(attempt.get("stoppedAt"))))
    # AWS lists an attempt only once it has ended; the running one shows as the job's startedAt.
    job_started = batch_time(job.get("startedAt"))
    if job.get("status") in ("STARTING", "RUNNING") and job_started is not None \
            and all(abs((s - job_started).total_seconds()) > 1 for _, s, _ in spans):
        spans.append((len(spans) + 1, job_started, None))
    known = [k for k in hosts if k.startswith(f"{job_id}#")]
    latest = hosts[max(known, key=lambda k: int(k.split("#")[1]))] if known else None
    out = []
    for number, started, stopped in spans:
        host = hosts.get(f"{job_id}#{number}") or latest
        out.append(AttemptSpan(job_id, number, started, stopped, _get(host, "instance_type"),
                               _get(host, "availability_zone"), job.get("jobName")))
    return out


def _get(host: Any, name: str) -> str | None:
    if host is None:
        return None
    return host.get(name) if isinstance(host, Mapping) else getattr(host, name, None)


def price_window(span: AttemptSpan, now: datetime) -> tuple[datetime, datetime]:
    """The spot-history query window; an hour of slack before start finds the price in effect then."""
    return span.started_at - timedelta(hours=1), span.stopped_at or now
