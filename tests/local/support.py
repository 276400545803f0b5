"""Helpers for the local emulation tests: Batch infrastructure, zip functions, running a state machine."""

from __future__ import annotations

import io
import json
import textwrap
import time
import zipfile
from dataclasses import dataclass
from typing import Any

import boto3

from aurax_contracts import batch_retry_strategy

REGION = "us-east-1"

#: What the test role does in these tests, as the state machine (invoke the functions, run Batch jobs .sync)
#: and as the functions (write to the `data` bucket): the emulation enforces IAM, so it needs exactly this.
TEST_ROLE_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": "arn:aws:lambda:*:*:function:*"},
    {"Effect": "Allow", "Action": ["batch:SubmitJob", "batch:TerminateJob"], "Resource": "*"},
    {"Effect": "Allow", "Action": "batch:DescribeJobs", "Resource": "*"},
    {"Effect": "Allow", "Action": ["events:PutTargets", "events:PutRule", "events:DescribeRule"],
     "Resource": "arn:aws:events:*:*:rule/StepFunctionsGetEventsForBatchJobsRule"},
    {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::data/*"},
]}


@dataclass
class BatchInfra:
    queue: str
    role_arn: str

    def job_definition(self, name: str, command: list[str], environment: dict[str, str] | None = None,
                       retry: dict[str, Any] | None = None, job_role_arn: str | None = None) -> str:
        batch = boto3.client("batch", region_name=REGION)
        strategy = retry if retry is not None else batch_retry_strategy()
        # The template writes CloudFormation's PascalCase; the API wants camelCase.
        api_strategy = {"attempts": strategy["Attempts"],
                        "evaluateOnExit": [{k[0].lower() + k[1:]: v for k, v in rule.items()}
                                           for rule in strategy["EvaluateOnExit"]]}
        return batch.register_job_definition(
            jobDefinitionName=name, type="container", retryStrategy=api_strategy,
            containerProperties={"image": "aurax:local", "command": command,
                                 **({"jobRoleArn": job_role_arn} if job_role_arn else {}),
                                 "resourceRequirements": [{"type": "VCPU", "value": "1"},
                                                          {"type": "MEMORY", "value": "512"}],
                                 "environment": [{"name": k, "value": v} for k, v in (environment or {}).items()]},
        )["jobDefinitionArn"]


def create_batch_infra() -> BatchInfra:
    """A role, a compute environment and a queue (inside mock_aws)."""
    iam = boto3.client("iam", region_name=REGION)
    batch = boto3.client("batch", region_name=REGION)
    role = iam.create_role(RoleName="aurax-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    iam.put_role_policy(RoleName="aurax-role", PolicyName="tests", PolicyDocument=json.dumps(TEST_ROLE_POLICY))
    # UNMANAGED: moto launches no instances for it (the job runner does not need any).
    env = batch.create_compute_environment(computeEnvironmentName="aurax-ce", type="UNMANAGED", state="ENABLED",
                                           serviceRole=role)
    queue = batch.create_job_queue(jobQueueName="aurax-q", state="ENABLED", priority=1,
                                   computeEnvironmentOrder=[{"order": 1,
                                                             "computeEnvironment": env["computeEnvironmentArn"]}])
    return BatchInfra(queue=queue["jobQueueArn"], role_arn=role)


def zip_source(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, textwrap.dedent(text))
    return buffer.getvalue()


def create_function(name: str, source: str, role_arn: str, environment: dict[str, str] | None = None,
                    extra_files: dict[str, str] | None = None) -> str:
    return boto3.client("lambda", region_name=REGION).create_function(
        FunctionName=name, Runtime="python3.11", Role=role_arn, Handler="app.handler", Timeout=30,
        Code={"ZipFile": zip_source({"app.py": source, **(extra_files or {})})},
        Environment={"Variables": environment or {}})["FunctionArn"]


def run_state_machine(definition: dict[str, Any], role_arn: str, execution_input: dict[str, Any],
                      timeout_s: float = 60.0) -> dict[str, Any]:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    arn = sfn.create_state_machine(name=f"sm-{time.monotonic_ns()}", definition=json.dumps(definition),
                                   roleArn=role_arn)["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=arn, input=json.dumps(execution_input))["executionArn"]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        described = sfn.describe_execution(executionArn=execution)
        if described["status"] != "RUNNING":
            return described
        time.sleep(0.05)
    raise AssertionError(f"execution still running after {timeout_s} s")
