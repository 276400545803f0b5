"""What a run is doing now: its state and cost ledger (run-state table) and its execution."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aurax_contracts import CostLedger, RunState

from ..errors import InputError
from .stack_outputs import StackOutputs

STATE_SK, LEDGER_SK = "STATE", "LEDGER"


class UnknownRun(InputError):
    """No such run in the run-state table."""


@dataclass(frozen=True)
class ExecutionInfo:
    arn: str
    status: str
    started_at: datetime
    stopped_at: datetime | None
    error: str | None = None
    cause: str | None = None


@dataclass(frozen=True)
class RunStatusView:
    run_id: str
    state: RunState
    ledger: CostLedger | None
    execution: ExecutionInfo | None
    now: datetime

    @property
    def eta(self) -> timedelta | None:
        """Time to the last step at the training rate so far (None before a rate is known)."""
        s = self.state
        if not (s.training_started_at and s.total_steps and s.step and s.step < s.total_steps):
            return None
        elapsed = (s.updated_at - s.training_started_at).total_seconds()
        if elapsed <= 0:
            return None
        return timedelta(seconds=(s.total_steps - s.step) * elapsed / s.step)

    @property
    def finished(self) -> bool:
        return self.execution is not None and self.execution.status != "RUNNING"

    def to_json(self) -> dict[str, Any]:
        eta = self.eta
        return {
            "run_id": self.run_id,
            "state": self.state.model_dump(mode="json"),
            "ledger": self.ledger.model_dump(mode="json") if self.ledger else None,
            "execution": None if self.execution is None else {
                "arn": self.execution.arn, "status": self.execution.status,
                "started_at": self.execution.started_at.isoformat(),
                "stopped_at": self.execution.stopped_at.isoformat() if self.execution.stopped_at else None,
                "error": self.execution.error, "cause": self.execution.cause},
            "eta_seconds": eta.total_seconds() if eta else None,
        }


def _plain(attribute: dict[str, Any]) -> Any:
    (kind, value), = attribute.items()
    if kind == "NULL":
        return None
    if kind == "N":
        number = float(value)
        return int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number
    if kind == "M":
        return {k: _plain(v) for k, v in value.items()}
    if kind == "L":
        return [_plain(v) for v in value]
    return value  # S (NaN/Infinity losses are strings the contract parses), BOOL


def read_state(ddb: Any, table: str, run_id: str) -> tuple[RunState | None, CostLedger | None]:
    def item(sk: str) -> dict[str, Any] | None:
        return ddb.get_item(TableName=table, Key={"pk": {"S": f"RUN#{run_id}"}, "sk": {"S": sk}},
                            ConsistentRead=True).get("Item")

    state_item, ledger_item = item(STATE_SK), item(LEDGER_SK)
    state = None if state_item is None else RunState.model_validate(
        {k: _plain(v) for k, v in state_item.items() if k in RunState.model_fields})
    ledger = None if ledger_item is None or "doc" not in ledger_item else \
        CostLedger.model_validate_json(ledger_item["doc"]["S"])
    return state, ledger


def known_runs(ddb: Any, table: str, limit: int = 20) -> list[str]:
    runs = []
    for page in ddb.get_paginator("scan").paginate(TableName=table, FilterExpression="sk = :s",
                                                   ExpressionAttributeValues={":s": {"S": STATE_SK}},
                                                   ProjectionExpression="pk"):
        runs += [item["pk"]["S"].removeprefix("RUN#") for item in page.get("Items", [])]
    return sorted(runs)[:limit]


def latest_execution(sfn: Any, state_machine_arn: str, run_id: str | None) -> tuple[str, ExecutionInfo] | None:
    """The newest execution (of `run_id`, or of any run) with its run id. `aurax start` names executions
    `<run_id>-<time>`, so only matching names are described."""
    executions = [e for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=state_machine_arn)
                  for e in page["executions"] if run_id is None or e["name"].startswith(f"{run_id}-")]
    for execution in sorted(executions, key=lambda e: e["startDate"], reverse=True):
        described = sfn.describe_execution(executionArn=execution["executionArn"])
        execution_run = json.loads(described.get("input") or "{}").get("run_id")
        if execution_run and (run_id is None or execution_run == run_id):
            return execution_run, ExecutionInfo(described["executionArn"], described["status"],
                                                described["startDate"], described.get("stopDate"),
                                                described.get("error"), described.get("cause"))
    return None


def load_status(stack: StackOutputs, run_id: str | None, *, ddb: Any, sfn: Any,
                now: datetime | None = None) -> RunStatusView:
    found = latest_execution(sfn, stack.state_machine_arn, run_id)
    if run_id is None:
        if found is None:
            raise UnknownRun(f"stack {stack.stack_name!r} has run nothing yet; start a run with "
                             "`aurax start --stack NAME --config run.yaml`")
        run_id = found[0]
    state, ledger = read_state(ddb, stack.run_table, run_id)
    if state is None:
        runs = known_runs(ddb, stack.run_table)
        raise UnknownRun(f"no run {run_id!r} in {stack.run_table}; known runs: {', '.join(runs) or '(none)'}. "
                         "Check the run id (the `run_id` of its config)")
    return RunStatusView(run_id, state, ledger, found[1] if found else None, now or datetime.now(UTC))


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:,.2f}"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def render(view: RunStatusView) -> str:
    s, ledger = view.state, view.ledger
    lines = [f"run {view.run_id}: {s.status}" + (f" ({s.abort_reason.value}: {s.abort_detail})"
                                                  if s.abort_reason else "")]
    if view.execution:
        e = view.execution
        lines.append(f"  execution   {e.status} since {e.started_at:%Y-%m-%d %H:%M} UTC"
                     + (f", {e.error}" if e.error else ""))
    total = f"/{s.total_steps}" if s.total_steps else ""
    lines.append(f"  progress    epoch {s.epoch}, step {s.step}{total}")
    lines.append(f"  loss        train {_number(s.last_loss)}, validation {_number(s.last_val_loss)}")
    if ledger:
        share = f" ({ledger.spend_usd / ledger.budget_usd:.0%} of {_money(ledger.budget_usd)})"
        lines.append(f"  spend       {_money(ledger.spend_usd)}{share}, projected {_money(ledger.projected_usd)}")
    else:
        lines.append("  spend       no ledger yet (the cost ledger runs every 15 minutes)")
    lines.append(f"  incidents   {s.interruptions} interruption(s), {s.alerts_sent} alert(s)")
    if s.last_heartbeat_at:
        age = view.now - s.last_heartbeat_at
        lines.append(f"  heartbeat   {int(age.total_seconds() // 60)} min ago")
    eta = view.eta
    if eta is not None:
        lines.append(f"  ETA         {eta.days}d {eta.seconds // 3600}h {eta.seconds % 3600 // 60}m to the last step")
    return "\n".join(lines)
