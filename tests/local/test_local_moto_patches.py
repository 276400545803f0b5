"""The moto patches: real handlers in process, Batch through a runner with Batch's retry rules, instant waits."""

from __future__ import annotations

import json
import threading
import time

import boto3
import pytest

from aurax.local.moto_patches import (
    SPOT_RECLAIM_REASON,
    TIMEOUT_REASON,
    BatchJobResult,
    BatchJobRun,
    batch_retry_action,
    patched_moto,
    resolve_command,
)
from aurax_contracts import JobExit, batch_retry_strategy
from tests.local.support import REGION, BatchInfra, create_function, run_state_machine

HANDLER = """
import os

class BadConfigError(Exception):
    pass

def handler(event, context):
    if event.get("fail"):
        raise BadConfigError("run_id: bad; fix: use lower case")
    return {"greeting": os.environ["GREETING"], "seen": event, "remaining": context.get_remaining_time_in_millis() > 0}
"""


def batch_task(queue: str, definition: str, next_state: str) -> dict:
    return {"Type": "Task", "Resource": "arn:aws:states:::batch:submitJob.sync",
            "Parameters": {"JobName": "train", "JobQueue": queue, "JobDefinition": definition,
                           "Parameters": {"run_uri.$": "$.run_uri", "until_epoch": "2"}},
            "ResultSelector": {"attempts.$": "States.ArrayLength($.Attempts)", "status.$": "$.Status"},
            "ResultPath": "$.job",
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "Failed"}],
            "Next": next_state}


def pipeline(queue: str, definition: str, function_arn: str) -> dict:
    return {"StartAt": "Hello", "States": {
        "Hello": {"Type": "Task", "Resource": function_arn, "ResultPath": "$.hello",
                  "Catch": [{"ErrorEquals": ["BadConfigError"], "ResultPath": "$.failure", "Next": "Rejected"}],
                  "Next": "LongWait"},
        "LongWait": {"Type": "Wait", "Seconds": 3600, "Next": "Train"},
        "Train": batch_task(queue, definition, "Done"),
        "Done": {"Type": "Succeed"},
        "Rejected": {"Type": "Fail", "Error": "Rejected"},
        "Failed": {"Type": "Pass", "End": True},
    }}


class ScriptedRunner:
    """Plays back one result per attempt and records what each attempt saw."""

    def __init__(self, *results: BatchJobResult) -> None:
        self.results = list(results)
        self.runs: list[BatchJobRun] = []

    def __call__(self, run: BatchJobRun) -> BatchJobResult:
        self.runs.append(run)
        return self.results.pop(0)


def test_real_handler_runs_with_its_environment_and_batch_retries_an_interruption(batch_infra: BatchInfra):
    definition = batch_infra.job_definition("train", ["job", "train", "--run-uri", "Ref::run_uri",
                                                      "--until-epoch", "Ref::until_epoch"], {"MODE": "spot"})
    fn = create_function("hello", HANDLER, batch_infra.role_arn, {"GREETING": "sawubona"})
    runner = ScriptedRunner(BatchJobResult(int(JobExit.INTERRUPTED), SPOT_RECLAIM_REASON), BatchJobResult(0))
    with patched_moto(runner) as local:  # the one-hour Wait state ends at once, or this never finishes
        result = run_state_machine(pipeline(batch_infra.queue, definition, fn), batch_infra.role_arn,
                                   {"run_uri": "s3://bucket/runs/r1"})
    assert result["status"] == "SUCCEEDED", result
    output = json.loads(result["output"])
    assert output["hello"]["greeting"] == "sawubona" and output["hello"]["seen"]["run_uri"] == "s3://bucket/runs/r1"
    assert output["hello"]["remaining"] is True
    assert output["job"] == {"attempts": 2, "status": "SUCCEEDED"}
    assert [r.attempt for r in runner.runs] == [1, 2]
    first = runner.runs[0]
    assert first.command == ["job", "train", "--run-uri", "s3://bucket/runs/r1", "--until-epoch", "2"]
    assert first.environment["MODE"] == "spot" and first.environment["AWS_BATCH_JOB_ATTEMPT"] == "1"
    assert first.environment["MANAGED_BY_AWS"] == "STARTED_BY_STEP_FUNCTIONS"
    assert runner.runs[1].environment["AWS_BATCH_JOB_ATTEMPT"] == "2"
    assert runner.runs[1].job_id == first.job_id == first.environment["AWS_BATCH_JOB_ID"]
    assert [i.function_name for i in local.lambda_invocations] == ["hello"]


