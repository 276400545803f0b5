"""Spot prices for the cost ledger: Linux rows only, of the attempt's instance type and zone, from a history
page that interleaves other products (a real page does); and the on-demand fallback recorded, and alerted once."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto.core.responses import ActionResult
from moto.ec2.responses.spot_instances import SpotInstances

from aurax_contracts import CostLedger
from aurax_control import cost
from aurax_control.store import LEDGER, RunStore

from .conftest import BUCKET, RUN_TABLE, FakeContext, load_handler, put_config, s3_event, scheduled_event
from .records import heartbeat

CTX = FakeContext()
RUN = "run-a"
TYPE, ZONE = "g4dn.xlarge", "us-east-1a"
NOW = datetime.now(UTC).replace(microsecond=0)
START = NOW - timedelta(hours=2)


def row(product: str, price: float, at: datetime, instance_type: str = TYPE, zone: str = ZONE) -> dict[str, Any]:
    return {"ProductDescription": product, "SpotPrice": f"{price:.6f}", "Timestamp": at, "InstanceType": instance_type,
            "AvailabilityZone": zone}


#: One page as DescribeSpotPriceHistory returns it when asked for an instance type without a product filter
#: (or by an endpoint that ignores it): Windows, SUSE and Red Hat rows interleave the Linux ones, with another
#: zone and type. Linux in the zone: $0.20 for the first hour, $0.24 for the second.
MIXED_PAGE = [
    row("Windows", 0.71, START - timedelta(minutes=20)),
    row("Linux/UNIX", 0.20, START - timedelta(minutes=10)),
    row("SUSE Linux", 0.33, START - timedelta(minutes=5)),
    row("Linux/UNIX", 0.31, START, zone="us-east-1b"),
    row("Windows", 0.74, START + timedelta(minutes=30)),
    row("Red Hat Enterprise Linux", 0.35, START + timedelta(minutes=40)),
    row("Linux/UNIX", 0.24, START + timedelta(hours=1)),
    row("Linux/UNIX", 0.41, START + timedelta(minutes=70), instance_type="g4dn.2xlarge"),
    row("SUSE Linux", 0.37, START + timedelta(minutes=90)),
]


def test_only_linux_rows_of_the_type_and_zone_are_priced() -> None:
    points = cost.linux_spot_points(MIXED_PAGE, TYPE, ZONE)
    assert [p.usd_per_hour for p in points] == [0.20, 0.24]
    assert cost.time_weighted_cost(points, START, NOW) == pytest.approx(0.44)


def test_one_linux_series_is_used_never_a_mix_of_both_products() -> None:
    legacy = [row("Linux/UNIX (Amazon VPC)", 0.5, START), row("Linux/UNIX", 0.2, START)]
    assert [p.usd_per_hour for p in cost.linux_spot_points(legacy, TYPE, ZONE)] == [0.2]
    only_legacy = [row("Linux/UNIX (Amazon VPC)", 0.5, START), row("Windows", 0.9, START)]
    assert [p.usd_per_hour for p in cost.linux_spot_points(only_legacy, TYPE, ZONE)] == [0.5]


@pytest.fixture
def spot_history(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[list[dict[str, Any]]], list[list[str]]]]:
    """Serve the given rows as moto's DescribeSpotPriceHistory page; returns the ProductDescriptions asked for."""
    asked: list[list[str]] = []

    def serve(rows: list[dict[str, Any]]) -> list[list[str]]:
        def describe(self: SpotInstances) -> ActionResult:
            asked.append(list(self._get_param("ProductDescriptions", [])))
            return ActionResult({"SpotPriceHistory": [{**r, "Timestamp": r["Timestamp"].isoformat()} for r in rows]})

        monkeypatch.setattr(SpotInstances, "describe_spot_price_history", describe)
        return asked

    yield serve


def plan(**sections: Any) -> None:
    uri = put_config(RUN, **sections)
    load_handler("plan_run").lambda_handler({"run_id": RUN, "config_uri": uri,
                                             "execution_arn": f"arn:exec:{uuid.uuid4().hex}"}, CTX)


def training_attempt(jobs: Any) -> None:
    """A finished two-hour training attempt on g4dn.xlarge in us-east-1a (its heartbeat says where)."""
    job_id = jobs(f"{RUN}-train-to-decision", "FAILED", started=START, stopped=NOW)
    key = f"runs/{RUN}/metrics/attempt-0001/chunk-00000001.jsonl"
    boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=heartbeat(10, NOW, job_id=job_id))
    load_handler("metrics_monitor").lambda_handler(s3_event(key), CTX)


def ledger() -> CostLedger:
    doc, _ = RunStore(RUN_TABLE).get_doc(RUN, LEDGER, CostLedger)
    assert doc is not None
    return doc


def test_the_ledger_prices_a_mixed_history_page_at_the_linux_price(account, jobs, spot_history) -> None:
    asked = spot_history(MIXED_PAGE)
    plan()
    training_attempt(jobs)
    load_handler("cost_ledger").lambda_handler(scheduled_event(), CTX)
    (attempt,) = ledger().attempts
    assert attempt.cost_usd == pytest.approx(0.44, abs=1e-3)  # priced from every row: $0.71, 61% too high
    assert attempt.price_source == "spot-history" and attempt.price_note is None
    assert asked and all(set(a) == {"Linux/UNIX", "Linux/UNIX (Amazon VPC)"} for a in asked)
    assert account.sns_messages() == []


def test_the_fallback_price_is_recorded_and_alerted_once(account, jobs, spot_history) -> None:
    spot_history([row("Windows", 0.71, START), row("SUSE Linux", 0.33, START)])  # no Linux price at all
    plan()
    training_attempt(jobs)
    jobs(f"{RUN}-prepare", "SUCCEEDED", started=START - timedelta(hours=1), stopped=START)  # no heartbeat
    handler = load_handler("cost_ledger")
    for _ in range(3):  # the schedule runs again and again: each alert once
        handler.lambda_handler(scheduled_event(), CTX)
    attempts = {a.job_name: a for a in ledger().attempts}
    train, prepare = attempts[f"{RUN}-train-to-decision"], attempts[f"{RUN}-prepare"]
    assert (train.price_source, train.usd_per_hour) == ("fallback", 0.526)
    assert train.price_note == f"no Linux/UNIX spot price history for {TYPE} in {ZONE}"
    assert prepare.price_source == "fallback" and "no heartbeat" in (prepare.price_note or "")
    assert ledger().fallback_alerts == [cost.FALLBACK_NO_HISTORY]
    # one alert, for the attempt whose host was known; the preparation (no heartbeats, by design) is recorded
    messages = account.sns_messages()
    assert [m["Subject"] for m in messages] == [
        f"[AURA-X WARNING] {RUN}: No spot price found: 1 attempt(s) priced at the on-demand fallback $0.526/h"]
    assert f"{RUN}-train-to-decision attempt 1" in messages[0]["Message"]
