"""`aurax start`: a valid config is uploaded and started; a bad one, one the real annotations cannot meet, or a
missing stack, starts nothing."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from aurax.local.stack import LocalStack
from aurax_contracts import JobExit, RunConfig
from tests.cli.conftest import STACK
from tests.dataset.mtat_real import annotations_bytes

#: Rules the real-label fixture (folders c-f, tests/dataset/data/mtat-real) meets: 851 eligible clips.
VALID = ("run_id: cli-start-1\nmodel: {model_id: aurax/tiny-random-musicgen}\n"
         "training: {total_epochs: 4, decision_epoch: 2}\ndataset: {excluded_folders: [], min_clips: 800}\n")


@pytest.fixture(autouse=True)
def annotations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A local copy of real-format annotations (what a laptop passes with --annotations to work offline)."""
    monkeypatch.setenv("AURAX_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "annotations_final.csv"
    path.write_bytes(annotations_bytes())
    return str(path)


def test_start_uploads_the_config_and_starts_an_execution(deployed: LocalStack, aurax, run_yaml, annotations):
    result = aurax("start", "--stack", STACK, "--config", run_yaml(VALID), "--annotations", annotations, "--json")
    assert result.code == 0, result.err
    started = result.json()
    assert started["dataset_plan"] == {"annotations": annotations, "selected": {"train": 607, "validation": 244}}
    config_key = "runs/cli-start-1/config.json"
    assert started["config_uri"] == f"s3://{deployed.bucket}/{config_key}"
    body = boto3.client("s3").get_object(Bucket=deployed.bucket, Key=config_key)["Body"].read()
    uploaded = RunConfig.model_validate_json(body)
    assert uploaded.run_id == "cli-start-1" and uploaded.training.decision_epoch == 2
    execution = boto3.client("stepfunctions").describe_execution(executionArn=started["execution_arn"])
    assert execution["stateMachineArn"] == deployed.state_machine_arn
    assert json.loads(execution["input"]) == {"run_id": "cli-start-1", "config_uri": started["config_uri"]}
    assert started["execution_arn"] in started["console_url"] and "region=us-east-1" in started["console_url"]


def test_start_prints_the_arn_and_console_link(deployed: LocalStack, aurax, run_yaml, annotations):
    result = aurax("start", "--stack", STACK, "--config", run_yaml(VALID.replace("cli-start-1", "cli-start-2")),
                   "--annotations", annotations)
    assert result.code == 0, result.err
    assert "dataset    851 clips (train 607, validation 244) planned on" in result.out
    assert "arn:aws:states:us-east-1:" in result.out and "console.aws.amazon.com/states" in result.out
    assert "aurax status cli-start-2" in result.out


def test_start_refuses_a_run_that_is_already_running(deployed: LocalStack, aurax, run_yaml, annotations):
    path = run_yaml(VALID.replace("cli-start-1", "cli-start-3"))
    assert aurax("start", "--stack", STACK, "--config", path, "--annotations", annotations).code == 0
    again = aurax("start", "--stack", STACK, "--config", path, "--annotations", annotations)
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


def _nothing_started(deployed: LocalStack, before: int, run_id: str) -> bool:
    executions = boto3.client("stepfunctions").list_executions(stateMachineArn=deployed.state_machine_arn)
    keys = boto3.client("s3").list_objects_v2(Bucket=deployed.bucket, Prefix=f"runs/{run_id}/").get("KeyCount", 0)
    return len(executions["executions"]) == before and keys == 0


def test_a_config_the_real_annotations_cannot_meet_starts_nothing(deployed: LocalStack, aurax, run_yaml,
                                                                  annotations):
    sfn = boto3.client("stepfunctions")
    before = len(sfn.list_executions(stateMachineArn=deployed.state_machine_arn)["executions"])
    defaults = "run_id: cli-start-4\n"  # the default folders: the fixture has no labelled training folder
    result = aurax("start", "--stack", STACK, "--config", run_yaml(defaults), "--annotations", annotations)
    assert result.code == JobExit.BAD_CONFIG
    assert "cannot be met" in result.err and "244 eligible clips, fewer than the 1,000 needed" in result.err
    assert "fix: set dataset.excluded_folders: [], dataset.min_clips: 851" in result.err
    assert _nothing_started(deployed, before, "cli-start-4")


def test_unreachable_annotations_start_nothing_and_name_the_offline_route(deployed: LocalStack, aurax, run_yaml,
                                                                         monkeypatch: pytest.MonkeyPatch):
    from aurax.dataset import source
    from aurax.dataset.download import RetryPolicy

    monkeypatch.setattr(source, "LAPTOP_RETRY", RetryPolicy(attempts=1, connect_timeout_s=2))
    sfn = boto3.client("stepfunctions")
    before = len(sfn.list_executions(stateMachineArn=deployed.state_machine_arn)["executions"])
    offline = VALID.replace("cli-start-1", "cli-start-5")
    offline = offline.replace("min_clips: 800}", "min_clips: 800, source_uri: 'http://127.0.0.1:9/mtat/'}")
    result = aurax("start", "--stack", STACK, "--config", run_yaml(offline))
    assert result.code == JobExit.BAD_INPUT
    assert "cannot download the annotations" in result.err and "pass --annotations" in result.err
    assert _nothing_started(deployed, before, "cli-start-5")


def test_a_missing_stack_says_how_to_deploy(deployed: LocalStack, aurax, run_yaml, annotations):
    result = aurax("start", "--stack", "no-such-stack", "--config", run_yaml(VALID), "--annotations", annotations)
    assert result.code == JobExit.BAD_INPUT
    assert "stack 'no-such-stack' does not exist" in result.err and "sam deploy --guided" in result.err
