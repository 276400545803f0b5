"""`aurax stop`: ends the run's execution and terminates its jobs with a reason Batch does not retry."""

from __future__ import annotations

import threading

import boto3

from aurax.local.moto_patches import BatchJobResult, BatchJobRun, patched_moto
from aurax.local.stack import LocalStack
from aurax.ops.stop import STOP_REASON
from aurax_contracts import JobExit
from aurax_contracts.exit_codes import batch_retry_strategy
from tests.cli.conftest import STACK


def test_stop_ends_the_execution_and_terminates_the_runs_jobs(deployed: LocalStack, aurax, tmp_path):
    sfn, batch = boto3.client("stepfunctions"), boto3.client("batch")
    arn = sfn.start_execution(stateMachineArn=deployed.state_machine_arn, name="stop-1-a",
                              input='{"run_id": "stop-1", "config_uri": "s3://b/runs/stop-1/config.json"}')["executionArn"]
    queue = deployed.outputs["GpuJobQueueArn"]
    definition = deployed.resources["TrainJobDefinition"]
    release = threading.Event()

    def training(run: BatchJobRun) -> BatchJobResult:
        while run.stop_reason() is None and not release.wait(0.01):
            pass
        return BatchJobResult(int(JobExit.INTERRUPTED))  # SIGTERM: checkpoint written, exit 75

    # (The jobs' state changes reach the real cost ledger handler; its logs go to files, not the CLI output.)
    with patched_moto(training, lambda_log_dir=tmp_path) as local:
        job = batch.submit_job(jobName="stop-1-train-to-decision", jobQueue=queue, jobDefinition=definition)["jobId"]
        other = batch.submit_job(jobName="other-run-train-to-decision", jobQueue=queue,
                                 jobDefinition=definition)["jobId"]
        result = aurax("stop", "stop-1", "--stack", STACK, "--json")
        assert local.batch.wait(0.5) is False  # the other run's job still trains
        release.set()
        assert local.batch.wait(10)
    assert result.code == 0, result.err
    assert result.json() == {"run_id": "stop-1", "execution_arn": arn, "terminated_jobs": [job]}
    assert sfn.describe_execution(executionArn=arn)["status"] == "ABORTED"
    described = {j["jobId"]: j for j in batch.describe_jobs(jobs=[job, other])["jobs"]}
    assert described[job]["status"] == "FAILED" and described[job]["statusReason"] == STOP_REASON
    assert len(described[job]["attempts"]) == 1  # not retried although it exited 75
    assert described[other]["statusReason"] != STOP_REASON
    # The first retry rule matches the reason: Batch exits instead of retrying.
    assert STOP_REASON.startswith(batch_retry_strategy()["EvaluateOnExit"][0]["OnStatusReason"].rstrip("*"))


def test_stopping_a_run_that_is_not_running(deployed: LocalStack, aurax):
    result = aurax("stop", "never-started", "--stack", STACK)
    assert result.code == JobExit.BAD_INPUT and "nothing to stop" in result.err
