"""Start a run: validate its config, check its dataset plan, upload it, start the state machine."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aurax_contracts import ExecutionInput, RunConfig, RunLayout

from ..dataset.plan import DatasetPlan, plan_run
from ..errors import InputError
from .stack_outputs import StackOutputs


class RunAlreadyRunning(InputError):
    """The run has an execution in progress: starting another would train the same run twice."""


@dataclass(frozen=True)
class StartedRun:
    run_id: str
    config_uri: str
    execution_arn: str
    console_url: str

    def to_json(self) -> dict[str, str]:
        return asdict(self)


def execution_name(run_id: str, now: datetime) -> str:
    """Unique per start (a resumed run starts a new execution), readable, at most 80 characters."""
    return f"{run_id}-{now.strftime('%Y%m%dT%H%M%SZ')}"[:80]


def console_url(region: str, execution_arn: str) -> str:
    return f"https://{region}.console.aws.amazon.com/states/home?region={region}#/v2/executions/details/{execution_arn}"


def running_execution(sfn: Any, state_machine_arn: str, run_id: str) -> str | None:
    """ARN of an execution of this run that is still running, if any (names start with the run id)."""
    paginator = sfn.get_paginator("list_executions")
    for page in paginator.paginate(stateMachineArn=state_machine_arn, statusFilter="RUNNING"):
        for execution in page["executions"]:
            if execution["name"].startswith(f"{run_id}-"):
                return str(execution["executionArn"])
    return None


def check_dataset_plan(config: RunConfig, annotations: str | None = None,
                       cache_dir: Path | None = None) -> DatasetPlan:
    """The dataset plan of `config` on the real annotations (`annotations`, default `dataset.source_uri`),
    checked before anything is uploaded or started: the same check preflight and the prepare job make.

    Raises `dataset.plan.TargetUnreachable` (exit 64) naming the setting to change and a value that works,
    `InputError` (65) when the annotations cannot be read (with the offline route: `--annotations`).
    """
    plan = plan_run(config.dataset, annotations, cache_dir)
    plan.require_met()
    return plan


def start_run(stack: StackOutputs, config: RunConfig, *, s3: Any, sfn: Any,
              now: datetime | None = None) -> StartedRun:
    """Upload the (already validated) config to `runs/<id>/config.json` and start an execution."""
    running = running_execution(sfn, stack.state_machine_arn, config.run_id)
    if running:
        raise RunAlreadyRunning(f"run {config.run_id!r} already has a running execution {running}; watch it with "
                                f"`aurax status {config.run_id}`, or stop it first (docs/operations.md#abandon)")
    layout = RunLayout(stack.root, config.run_id)
    s3.put_object(Bucket=stack.data_bucket, Key=layout.config_uri.removeprefix(f"s3://{stack.data_bucket}/"),
                  Body=json.dumps(config.model_dump(mode="json"), indent=2).encode(),
                  ContentType="application/json")
    execution_input = ExecutionInput(run_id=config.run_id, config_uri=layout.config_uri)
    started = sfn.start_execution(stateMachineArn=stack.state_machine_arn,
                                  name=execution_name(config.run_id, now or datetime.now(UTC)),
                                  input=execution_input.model_dump_json())
    arn = started["executionArn"]
    return StartedRun(config.run_id, layout.config_uri, arn, console_url(stack.region, arn))