def test_handler_exception_is_caught_by_its_error_name(batch_infra: BatchInfra):
    definition = batch_infra.job_definition("train", ["true"])
    fn = create_function("hello", HANDLER, batch_infra.role_arn, {"GREETING": "hi"})
    with patched_moto() as local:
        result = run_state_machine(pipeline(batch_infra.queue, definition, fn), batch_infra.role_arn,
                                   {"fail": True})
    assert result["status"] == "FAILED" and result.get("error") == "Rejected"
    assert local.lambda_invocations[0].error_type == "BadConfigError"


def test_exit_code_that_is_not_retryable_fails_the_task_once_with_batch_cause(batch_infra: BatchInfra):
    definition = batch_infra.job_definition("train", ["job", "train"])
    fn = create_function("hello", HANDLER, batch_infra.role_arn, {"GREETING": "hi"})
    runner = ScriptedRunner(BatchJobResult(int(JobExit.DIVERGED), "Essential container in task exited"))
    with patched_moto(runner):
        result = run_state_machine(pipeline(batch_infra.queue, definition, fn), batch_infra.role_arn, {"run_uri": "x"})
    assert result["status"] == "SUCCEEDED"  # the Catch routed it to the Failed pass state
    failure = json.loads(result["output"])["failure"]
    assert failure["Error"] == "States.TaskFailed"
    cause = json.loads(failure["Cause"])
    assert cause["Status"] == "FAILED" and cause["Container"]["ExitCode"] == JobExit.DIVERGED
    assert len(cause["Attempts"]) == 1 and len(runner.runs) == 1


def test_interruptions_stop_after_the_job_definitions_attempts(batch_infra: BatchInfra):
    retry = {"Attempts": 3, "EvaluateOnExit": batch_retry_strategy()["EvaluateOnExit"]}
    definition = batch_infra.job_definition("train", ["x"], retry=retry)
    fn = create_function("hello", HANDLER, batch_infra.role_arn, {"GREETING": "hi"})
    runner = ScriptedRunner(*[BatchJobResult(None, SPOT_RECLAIM_REASON)] * 3)
    with patched_moto(runner):
        result = run_state_machine(pipeline(batch_infra.queue, definition, fn), batch_infra.role_arn, {"run_uri": "x"})
    cause = json.loads(json.loads(result["output"])["failure"]["Cause"])
    assert len(runner.runs) == 3 and cause["StatusReason"] == SPOT_RECLAIM_REASON


def test_terminate_job_reaches_the_runner_and_is_not_retried(batch_infra: BatchInfra):
    definition = batch_infra.job_definition("train", ["x"])
    started = threading.Event()

    def runner(run: BatchJobRun) -> BatchJobResult:
        started.set()
        deadline = time.monotonic() + 20
        while run.stop_reason() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        return BatchJobResult(int(JobExit.OVER_BUDGET) if run.stop_reason() else 0)

    batch = boto3.client("batch", region_name=REGION)
    with patched_moto(runner) as local:
        job_id = batch.submit_job(jobName="train", jobQueue=batch_infra.queue, jobDefinition=definition)["jobId"]
        assert started.wait(10)
        assert batch.describe_jobs(jobs=[job_id])["jobs"][0]["status"] == "RUNNING"
        batch.terminate_job(jobId=job_id, reason="aurax:over-budget: projected 700 > 600")
        assert local.batch.wait(10)
        job = batch.describe_jobs(jobs=[job_id])["jobs"][0]
    assert job["status"] == "FAILED" and job["statusReason"].startswith("aurax:over-budget")
    assert job["container"]["exitCode"] == JobExit.OVER_BUDGET and len(job["attempts"]) == 1


def test_s3_notification_invokes_the_real_handler(batch_infra: BatchInfra):
    source = """
    import boto3, os
    from urllib.parse import unquote_plus
    from aws_lambda_powertools.utilities.parser import parse
    from aws_lambda_powertools.utilities.parser.models import S3Model
    def handler(event, context):
        record = parse(event=event, model=S3Model).Records[0]  # AWS's full record shape
        assert record.s3.object.sequencer and record.s3.object.versionId
        key = unquote_plus(record.s3.object.key)
        boto3.client("s3").put_object(Bucket=os.environ["BUCKET"], Key="seen/" + key.replace("/", "_"), Body=b"1")
        return {}
    """
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="data")
    s3.put_bucket_versioning(Bucket="data", VersioningConfiguration={"Status": "Enabled"})
    arn = create_function("monitor", source, batch_infra.role_arn, {"BUCKET": "data"})
    s3.put_bucket_notification_configuration(Bucket="data", NotificationConfiguration={
        "LambdaFunctionConfigurations": [{"LambdaFunctionArn": arn, "Events": ["s3:ObjectCreated:*"],
                                          "Filter": {"Key": {"FilterRules": [
                                              {"Name": "prefix", "Value": "runs/"},
                                              {"Name": "suffix", "Value": ".jsonl"}]}}}]})
    with patched_moto() as local:
        s3.put_object(Bucket="data", Key="runs/r1/metrics/a.jsonl", Body=b"{}\n")
        s3.put_object(Bucket="data", Key="runs/r1/other.txt", Body=b"x")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="data", Prefix="seen/").get("Contents", [])]
    assert keys == ["seen/runs_r1_metrics_a.jsonl"]
    assert [(i.function_name, i.error_type) for i in local.lambda_invocations] == [("monitor", None)]


