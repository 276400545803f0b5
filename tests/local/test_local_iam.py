"""IAM enforcement in the emulation: each caller acts as its principal, its requests need what AWS requires, and
a denial fails with principal, action and resource named."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from aurax.local.endpoint import EmulatorEndpoint
from aurax.local.iam import (
    AWS_RULES,
    Call,
    EmulationError,
    IamEnforcement,
    Principal,
    acting_as,
    container_credentials,
    required_permissions,
)
from aurax.local.moto_patches import patched_moto
from tests.local.support import REGION, TEST_ROLE_POLICY, BatchInfra, create_function, run_state_machine

ACCOUNT = "123456789012"


def role(name: str, *statements: dict[str, Any]) -> Principal:
    iam = boto3.client("iam", region_name=REGION)
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    if statements:
        document = {"Version": "2012-10-17", "Statement": list(statements)}
        iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=json.dumps(document))
    return Principal(arn, f"test role {name}")


def allow(action: str | list[str], resource: str = "*") -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource}


def customer_managed_key() -> str:
    """A KMS key whose policy delegates to the account's IAM policies (the default key policy); its ARN."""
    kms = boto3.client("kms", region_name=REGION)
    return kms.create_key(Policy=json.dumps({"Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "kms:*",
        "Resource": "*"}]}))["KeyMetadata"]["Arn"]


def call(service: str, operation: str, **params: Any) -> Call:
    return Call(service, operation, params, REGION, "AKIAOPERATOR")


def needs(c: Call) -> list[tuple[str, str]]:
    return [(p.action, p.resource) for p in required_permissions(c, IamEnforcement())]


# --- what a request needs -----------------------------------------------------------------------------------
def test_s3_operations_need_the_actions_aws_documents(aws: None):
    assert needs(call("s3", "HeadObject", Bucket="b", Key="k")) == [("s3:GetObject", "arn:aws:s3:::b/k")]
    assert needs(call("s3", "GetObject", Bucket="b", Key="k", VersionId="v1")) == \
        [("s3:GetObjectVersion", "arn:aws:s3:::b/k")]
    assert needs(call("s3", "ListObjectsV2", Bucket="b")) == [("s3:ListBucket", "arn:aws:s3:::b")]
    assert needs(call("s3", "CopyObject", Bucket="b", Key="to", CopySource="src/a%20b%23c")) == \
        [("s3:GetObject", "arn:aws:s3:::src/a b#c"), ("s3:PutObject", "arn:aws:s3:::b/to")]
    assert needs(call("s3", "DeleteObjects", Bucket="b", Delete={"Objects": [{"Key": "x"}, {"Key": "y"}]})) == \
        [("s3:DeleteObject", "arn:aws:s3:::b/x"), ("s3:DeleteObject", "arn:aws:s3:::b/y")]


