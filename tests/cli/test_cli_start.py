"""`aurax start`: a valid config is uploaded and started; a bad one, or a missing stack, starts nothing."""

from __future__ import annotations

import json

import boto3

from aurax.local.stack import LocalStack
from aurax_contracts import JobExit, RunConfig
from tests.cli.conftest import STACK

VALID = ("run_id: cli-start-1\nmodel: {model_id: aurax/tiny-random-musicgen}\n"
         "training: {total_epochs: 4, decision_epoch: 2}\n")


def test_start_uploads_the_config_and_starts_an_execution(deployed: LocalStack, aurax, run_yaml):
    result = aurax("start", "--stack", STACK, "--config", run_yaml(VALID), "--json")
    assert result.code == 0, result.err
    started = result.json()
    config_key = "runs/cli-start-1/config.json"
    assert started["config_uri"] == f"s3://{deployed.bucket}/{config_key}"
    body = boto3.client("s3").get_object(Bucket=deployed.bucket, Key=config_key)["Body"].read()
    uploaded = RunConfig.model_validate_json(body)
    assert uploaded.run_id == "cli-start-1" and uploaded.training.decision_epoch == 2
    execution = boto3.client("stepfunctions").describe_execution(executionArn=started["execution_arn"])
    assert execution["stateMachineArn"] == deployed.state_machine_arn
    assert json.loads(execution["input"]) == {"run_id": "cli-start-1", "config_uri": started["config_uri"]}
    assert started["execution_arn"] in started["console_url"] and "region=us-east-1" in started["console_url"]


def test_start_prints_the_arn_and_console_link(deployed: LocalStack, aurax, run_yaml):
    result = aurax("start", "--stack", STACK, "--config", run_yaml(VALID.replace("cli-start-1", "cli-start-2")))
    assert result.code == 0, result.err
    assert "arn:aws:states:us-east-1:" in result.out and "console.aws.amazon.com/states" in result.out
    assert "aurax status cli-start-2" in result.out


def test_start_refuses_a_run_that_is_already_running(deployed: LocalStack, aurax, run_yaml):
    path = run_yaml(VALID.replace("cli-start-1", "cli-start-3"))
    assert aurax("start", "--stack", STACK, "--config", path).code == 0
    again = aurax("start", "--stack", STACK, "--config", path)
    assert again.code == JobExit.BAD_INPUT
    assert "already has a running execution" in again.err and "aurax status cli-start-3" in again.err


def test_a_bad_config_names_each_field_and_starts_nothing(deployed: LocalStack, aurax, run_yaml):
    sfn = boto3.client("stepfunctions")
    before = len(sfn.list_executions(stateMachineArn=deployed.state_machine_arn)["executions"])
    bad = "run_id: Bad_Run\ntraining: {total_epochs: 2, decision_epoch: 5, learning_rat: 0.1}\n"
    result = aurax("start", "--stack", STACK, "--config", run_yaml(bad))
    assert result.code == JobExit.BAD_CONFIG
    assert "run_id" in result.err and "training.learning_rat" in result.err
    assert "did you mean 'learning_rate'" in result.err
    assert "fix:" in result.err
    assert len(sfn.list_executions(stateMachineArn=deployed.state_machine_arn)["executions"]) == before
    keys = boto3.client("s3").list_objects_v2(Bucket=deployed.bucket, Prefix="runs/Bad_Run").get("KeyCount", 0)
    assert keys == 0


def test_a_missing_config_file_is_a_clear_error(deployed: LocalStack, aurax, tmp_path):
    result = aurax("start", "--stack", STACK, "--config", str(tmp_path / "nope.yaml"))
    assert result.code == JobExit.BAD_CONFIG and "cannot read it" in result.err


def test_a_missing_stack_says_how_to_deploy(deployed: LocalStack, aurax, run_yaml):
    result = aurax("start", "--stack", "no-such-stack", "--config", run_yaml(VALID))
    assert result.code == JobExit.BAD_INPUT
    assert "stack 'no-such-stack' does not exist" in result.err and "sam deploy --guided" in result.err
