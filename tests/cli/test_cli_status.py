"""`aurax status`: the run's state and ledger as the control plane writes them, its execution, an ETA."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest

from aurax.local.stack import LocalStack
from aurax_contracts import AttemptCost, CostLedger, JobExit
from aurax_control.store import LEDGER, RunStore
from tests.cli.conftest import STACK

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def seed_run(deployed: LocalStack, run_id: str, *, step: int = 50, total: int = 200, ledger: bool = True) -> None:
    """Write the run as plan_run, the metrics monitor and the cost ledger do."""
    store = RunStore(deployed.outputs["RunTableName"])
    store.update_state(run_id, {"status": "training", "step": step, "epoch": 1, "total_steps": total,
                                "last_loss": 4.25, "last_val_loss": 4.5, "training_started_at": T0,
                                "last_heartbeat_at": T0 + timedelta(hours=1)})
    store.update_state(run_id, {"updated_at": T0 + timedelta(hours=1)},
                       add_fields={"interruptions": 1, "alerts_sent": 2})
    if ledger:
        attempt = AttemptCost(job_id="j1", attempt=1, instance_type="g4dn.xlarge", availability_zone="us-east-1a",
                              started_at=T0, stopped_at=None, usd_per_hour=0.2, price_source="spot-history",
                              cost_usd=12.0)
        store.put_doc(run_id, LEDGER, CostLedger(run_id=run_id, attempts=[attempt], compute_usd=12.0, spend_usd=12.0,
                                                 projected_usd=48.0, budget_usd=600.0,
                                                 updated_at=T0 + timedelta(hours=1)))


def start(deployed: LocalStack, run_id: str, name: str) -> str:
    return boto3.client("stepfunctions").start_execution(
        stateMachineArn=deployed.state_machine_arn, name=name,
        input=f'{{"run_id": "{run_id}", "config_uri": "s3://{deployed.bucket}/runs/{run_id}/config.json"}}')["executionArn"]


def test_status_reports_progress_loss_spend_and_eta(deployed: LocalStack, aurax):
    seed_run(deployed, "status-1")
    arn = start(deployed, "status-1", "status-1-a")
    result = aurax("status", "status-1", "--stack", STACK, "--json")
    assert result.code == 0, result.err
    view = result.json()
    assert view["state"]["status"] == "training" and view["state"]["step"] == 50
    assert view["state"]["last_loss"] == 4.25 and view["state"]["interruptions"] == 1
    assert view["ledger"]["spend_usd"] == 12.0 and view["ledger"]["projected_usd"] == 48.0
    assert view["execution"]["arn"] == arn and view["execution"]["status"] == "RUNNING"
    # 50 steps took 1 h, so the remaining 150 take 3 h.
    assert view["eta_seconds"] == pytest.approx(3 * 3600)

    text = aurax("status", "status-1", "--stack", STACK).out
    assert "epoch 1, step 50/200" in text and "train 4.25, validation 4.5" in text
    assert "$12.00 (2% of $600.00), projected $48.00" in text and "1 interruption(s), 2 alert(s)" in text
    assert "ETA         0d 3h 0m" in text


def test_status_without_a_run_follows_the_latest_execution(deployed: LocalStack, aurax):
    seed_run(deployed, "status-2", ledger=False)
    start(deployed, "status-2", "status-2-a")
    result = aurax("status", "--stack", STACK, "--json")
    assert result.code == 0, result.err
    assert result.json()["run_id"] == "status-2" and result.json()["ledger"] is None
    assert "no ledger yet" in aurax("status", "--stack", STACK).out


def test_watch_ends_when_the_execution_ends(deployed: LocalStack, aurax):
    seed_run(deployed, "status-3")
    arn = start(deployed, "status-3", "status-3-a")
    boto3.client("stepfunctions").stop_execution(executionArn=arn, error="Test", cause="stopped by the test")
    result = aurax("status", "status-3", "--stack", STACK, "--watch", "--interval", "0")
    assert result.code == 0 and "execution   ABORTED" in result.out


def test_an_unknown_run_lists_the_known_ones(deployed: LocalStack, aurax):
    seed_run(deployed, "status-4", ledger=False)
    result = aurax("status", "no-such-run", "--stack", STACK)
    assert result.code == JobExit.BAD_INPUT
    assert "no run 'no-such-run'" in result.err and "status-4" in result.err


def test_status_of_a_missing_stack(aurax, deployed: LocalStack):
    result = aurax("status", "--stack", "nope")
    assert result.code == JobExit.BAD_INPUT and "does not exist" in result.err


def test_the_stack_can_come_from_the_environment(deployed: LocalStack, aurax, monkeypatch):
    seed_run(deployed, "status-5", ledger=False)
    monkeypatch.setenv("AURAX_STACK", STACK)
    result = aurax("status", "status-5", "--json")
    assert result.code == 0, result.err
    assert result.json()["run_id"] == "status-5"