def test_implied_permissions(aws: None):
    submit = call("batch", "SubmitJob", jobName="j", jobQueue="q", jobDefinition="d:1", tags={"k": "v"})
    assert needs(submit) == [("batch:SubmitJob", f"arn:aws:batch:{REGION}:{ACCOUNT}:job-queue/q"),
                             ("batch:SubmitJob", f"arn:aws:batch:{REGION}:{ACCOUNT}:job-definition/d:1"),
                             ("batch:TagResource", f"arn:aws:batch:{REGION}:{ACCOUNT}:job/*")]
    transact = call("dynamodb", "TransactWriteItems", TransactItems=[{"Put": {"TableName": "t"}},
                                                                     {"Update": {"TableName": "u"}}])
    assert needs(transact) == [("dynamodb:PutItem", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/t"),
                               ("dynamodb:UpdateItem", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/u")]
    assert needs(call("lambda", "Invoke", FunctionName="f")) == \
        [("lambda:InvokeFunction", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:f")]


def test_every_rule_names_its_documented_source():
    for key, rule in AWS_RULES.items():
        assert rule.source.startswith("https://docs.aws.amazon.com/"), key
        assert rule.what, key


def test_an_operation_the_emulation_cannot_place_is_a_clear_error(aws: None):
    with pytest.raises(EmulationError, match="add a row for it to AWS_RULES"):
        needs(call("s3", "PutBucketAcl", Bucket="b"))
    with pytest.raises(EmulationError, match="which resource sns:ConfirmSubscription acts on"):
        needs(call("sns", "ConfirmSubscription", Token="t"))


# --- deciding, end to end through moto ------------------------------------------------------------------------
def test_the_operator_is_not_checked_and_a_role_is(aws: None):
    with patched_moto():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="data")  # the operator (tests, aurax local) sets things up unchecked
        reader = role("reader", allow("s3:GetObject", "arn:aws:s3:::data/*"))
        s3.put_object(Bucket="data", Key="k", Body=b"x")
        with acting_as(reader):
            assert s3.get_object(Bucket="data", Key="k")["Body"].read() == b"x"
            with pytest.raises(ClientError) as denied:
                s3.put_object(Bucket="data", Key="k", Body=b"y")
    error = denied.value.response["Error"]
    assert error["Code"] == "AccessDenied"
    assert "assumed-role/reader/" in error["Message"] and "perform: s3:PutObject on resource: arn:aws:s3:::data/k" in \
        error["Message"]


def test_an_explicit_deny_wins(aws: None):
    with patched_moto() as local:
        boto3.client("s3", region_name=REGION).create_bucket(Bucket="data")
        both = role("both", allow("s3:*"), {"Effect": "Deny", "Action": "s3:GetObject", "Resource": "*"})
        with acting_as(both), pytest.raises(ClientError, match="explicit deny"):
            boto3.client("s3", region_name=REGION).get_object(Bucket="data", Key="k")
    assert len(local.iam_denials) == 1


def test_a_policy_element_the_emulation_does_not_evaluate_is_refused_loudly(aws: None):
    with patched_moto():
        secure_only = {"Bool": {"aws:SecureTransport": "true"}}
        conditional = role("conditional", {**allow("s3:GetObject"), "Condition": secure_only})
        with acting_as(conditional), pytest.raises(EmulationError, match="does not evaluate"):
            boto3.client("s3", region_name=REGION).get_object(Bucket="data", Key="k")


def test_the_state_machine_acts_as_its_role(batch_infra: BatchInfra):
    fn = create_function("hello", "def handler(event, context):\n    return {}\n", batch_infra.role_arn)
    without_invoke = {"Version": "2012-10-17", "Statement": [s for s in TEST_ROLE_POLICY["Statement"]
                                    if s["Action"] != "lambda:InvokeFunction"]}
    boto3.client("iam", region_name=REGION).put_role_policy(RoleName="aurax-role", PolicyName="tests",
                                                            PolicyDocument=json.dumps(without_invoke))
    definition = {"StartAt": "Hello", "States": {"Hello": {"Type": "Task", "Resource": fn, "End": True}}}
    with patched_moto() as local:
        result = run_state_machine(definition, batch_infra.role_arn, {})
    assert result["status"] == "FAILED"
    (denial,) = local.iam_denials
    assert "assumed-role/aurax-role/" in denial and f"perform: lambda:InvokeFunction on resource: {fn}" in denial
    assert local.lambda_invocations == []  # denied before the function ran


def test_a_handler_and_the_threads_it_starts_act_as_its_function(batch_infra: BatchInfra):
    # A managed copy runs on s3transfer's worker threads: they must still be the function, not the operator.
    source = """
    import boto3
    def handler(event, context):
        boto3.client("s3").copy({"Bucket": "data", "Key": "a"}, "data", "b")
        return {}
    """
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="data")
    s3.put_object(Bucket="data", Key="a", Body=b"x")
    # It may read the source (HeadObject, on the handler's thread) but not write: only the copy itself, on a
    # worker thread, is denied, and only if that thread acts as the function.
    copier = role("copier", allow("s3:GetObject", "arn:aws:s3:::data/*"))
    create_function("copier", source, copier.role_arn)
    with patched_moto() as local:
        response = boto3.client("lambda", region_name=REGION).invoke(FunctionName="copier", Payload=b"{}")
    assert response.get("FunctionError") == "Unhandled"
    assert local.iam_denials and all("assumed-role/copier/" in d for d in local.iam_denials)
    assert any("s3:PutObject on resource: arn:aws:s3:::data/b" in d for d in local.iam_denials)


JOB = textwrap.dedent("""
    import boto3, sys
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.put_object(Bucket="data", Key="runs/r/ok", Body=b"1")
    try:
        s3.put_object(Bucket="data", Key="elsewhere", Body=b"1")
    except Exception as exc:
        print(type(exc).__name__, exc)
        sys.exit(3)
""")


def test_a_job_container_acts_as_its_job_role(aws: None):
    with patched_moto() as local, EmulatorEndpoint() as endpoint:
        boto3.client("s3", region_name=REGION).create_bucket(Bucket="data")
        job_role = role("job", allow("s3:PutObject", "arn:aws:s3:::data/runs/*"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update({"AWS_ENDPOINT_URL": endpoint.url, **container_credentials(job_role.role_arn, "Batch job r-train")})
        done = subprocess.run([sys.executable, "-c", JOB], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "AccessDenied" in done.stdout and "s3:PutObject on resource: arn:aws:s3:::data/elsewhere" in done.stdout
    (denial,) = local.iam_denials
    assert "assumed-role/job/Batch-job-r-train" in denial


def test_a_kms_encrypted_topic_needs_both_key_permissions_of_its_publisher(aws: None):
    with patched_moto():
        key = customer_managed_key()
        sns = boto3.client("sns", region_name=REGION)
        topic = sns.create_topic(Name="alerts", Attributes={"KmsMasterKeyId": key})["TopicArn"]
        half = role("half", allow("sns:Publish", topic), allow("kms:GenerateDataKey", key))
        full = role("full", allow("sns:Publish", topic), allow(["kms:GenerateDataKey", "kms:Decrypt"], key))
        with acting_as(half), pytest.raises(ClientError) as denied:
            sns.publish(TopicArn=topic, Message="m")
        with acting_as(full):
            sns.publish(TopicArn=topic, Message="m")
    assert denied.value.response["Error"]["Code"] == "KMSAccessDenied"
    assert f"kms:Decrypt on resource: {key}" in denied.value.response["Error"]["Message"]


def test_an_aws_managed_bucket_key_is_usable_through_s3(aws: None):
    with patched_moto():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="data")
        s3.put_bucket_encryption(Bucket="data", ServerSideEncryptionConfiguration={"Rules": [{
            "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "alias/aws/s3"}}]})
        writer = role("writer", allow(["s3:PutObject", "s3:GetObject"], "arn:aws:s3:::data/*"))
        with acting_as(writer):  # no kms:* in its policy: the AWS managed key's policy lets S3 use it
            s3.put_object(Bucket="data", Key="k", Body=b"x")
            assert s3.get_object(Bucket="data", Key="k")["Body"].read() == b"x"


def test_a_customer_managed_bucket_key_needs_the_callers_kms_permissions(aws: None):
    with patched_moto():
        key = customer_managed_key()
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="data")
        s3.put_bucket_encryption(Bucket="data", ServerSideEncryptionConfiguration={"Rules": [{
            "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}}]})
        writer = role("writer", allow(["s3:PutObject", "s3:GetObject"], "arn:aws:s3:::data/*"),
                      allow("kms:GenerateDataKey", key))
        with acting_as(writer):
            s3.put_object(Bucket="data", Key="k", Body=b"x")
            with pytest.raises(ClientError, match=f"kms:Decrypt on resource: {key}"):
                s3.get_object(Bucket="data", Key="k")


def test_a_request_the_emulation_cannot_decide_fails_and_is_recorded(aws: None):
    with patched_moto() as local:
        caller = role("caller", allow("sns:*"))
        with acting_as(caller), pytest.raises(EmulationError, match="CheckIfPhoneNumberIsOptedOut"):
            boto3.client("sns", region_name=REGION).check_if_phone_number_is_opted_out(phoneNumber="+27115550100")
    assert local.iam_denials and local.iam_denials[0].startswith(
        "undecided: sns:CheckIfPhoneNumberIsOptedOut by test role caller")


def test_a_missing_key_is_not_found_only_for_a_caller_who_may_list_the_bucket(aws: None):
    # S3 answers a read of a missing key with 404 only when the caller has s3:ListBucket, else 403 (HeadObject,
    # GetObject "Permissions"): `storage.exists` and `objects.read_text` rely on the 404.
    with patched_moto() as local:
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="data")
        s3.put_object(Bucket="data", Key="there", Body=b"x")
        getter = role("getter", allow("s3:GetObject", "arn:aws:s3:::data/*"))
        lister = role("lister", allow("s3:GetObject", "arn:aws:s3:::data/*"),
                      allow("s3:ListBucket", "arn:aws:s3:::data"))
        with acting_as(getter):
            assert s3.head_object(Bucket="data", Key="there")["ContentLength"] == 1  # present: GetObject suffices
            with pytest.raises(ClientError) as got:
                s3.get_object(Bucket="data", Key="missing")
            with pytest.raises(ClientError) as headed:
                s3.head_object(Bucket="data", Key="missing")
        with acting_as(lister):
            with pytest.raises(ClientError) as not_found:
                s3.get_object(Bucket="data", Key="missing")
            with pytest.raises(ClientError) as head_not_found:
                s3.head_object(Bucket="data", Key="missing")
    assert got.value.response["Error"]["Code"] == "AccessDenied"
    assert "perform: s3:ListBucket on resource: arn:aws:s3:::data" in got.value.response["Error"]["Message"]
    assert (headed.value.response["Error"]["Code"], headed.value.response["ResponseMetadata"]["HTTPStatusCode"]) \
        == ("403", 403)  # a HEAD answer has no body
    assert len(local.iam_denials) == 2 and all("s3:ListBucket" in d for d in local.iam_denials)
    assert not_found.value.response["Error"]["Code"] == "NoSuchKey"
    assert head_not_found.value.response["Error"]["Code"] == "404"


def test_a_deleted_key_of_a_versioned_kms_bucket_reads_as_missing(aws: None):
    # The data bucket is versioned and SSE-KMS: a deleted key's current version is a delete marker, which has no
    # encryption of its own.
    with patched_moto() as local:
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="data")
        s3.put_bucket_versioning(Bucket="data", VersioningConfiguration={"Status": "Enabled"})
        s3.put_bucket_encryption(Bucket="data", ServerSideEncryptionConfiguration={"Rules": [{
            "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "alias/aws/s3"}}]})
        s3.put_object(Bucket="data", Key="control/stop.json", Body=b"{}")
        s3.delete_object(Bucket="data", Key="control/stop.json")
        reader = role("reader", allow("s3:GetObject", "arn:aws:s3:::data/*"),
                      allow("s3:ListBucket", "arn:aws:s3:::data"))
        with acting_as(reader), pytest.raises(ClientError) as missing:
            s3.get_object(Bucket="data", Key="control/stop.json")
    assert missing.value.response["Error"]["Code"] == "NoSuchKey" and local.iam_denials == []


def test_creating_a_state_machine_with_a_batch_sync_task_checks_its_role(batch_infra: BatchInfra):
    # AWS checks the role passed to CreateStateMachine for the managed rule a `.sync` Batch task needs, even when
    # an administrator creates it (Step Functions, "Policies for AWS Batch").
    no_rule = {"Version": "2012-10-17", "Statement": [
        {**s, "Action": [a for a in s["Action"] if a != "events:PutRule"]} if "events:PutRule" in s["Action"] else s
        for s in TEST_ROLE_POLICY["Statement"]]}
    boto3.client("iam", region_name=REGION).put_role_policy(RoleName="aurax-role", PolicyName="tests",
                                                            PolicyDocument=json.dumps(no_rule))
    definition = {"StartAt": "Train", "States": {"Train": {
        "Type": "Task", "Resource": "arn:aws:states:::batch:submitJob.sync", "End": True,
        "Parameters": {"JobName": "j", "JobQueue": batch_infra.queue, "JobDefinition": "d"}}}}
    sfn = boto3.client("stepfunctions", region_name=REGION)
    with patched_moto() as local:
        with pytest.raises(ClientError) as denied:
            sfn.create_state_machine(name="m", definition=json.dumps(definition), roleArn=batch_infra.role_arn)
        without_sync = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
        sfn.create_state_machine(name="plain", definition=json.dumps(without_sync), roleArn=batch_infra.role_arn)
    message = denied.value.response["Error"]["Message"]
    assert "assumed-role/aurax-role/" in message and "perform: events:PutRule on resource: " \
        f"arn:aws:events:{REGION}:{ACCOUNT}:rule/StepFunctionsGetEventsForBatchJobsRule" in message
    assert len(local.iam_denials) == 1
