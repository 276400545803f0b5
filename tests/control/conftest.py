"""Fixtures for the control plane: a moto account with the project's bucket, tables, KMS-encrypted topic (with an
SQS subscriber), event bus (with a rule to SQS), Batch queue, and the handlers loaded from functions/.

IAM is enforced as on AWS (aurax.local.iam): each handler runs as its function's role, created from
template.yaml with the template's policies bound to this account's resources, so a handler calling an API its
role does not grant fails here as it would in Lambda. The test's own set-up and checks are unchecked."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENT = "test"
BUCKET = f"aurax-data-123456789012-us-east-1-{DEPLOYMENT}"  # the template's name for the data bucket
RUN_TABLE = "aurax-runs"
IDEMPOTENCY_TABLE = "aurax-idempotency"
QUEUE_NAME = "aurax-train"

os.environ.update({
    "DATA_BUCKET": BUCKET, "RUN_TABLE": RUN_TABLE, "IDEMPOTENCY_TABLE": IDEMPOTENCY_TABLE,
    "ALERT_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:aurax-alerts", "EVENT_BUS_NAME": "aurax",
    "JOB_QUEUES": QUEUE_NAME, "POWERTOOLS_METRICS_NAMESPACE": "AuraX",
})


class FakeContext:
    function_name = "aurax-test"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:aurax-test"
    aws_request_id = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


#: Function logical id -> its role ARN in the current `account` (empty outside it).
_ROLES: dict[str, str] = {}


def _function_of(folder: str) -> str:
    """The template's logical id of the function whose code is functions/<folder>/."""
    from aurax.local.stack import load_template

    resources = load_template(ROOT / "template.yaml")["Resources"]
    return next(name for name, resource in resources.items()
                if resource["Type"] == "AWS::Serverless::Function"
                and resource["Properties"].get("CodeUri", "").strip("/") == f"functions/{folder}")


def load_handler(name: str) -> ModuleType:
    """functions/<name>/app.py under a unique module name (every handler file is called app.py); its
    `lambda_handler` runs as the function's role while an `account` is set up."""
    module_name = f"aurax_fn_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, ROOT / "functions" / name / "app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    handler, function = module.lambda_handler, _function_of(name)

    def lambda_handler_as_its_role(event: Any, context: Any) -> Any:
        from aurax.local.iam import Principal, acting_as

        role = _ROLES.get(function)
        if role is None:
            return handler(event, context)
        with acting_as(Principal(role, f"Lambda function {function}")):
            return handler(event, context)

    module.lambda_handler = lambda_handler_as_its_role
    return module


@dataclass
class Account:
    alerts_queue: str
    events_queue: str
    queue_arn: str
    job_definition: str

    def sns_messages(self) -> list[dict[str, Any]]:
        return [json.loads(m["Body"]) for m in _drain(self.alerts_queue)]

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(m["Body"]) for m in _drain(self.events_queue)]


