"""Deploying template.yaml into the emulation: the same resources, wired as CloudFormation wires them."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from aurax.local.moto_patches import patched_moto
from aurax.local.stack import StackError, deploy
from aurax.ops.stack_outputs import REQUIRED_OUTPUTS

ROOT = Path(__file__).resolve().parents[2]


def test_the_template_deploys_with_everything_the_pipeline_uses(aws: None, tmp_path: Path):
    with patched_moto(lambda_log_dir=tmp_path):
        stack = deploy(ROOT / "template.yaml")
        assert set(REQUIRED_OUTPUTS) <= set(stack.outputs)

        # The state machine runs in the executing backend, every substitution filled from the stack.
        definition = boto3.client("stepfunctions").describe_state_machine(
            stateMachineArn=stack.state_machine_arn)["definition"]
        assert "${" not in definition
        states = json.loads(definition)["States"]
        assert states["TrainToDecision"]["Parameters"]["JobDefinition"] == stack.resources["TrainJobDefinition"]
        plan_arn = states["PlanRun"]["Resource"]
        assert plan_arn.endswith(f":function:{stack.functions['PlanRunFunction']}")

        # The data bucket: versioned, and its metrics chunks notify the monitor function.
        s3 = boto3.client("s3")
        assert s3.get_bucket_versioning(Bucket=stack.bucket)["Status"] == "Enabled"
        notification = s3.get_bucket_notification_configuration(Bucket=stack.bucket)
        (target,) = notification["LambdaFunctionConfigurations"]
        assert target["LambdaFunctionArn"].endswith(stack.functions["MetricsMonitorFunction"])
        assert stack.schedules == {"CostLedgerFunction": "rate(15 minutes)", "IdleWatchFunction": "rate(10 minutes)"}

        # The deployed handler is the real one: a config that does not exist is a BadConfigError for the Catch.
        response = boto3.client("lambda").invoke(FunctionName=plan_arn, Payload=json.dumps(
            {"run_id": "stack-test", "config_uri": f"s3://{stack.bucket}/runs/stack-test/config.json"}))
        assert response.get("FunctionError") == "Unhandled"
        assert json.loads(response["Payload"].read())["errorType"] == "BadConfigError"


def test_a_function_without_code_is_a_clear_error(aws: None, tmp_path: Path):
    with pytest.raises(StackError, match="PlanRunFunction: CodeUri .* is not a folder"):
        deploy(ROOT / "template.yaml", code_overrides={"PlanRunFunction": tmp_path / "missing"})