def test_patches_install_and_remove_cleanly(aws: None):
    from moto.awslambda_simple.models import LambdaSimpleBackend
    from moto.batch_simple.models import BatchSimpleBackend
    from moto.core.botocore_stubber import BotocoreStubber

    def installed() -> tuple:
        return (LambdaSimpleBackend.invoke, BatchSimpleBackend._mark_job_as_finished, BotocoreStubber.process_request,
                threading.Thread.start)

    before = installed()
    for _ in range(2):
        with patched_moto():
            assert all(now is not then for now, then in zip(installed(), before, strict=True))
    assert installed() == before


@pytest.mark.parametrize(("result", "action"), [
    (BatchJobResult(75), "RETRY"),
    (BatchJobResult(None, SPOT_RECLAIM_REASON), "RETRY"),
    (BatchJobResult(75, "aurax:idle: no heartbeat"), "EXIT"),
    (BatchJobResult(76), "EXIT"),
    (BatchJobResult(1, None, "OutOfMemoryError: Container killed"), "EXIT"),
    # a timed-out attempt is never retried, though the job exits 75 on the timeout's SIGTERM (Batch "Job timeouts")
    (BatchJobResult(75, TIMEOUT_REASON), "EXIT"),
])
def test_retry_rules_follow_the_contract(result: BatchJobResult, action: str):
    assert batch_retry_action(batch_retry_strategy(), result) == action


def test_batch_never_retries_an_attempt_that_timed_out_whatever_the_rules():
    assert batch_retry_action({"attempts": 3}, BatchJobResult(75, TIMEOUT_REASON)) == "EXIT"
    assert batch_retry_action({"attempts": 3, "evaluateOnExit": [{"onExitCode": "75", "action": "RETRY"}]},
                              BatchJobResult(75, TIMEOUT_REASON)) == "EXIT"


def test_batch_retries_when_no_rule_matches():
    assert batch_retry_action({"attempts": 2, "evaluateOnExit": [{"onExitCode": "3", "action": "EXIT"}]},
                              BatchJobResult(4)) == "RETRY"


def test_ref_substitution_is_whole_argument_only():
    assert resolve_command(["a", "Ref::x", "pre-Ref::x", "Ref::missing"], {"x": "1"}) == \
        ["a", "1", "pre-Ref::x", "Ref::missing"]


def test_batch_state_changes_reach_a_lambda_through_an_eventbridge_rule(batch_infra: BatchInfra):
    source = """
    import boto3, json, os
    def handler(event, context):
        detail = event["detail"]
        key = f"seen/{detail['jobName']}-{len(detail['attempts'])}-{detail['status']}"
        boto3.client("s3").put_object(Bucket="data", Key=key, Body=event["time"].encode())
        return {}
    """
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="data")
    arn = create_function("ledger", source, batch_infra.role_arn)
    events = boto3.client("events", region_name=REGION)
    events.put_rule(Name="batch-changes", EventPattern=json.dumps({"source": ["aws.batch"],
                                                                   "detail-type": ["Batch Job State Change"]}))
    events.put_targets(Rule="batch-changes", Targets=[{"Id": "ledger", "Arn": arn}])
    scheduled = create_function("scheduled", "def handler(event, context):\n    return {}\n", batch_infra.role_arn)
    events.put_rule(Name="every-10-minutes", ScheduleExpression="rate(10 minutes)")
    events.put_targets(Rule="every-10-minutes", Targets=[{"Id": "scheduled", "Arn": scheduled}])
    definition = batch_infra.job_definition("train", ["x"])
    runner = ScriptedRunner(BatchJobResult(int(JobExit.INTERRUPTED)), BatchJobResult(0))
    batch = boto3.client("batch", region_name=REGION)
    with patched_moto(runner) as local:
        batch.submit_job(jobName="train", jobQueue=batch_infra.queue, jobDefinition=definition)
        assert local.batch.wait(10)
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="data", Prefix="seen/")["Contents"])
    assert keys == ["seen/train-1-RUNNABLE", "seen/train-1-RUNNING", "seen/train-2-RUNNING", "seen/train-2-SUCCEEDED"]
    assert s3.get_object(Bucket="data", Key=keys[0])["Body"].read().decode().endswith("Z")  # ISO time, as on AWS
    assert {i.function_name for i in local.lambda_invocations} == {"ledger"}  # a schedule ignores events