def _drain(url: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs")
    out: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not got:
            return out
        out.extend(got)
        for m in got:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


@pytest.fixture
def account() -> Iterator[Account]:
    from aurax.local.iam import IamEnforcement
    from aurax.local.stack import deploy_roles
    from aurax_control.aws import reset_clients
    from aurax_control.runtime import reset_runtime

    with mock_aws(config={"batch": {"use_docker": False}}), IamEnforcement() as iam:
        reset_clients()
        reset_runtime()
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        ddb = boto3.client("dynamodb")
        ddb.create_table(TableName=RUN_TABLE, BillingMode="PAY_PER_REQUEST",
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                    {"AttributeName": "sk", "KeyType": "RANGE"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                               {"AttributeName": "sk", "AttributeType": "S"}])
        ddb.create_table(TableName=IDEMPOTENCY_TABLE, BillingMode="PAY_PER_REQUEST",
                         KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])
        sqs = boto3.client("sqs")
        alerts_q = sqs.create_queue(QueueName="alerts")["QueueUrl"]
        events_q = sqs.create_queue(QueueName="events")["QueueUrl"]
        def arn(url: str) -> str:
            return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

        key = boto3.client("kms").create_key(Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "kms:*",
            "Resource": "*"}]}))["KeyMetadata"]["Arn"]  # as the template's AlertTopicKey: IAM policies decide
        sns = boto3.client("sns")
        topic = sns.create_topic(Name="aurax-alerts", Attributes={"KmsMasterKeyId": key})["TopicArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn(alerts_q))
        events = boto3.client("events")
        events.create_event_bus(Name="aurax")
        events.put_rule(Name="all", EventBusName="aurax", EventPattern=json.dumps({"source": ["aurax.train-control"]}))
        events.put_targets(Rule="all", EventBusName="aurax", Targets=[{"Id": "q", "Arn": arn(events_q)}])
        queue_arn, job_def = _batch()
        _ROLES.update(deploy_roles(ROOT / "template.yaml", {
            "RunTable": RUN_TABLE, "IdempotencyTable": IDEMPOTENCY_TABLE, "AlertTopic": topic,
            "AlertTopic.TopicName": "aurax-alerts", "AlertTopicKey.Arn": key, "EventBus": "aurax",
            "GpuJobQueue": queue_arn, "FailedEventsQueue.Arn": arn(alerts_q)}, deployment_name=DEPLOYMENT))
        try:
            yield Account(alerts_q, events_q, queue_arn, job_def)
        finally:
            _ROLES.clear()
            reset_clients()
            reset_runtime()
        assert not iam.denials, "AWS would deny:\n" + "\n".join(d.message for d in iam.denials)


def _batch() -> tuple[str, str]:
    iam = boto3.client("iam")
    role = iam.create_role(RoleName="batch-service", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    batch = boto3.client("batch")
    env = batch.create_compute_environment(computeEnvironmentName="aurax-ce", type="UNMANAGED", serviceRole=role)
    queue = batch.create_job_queue(jobQueueName=QUEUE_NAME, priority=1, state="ENABLED",
                                   computeEnvironmentOrder=[{"order": 1,
                                                             "computeEnvironment": env["computeEnvironmentArn"]}])
    jd = batch.register_job_definition(jobDefinitionName="train", type="container",
                                       containerProperties={"image": "aurax", "vcpus": 1, "memory": 512,
                                                            "command": ["true"]})
    return queue["jobQueueArn"], jd["jobDefinitionArn"]


@pytest.fixture
def jobs(account: Account, monkeypatch: pytest.MonkeyPatch) -> Any:
    """`jobs(name, status, started=..., created=..., stopped=...)` submits a Batch job left in that status (moto's
    simple backend would finish it at once); with `stopped`, it has one finished attempt from started to stopped."""
    from moto.batch_simple.models import BatchSimpleBackend

    pending: dict[str, dict[str, Any]] = {}

    def hold(self: Any, include_start_attempt: bool, job: Any) -> None:
        spec = pending[job.job_name]
        self.backend._jobs[job.job_id] = job
        job.job_created_at = spec["created"].replace(tzinfo=None)
        job.status = spec["status"]
        if spec["started"] is not None:
            job.job_started_at = spec["started"].replace(tzinfo=None)
        if spec["stopped"] is not None:
            job.attempts.append({"container": {}, "startedAt": int(spec["started"].timestamp() * 1000),
                                 "stoppedAt": int(spec["stopped"].timestamp() * 1000)})

    monkeypatch.setattr(BatchSimpleBackend, "_mark_job_as_finished", hold)

    def submit(name: str, status: str, started: datetime | None = None, created: datetime | None = None,
               tags: dict[str, str] | None = None, stopped: datetime | None = None) -> str:
        pending[name] = {"status": status, "started": started, "stopped": stopped,
                         "created": created or (started or datetime.now(UTC)) - timedelta(minutes=1)}
        return boto3.client("batch").submit_job(jobName=name, jobQueue=QUEUE_NAME, jobDefinition=account.job_definition,
                                                **({"tags": tags} if tags else {}))["jobId"]
    return submit


def put_config(run_id: str, **sections: Any) -> str:
    """Upload a run config (JSON) and return its URI."""
    uri_key = f"runs/{run_id}/config.json"
    boto3.client("s3").put_object(Bucket=BUCKET, Key=uri_key, Body=json.dumps({"run_id": run_id, **sections}))
    return f"s3://{BUCKET}/{uri_key}"


def s3_event(key: str, etag: str = "etag-1", sequencer: str | None = None) -> dict[str, Any]:
    return {"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-01-01T00:00:00.000Z", "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "AWS:X"}, "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": "r", "x-amz-id-2": "i"},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "metrics",
               "bucket": {"name": BUCKET, "ownerIdentity": {"principalId": "X"}, "arn": f"arn:aws:s3:::{BUCKET}"},
               "object": {"key": key, "size": 1, "eTag": etag, "sequencer": sequencer or uuid.uuid4().hex[:18]}}}]}


def scheduled_event(at: datetime | None = None) -> dict[str, Any]:
    """A schedule's event, fired now (or `at`: the idle watch judges the moment its schedule fired)."""
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "123456789012", "time": (at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": "us-east-1",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/aurax-schedule"], "detail": {}}
