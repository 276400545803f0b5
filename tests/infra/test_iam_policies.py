"""The template's IAM policies against what AWS requires of each principal's calls, decided by the emulation's
IAM enforcement (aurax.local.iam) on the deployed stack. Each test names the defect it guards against."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from aurax.local.iam import Principal, acting_as
from aurax.local.moto_patches import MOTO_CONFIG, LocalAwsPatches, patched_moto
from aurax.local.stack import LocalStack, deploy, load_template
from tests.infra.support import TEMPLATE

REGION = "us-east-1"


def _publishers() -> list[str]:
    """Every function whose template policies let it publish to the alert topic."""
    return sorted(name for name, resource in load_template(TEMPLATE)["Resources"].items()
                  if resource["Type"] == "AWS::Serverless::Function"
                  and any("SNSPublishMessagePolicy" in p for p in resource["Properties"].get("Policies", [])
                          if isinstance(p, dict)))


@pytest.fixture(scope="module")
def deployed() -> Iterator[tuple[LocalStack, LocalAwsPatches]]:
    with mock_aws(config=MOTO_CONFIG), patched_moto() as local:
        yield deploy(TEMPLATE), local


def _principal(stack: LocalStack, logical_id: str) -> Principal:
    role = boto3.client("iam", region_name=REGION).get_role(RoleName=stack.resources[f"{logical_id}Role"])["Role"]
    return Principal(role["Arn"], logical_id)


def test_there_are_five_alert_publishers() -> None:
    assert _publishers() == ["AbortRunFunction", "CostLedgerFunction", "DecideFunction", "IdleWatchFunction",
                             "MetricsMonitorFunction"]


@pytest.mark.parametrize("function", _publishers())
def test_each_alert_publisher_may_publish_to_the_kms_encrypted_topic(deployed: Any, function: str) -> None:
    # Defect 3: SNS needs kms:GenerateDataKey AND kms:Decrypt on the topic's key from every publisher; with
    # only the first, every alert and decision message failed, and AbortRun with them.
    stack, _ = deployed
    with acting_as(_principal(stack, function)):
        boto3.client("sns", region_name=REGION).publish(TopicArn=stack.outputs["AlertTopicArn"], Message="test")


def test_the_state_machine_may_tag_the_jobs_it_submits(deployed: Any) -> None:
    # Defect 2: every Batch task passes Tags to SubmitJob, which Batch authorises as batch:TagResource too.
    stack, _ = deployed
    with acting_as(_principal(stack, "PipelineStateMachine")):
        boto3.client("batch", region_name=REGION).submit_job(
            jobName="tag-test", jobQueue=stack.outputs["GpuJobQueueArn"],
            jobDefinition=stack.resources["PreflightJobDefinition"], tags={"aurax:run-id": "tag-test"},
            parameters={"config_uri": "s3://b/c", "dataset_uri": "s3://b/d"})


def test_a_denied_call_names_principal_action_resource_and_the_fix(deployed: Any) -> None:
    stack, local = deployed
    before = len(local.iam_denials)
    with acting_as(_principal(stack, "ClassifyFailureFunction")), pytest.raises(ClientError) as denied:
        boto3.client("sns", region_name=REGION).publish(TopicArn=stack.outputs["AlertTopicArn"], Message="x")
    message = denied.value.response["Error"]["Message"]
    assert denied.value.response["Error"]["Code"] == "AuthorizationError"
    assert f"assumed-role/{stack.resources['ClassifyFailureFunctionRole']}/" in message
    assert f"perform: sns:Publish on resource: {stack.outputs['AlertTopicArn']}" in message
    assert "add to ClassifyFailureFunction's Policies in template.yaml" in message
    assert local.iam_denials[before:] == [message]


def test_the_job_role_is_checked_like_any_other(deployed: Any) -> None:
    stack, _ = deployed
    role = boto3.client("iam", region_name=REGION).get_role(RoleName=stack.resources["JobRole"])["Role"]["Arn"]
    s3 = boto3.client("s3", region_name=REGION)
    with acting_as(Principal(role, "a job")):
        s3.put_object(Bucket=stack.bucket, Key="runs/r/checkpoints/latest", Body=b"x")
        assert s3.get_object(Bucket=stack.bucket, Key="runs/r/checkpoints/latest")["Body"].read() == b"x"
        with pytest.raises(ClientError, match="dynamodb:GetItem"):
            boto3.client("dynamodb", region_name=REGION).get_item(
                TableName=stack.outputs["RunTableName"], Key={"pk": {"S": "r"}, "sk": {"S": "state"}})


def test_the_key_policy_decides_before_any_identity_policy(deployed: Any) -> None:
    # Without the key policy's root statement, an IAM policy granting the key grants nothing (AWS KMS).
    stack, _ = deployed
    kms = boto3.client("kms", region_name=REGION)
    key = stack.resources["AlertTopicKey"]
    stored = kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"]
    original = stored if isinstance(stored, str) else json.dumps(stored)  # moto keeps CloudFormation's dict
    policy = json.loads(original)
    policy["Statement"] = [s for s in policy["Statement"] if s.get("Sid") != "AccountAdministers"]
    kms.put_key_policy(KeyId=key, PolicyName="default", Policy=json.dumps(policy))
    try:
        with acting_as(_principal(stack, "DecideFunction")), pytest.raises(ClientError, match="key policy"):
            boto3.client("sns", region_name=REGION).publish(TopicArn=stack.outputs["AlertTopicArn"], Message="x")
    finally:
        kms.put_key_policy(KeyId=key, PolicyName="default", Policy=original)
