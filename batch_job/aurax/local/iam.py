"""IAM in the emulation: every AWS request is authorised as the principal that makes it on AWS, against that
principal's policies as deployed from the template, and a request AWS would deny is denied.

moto checks no IAM policy by default, and its own access control (`moto.iam.access_control`) checks only
signed requests of IAM users or STS sessions, against resource `*` for most services. Here the request is
decided where every request reaches moto (`BotocoreStubber.process_request`: in-process boto3 calls and the
job subprocesses' calls through `endpoint` alike), with moto's own pieces: its request router and parsers
turn the HTTP request into the API operation and its parameters, and its `IAMPolicy` evaluates each policy
of the caller's role (from moto's IAM, where CloudFormation put the translated template's roles).

Who calls (the principal):
- a Lambda handler: its function's execution role, for every request made while it runs
  (`acting_as`, set by the in-process Lambda around the handler; threads it starts inherit it);
- the state machine: its role, for its service integrations (the clients moto's interpreter builds in
  `boto_client_for(..., state_credentials)` make their calls as `state_credentials.role_arn`);
- a Batch job: its job definition's job role (`container_credentials`: the attempt's access key names the
  role's session, as ECS hands a task its role's credentials);
- anything else (tests setting up, `aurax local` and its operator commands): an administrator, not checked.

What a request needs (`required_permissions`): its own IAM action on its resource ARN, plus what AWS
implies for it. Every such AWS rule is a row of `AWS_RULES`, with its documented source.

How it is decided: an explicit Deny in any policy of the role denies; otherwise an Allow allows. For a KMS
key, its key policy must allow the principal or let IAM policies grant it (the account root as principal),
and then the role's policies must allow it; an AWS managed key (`alias/aws/...`) lets every principal of
the account use it through its service. Resource policies (bucket, topic, Lambda permissions) and the
calls services make as service principals (S3 and EventBridge invoking functions) are not evaluated.

A denied request gets the error AWS returns (`AccessDenied...`, naming principal, action and resource), and
is recorded in `IamEnforcement.denials`: `aurax local` and the pipeline tests fail on any denial, even one
the caller swallowed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Self
from unittest import mock
from urllib.parse import unquote, urlparse
from xml.sax.saxutils import escape

from .environ import threads_inherit_context

logger = logging.getLogger(__name__)

ACCOUNT_ID = "123456789012"  # moto's default account


class EmulationError(RuntimeError):
    """The emulation cannot decide a request (an operation or policy element it does not model); the message
    says what to add."""


# --------------------------------------------------------------------------------------------------------------
# Who calls
# --------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Principal:
    """An IAM role acting: `label` says who it is in this stack (a function, the state machine, a job)."""

    role_arn: str
    label: str

    @property
    def role_name(self) -> str:
        return self.role_arn.rsplit("/", 1)[-1]

    @property
    def session_arn(self) -> str:
        """The caller as AWS names it in an AccessDenied message (an assumed-role session)."""
        session = re.sub(r"[^\w+=,.@-]", "-", self.label)[:64]
        return f"arn:aws:sts::{self.role_arn.split(':')[4]}:assumed-role/{self.role_name}/{session}"


_CALLER: ContextVar[Principal | None] = ContextVar("aurax_iam_caller", default=None)


@contextmanager
def acting_as(principal: Principal | None) -> Iterator[None]:
    """Every AWS request made in this context (and in threads started in it) is made as `principal`; None is
    the unchecked administrator (test set-up, the operator, service-side machinery)."""
    token = _CALLER.set(principal)
    try:
        yield
    finally:
        _CALLER.reset(token)


#: Access key id -> principal, for callers identified by their credentials (job containers).
_SESSIONS: dict[str, Principal] = {}
_SESSIONS_LOCK = threading.Lock()


def container_credentials(role_arn: str | None, label: str) -> dict[str, str]:
    """The credentials environment of a job container with job role `role_arn`; without a job role a
    container has none (ECS gives it none), so its first AWS call fails."""
    if not role_arn:
        return {}
    principal = Principal(role_arn, label)
    key = "ASIA" + hashlib.sha256(f"{role_arn}|{label}".encode()).hexdigest()[:16].upper()
    with _SESSIONS_LOCK:
        _SESSIONS[key] = principal
    return {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": "aurax-local-session-secret",
            "AWS_SESSION_TOKEN": f"aurax-local-session-{key}"}


#: Role name -> the template resource whose policies it holds, for the fix a denial suggests.
_TEMPLATE_OWNERS: dict[str, str] = {}


def name_template_roles(physical_ids: dict[str, str], translated: dict[str, Any]) -> dict[str, str]:
    """Remember which template resource each deployed role's policies are written in: a SAM function's or
    state machine's generated role `<Name>Role` is written as `<Name>`'s `Policies`. Returns role logical id ->
    that resource's logical id."""
    resources = translated.get("Resources", {})
    owners: dict[str, str] = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") == "AWS::IAM::Role" and logical_id in physical_ids:
            owner = logical_id.removesuffix("Role")
            generated = owner != logical_id and resources.get(owner, {}).get("Type") in (
                "AWS::Lambda::Function", "AWS::StepFunctions::StateMachine")
            owners[logical_id] = owner if generated else logical_id
            _TEMPLATE_OWNERS[physical_ids[logical_id]] = owners[logical_id]
    return owners


# --------------------------------------------------------------------------------------------------------------
# What a request is
# --------------------------------------------------------------------------------------------------------------

_SCOPE = re.compile(r"Credential=(?P<key>[^/,]+)/\d{8}/(?P<region>[a-z0-9-]+)/(?P<service>[a-z0-9-]+)/aws4_request")
#: SigV4 signing names that are not the botocore service name.
_SERVICE_OF_SIGNING_NAME = {"states": "stepfunctions", "monitoring": "cloudwatch"}
#: botocore service names whose IAM action prefix is not their signing name.
_IAM_PREFIX = {"stepfunctions": "states"}


@dataclass(frozen=True)
class Call:
    """One AWS API request: the operation and its parameters in botocore's names."""

    service: str
    """botocore's service name (`s3`, `dynamodb`, `stepfunctions`, ...)."""
    operation: str
    params: dict[str, Any]
    region: str
    access_key: str
    account: str = ACCOUNT_ID

    @property
    def action(self) -> str:
        """The IAM action of the same name (the Service Authorization Reference's convention)."""
        return f"{_IAM_PREFIX.get(self.service, self.service)}:{self.operation}"

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account}:{resource}"


def parse_request(request: Any) -> Call | None:
    """The API call a signed HTTP request (botocore's `AWSPreparedRequest`) makes; None for an unsigned one.
    A streamed body is read into the request first, so that moto reads the same bytes after this."""
    from moto.core.parse import PROTOCOL_PARSERS
    from moto.core.request import determine_request_protocol, normalize_request
    from moto.core.routing import get_service_router
    from moto.core.utils import get_service_model

    if request.body is not None and hasattr(request.body, "read"):
        request.body = request.body.read()
    normalized = normalize_request(request)
    scope = _SCOPE.search(normalized.headers.get("Authorization", "")) or \
        _SCOPE.search("Credential=" + normalized.args.get("X-Amz-Credential", ""))
    if scope is None:
        return None
    service = _SERVICE_OF_SIGNING_NAME.get(scope["service"], scope["service"])
    operation, uri_params = get_service_router(service).match(normalized)
    protocol = determine_request_protocol(get_service_model(service), normalized.content_type)
    params = PROTOCOL_PARSERS[protocol](operation).parse({
        "method": normalized.method, "values": normalized.values, "headers": normalized.headers,
        "body": normalized.data, "url_path": normalized.path, "url_params": uri_params})
    params.pop("Body", None)
    return Call(service, operation.name, dict(params), scope["region"], scope["key"])


# --------------------------------------------------------------------------------------------------------------
# What a request needs
# --------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Permission:
    action: str
    resource: str
    because: str | None = None
    """Why AWS requires it beyond the call's own action: the rule's name and its source."""
    principal: Principal | None = None
    """The principal that must hold it, when not the caller (a role passed to the service)."""


@dataclass(frozen=True)
class Rule:
    """An AWS rule about what one API operation needs, with where AWS documents it."""

    what: str
    source: str
    needs: Callable[[Call, IamEnforcement], list[Permission]]
    checks_passed_role: bool = False
    """AWS checks the permissions of a role the request passes (so even an administrator's call is checked)."""

    @property
    def because(self) -> str:
        """The rule and its source, as a `Permission.because`."""
        return f"{self.what} ({self.source})"


def _s3_object(bucket: str, key: str) -> str:
    return f"arn:aws:s3:::{bucket}/{key}"


def _s3_bucket(call: Call) -> str:
    return f"arn:aws:s3:::{call.params['Bucket']}"


def _copy_source(call: Call) -> tuple[str, str, str | None]:
    """(bucket, key, version) of CopyObject's / UploadPartCopy's `x-amz-copy-source`."""
    source, _, query = str(call.params["CopySource"]).lstrip("/").partition("?versionId=")
    bucket, _, key = source.partition("/")
    return bucket, unquote(key), query or None


def _s3_read(action: str = "s3:GetObject", *, reads_object: bool = True
             ) -> Callable[[Call, IamEnforcement], list[Permission]]:
    """`action` (its `...Version` form with a version id) on the object; for a read (GetObject, HeadObject) of
    a key that does not exist, also s3:ListBucket on the bucket: without it AWS answers 403 AccessDenied, not
    404, so code that treats "missing" as "absent" fails there."""
    def needs(call: Call, iam: IamEnforcement) -> list[Permission]:
        bucket, key = call.params["Bucket"], call.params["Key"]
        versioned = "Version" if call.params.get("VersionId") else ""
        own = [Permission(action + versioned, _s3_object(bucket, key))]
        if not reads_object or versioned or not iam.s3_key_missing(bucket, key):
            return own
        rule = AWS_RULES[("s3", "missing-key")]
        return [*own, Permission("s3:ListBucket", f"arn:aws:s3:::{bucket}", rule.because)]
    return needs


def _s3_kms(call: Call, iam: IamEnforcement, bucket: str, key: str, actions: tuple[str, ...],
            reading: bool) -> list[Permission]:
    """The KMS permissions of reading (the object's key) or writing (the request's or the bucket's default
    key) an SSE-KMS object."""
    kms_key = iam.s3_object_kms_key(bucket, key) if reading else \
        (call.params.get("SSEKMSKeyId") if call.params.get("ServerSideEncryption") == "aws:kms" else None) \
        or iam.s3_default_kms_key(bucket)
    if kms_key is None:
        return []
    rule = AWS_RULES[("kms", "s3-sse-kms")]
    return [Permission(a, iam.kms_key_arn(call, kms_key), rule.because) for a in actions]


def _s3_write(call: Call, iam: IamEnforcement) -> list[Permission]:
    bucket, key = call.params["Bucket"], call.params["Key"]
    multipart = call.operation != "PutObject"
    kms = ("kms:GenerateDataKey", "kms:Decrypt") if multipart else ("kms:GenerateDataKey",)
    return [Permission("s3:PutObject", _s3_object(bucket, key)), *_s3_kms(call, iam, bucket, key, kms, False)]


def _s3_get(call: Call, iam: IamEnforcement) -> list[Permission]:
    bucket, key = call.params["Bucket"], call.params["Key"]
    return [*_s3_read()(call, iam), *_s3_kms(call, iam, bucket, key, ("kms:Decrypt",), True)]


def _s3_copy(call: Call, iam: IamEnforcement) -> list[Permission]:
    src_bucket, src_key, version = _copy_source(call)
    return [Permission("s3:GetObjectVersion" if version else "s3:GetObject", _s3_object(src_bucket, src_key)),
            *_s3_kms(call, iam, src_bucket, src_key, ("kms:Decrypt",), True), *_s3_write(call, iam)]


def _s3_delete_objects(call: Call, iam: IamEnforcement) -> list[Permission]:
    return [Permission("s3:DeleteObjectVersion" if o.get("VersionId") else "s3:DeleteObject",
                       _s3_object(call.params["Bucket"], o["Key"])) for o in call.params["Delete"]["Objects"]]


def _s3_bucket_action(action: str) -> Callable[[Call, IamEnforcement], list[Permission]]:
    return lambda call, iam: [Permission(action, _s3_bucket(call))]


def _sns_publish(call: Call, iam: IamEnforcement) -> list[Permission]:
    topic = call.params.get("TopicArn") or call.params.get("TargetArn")
    own = Permission("sns:Publish", topic)
    kms_key = iam.sns_topic_kms_key(topic)
    if kms_key is None:
        return [own]
    rule = AWS_RULES[("kms", "sns-publish")]
    key_arn = iam.kms_key_arn(call, kms_key)
    return [own, *(Permission(a, key_arn, rule.because)
                   for a in ("kms:GenerateDataKey", "kms:Decrypt"))]


def _batch_submit(call: Call, iam: IamEnforcement) -> list[Permission]:
    own = [Permission("batch:SubmitJob", _batch_arn(call, "job-queue", call.params["jobQueue"])),
           Permission("batch:SubmitJob", _batch_arn(call, "job-definition", call.params["jobDefinition"]))]
    if not call.params.get("tags"):
        return own
    rule = AWS_RULES[("batch", "tag-on-create")]
    return [*own, Permission("batch:TagResource", call.arn("batch", "job/*"), rule.because)]


def _batch_arn(call: Call, kind: str, name_or_arn: str) -> str:
    return name_or_arn if name_or_arn.startswith("arn:") else call.arn("batch", f"{kind}/{name_or_arn}")


def _state_machine_sync(call: Call, iam: IamEnforcement) -> list[Permission]:
    own = [Permission("states:CreateStateMachine", call.arn("states", f"stateMachine:{call.params['name']}"))]
    definition = str(call.params.get("definition", ""))
    if "arn:aws:states:::batch:submitJob.sync" not in definition:
        return own
    rule = AWS_RULES[("stepfunctions", "batch-sync")]
    role = Principal(call.params["roleArn"], f"state machine {call.params['name']}")
    because = rule.because
    managed_rule = call.arn("events", "rule/StepFunctionsGetEventsForBatchJobsRule")
    return [*own, *(Permission(a, managed_rule, because, role)
                    for a in ("events:PutTargets", "events:PutRule", "events:DescribeRule")),
            Permission("batch:DescribeJobs", "*", because, role),
            Permission("batch:TerminateJob", call.arn("batch", "job/*"), because, role)]


def _dynamodb_transact(call: Call, iam: IamEnforcement) -> list[Permission]:
    actions = {"Put": "dynamodb:PutItem", "Update": "dynamodb:UpdateItem", "Delete": "dynamodb:DeleteItem",
               "ConditionCheck": "dynamodb:ConditionCheckItem", "Get": "dynamodb:GetItem"}
    return [Permission(actions[kind], _table_arn(call, item["TableName"]))
            for entry in call.params["TransactItems"] for kind, item in entry.items()]


def _function_arn(call: Call) -> str:
    function = str(call.params["FunctionName"])
    arn = function if function.startswith("arn:") else call.arn("lambda", f"function:{function}")
    return f"{arn}:{call.params['Qualifier']}" if call.params.get("Qualifier") else arn


def _lambda_invoke(call: Call, iam: IamEnforcement) -> list[Permission]:
    return [Permission("lambda:InvokeFunction", _function_arn(call))]


_S3_PERMISSIONS = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/using-with-s3-policy-actions.html"

#: Every AWS rule this module knows that is not "the action named like the operation, on the resource the
#: request names": the operation's IAM action(s), and the extra permissions AWS requires for it. Keyed by
#: (service, operation); the ("kms", ...), ("batch", "tag-on-create") and ("stepfunctions", "batch-sync") rows
#: are implied by other calls and are referenced from them.
AWS_RULES: dict[tuple[str, str], Rule] = {
    # S3: operations authorised by actions of other names (the "Required permissions" of each operation).
    ("s3", "GetObject"): Rule("GetObject needs s3:GetObject (s3:GetObjectVersion with a version id)",
                              _S3_PERMISSIONS, _s3_get),
    ("s3", "HeadObject"): Rule("HeadObject needs s3:GetObject", "https://docs.aws.amazon.com/AmazonS3/latest/API/"
                               "API_HeadObject.html", _s3_read()),
    ("s3", "PutObject"): Rule("PutObject needs s3:PutObject", _S3_PERMISSIONS, _s3_write),
    ("s3", "CreateMultipartUpload"): Rule("multipart uploads need s3:PutObject", "https://docs.aws.amazon.com/"
                                          "AmazonS3/latest/userguide/mpuoverview.html#mpuAndPermissions", _s3_write),
    ("s3", "UploadPart"): Rule("multipart uploads need s3:PutObject", "https://docs.aws.amazon.com/AmazonS3/"
                               "latest/userguide/mpuoverview.html#mpuAndPermissions", _s3_write),
    ("s3", "CompleteMultipartUpload"): Rule("multipart uploads need s3:PutObject", "https://docs.aws.amazon.com/"
                                            "AmazonS3/latest/userguide/mpuoverview.html#mpuAndPermissions", _s3_write),
    ("s3", "AbortMultipartUpload"): Rule("AbortMultipartUpload needs s3:AbortMultipartUpload", _S3_PERMISSIONS,
                                         lambda c, i: [Permission("s3:AbortMultipartUpload",
                                                                  _s3_object(c.params["Bucket"], c.params["Key"]))]),
    ("s3", "ListParts"): Rule("ListParts needs s3:ListMultipartUploadParts", _S3_PERMISSIONS,
                              lambda c, i: [Permission("s3:ListMultipartUploadParts",
                                                       _s3_object(c.params["Bucket"], c.params["Key"]))]),
    ("s3", "CopyObject"): Rule("CopyObject needs s3:GetObject on the source and s3:PutObject on the target",
                               "https://docs.aws.amazon.com/AmazonS3/latest/API/API_CopyObject.html", _s3_copy),
    ("s3", "UploadPartCopy"): Rule("UploadPartCopy needs s3:GetObject on the source and s3:PutObject on the "
                                   "target", "https://docs.aws.amazon.com/AmazonS3/latest/API/API_UploadPartCopy.html",
                                   _s3_copy),
    ("s3", "DeleteObject"): Rule("DeleteObject needs s3:DeleteObject (s3:DeleteObjectVersion with a version id)",
                                 _S3_PERMISSIONS, _s3_read("s3:DeleteObject", reads_object=False)),
    ("s3", "DeleteObjects"): Rule("DeleteObjects needs s3:DeleteObject on every key", "https://docs.aws.amazon.com/"
                                  "AmazonS3/latest/API/API_DeleteObjects.html", _s3_delete_objects),
    ("s3", "ListObjects"): Rule("listing objects needs s3:ListBucket", _S3_PERMISSIONS, _s3_bucket_action(
        "s3:ListBucket")),
    ("s3", "ListObjectsV2"): Rule("listing objects needs s3:ListBucket", _S3_PERMISSIONS, _s3_bucket_action(
        "s3:ListBucket")),
    ("s3", "ListObjectVersions"): Rule("ListObjectVersions needs s3:ListBucketVersions", _S3_PERMISSIONS,
                                       _s3_bucket_action("s3:ListBucketVersions")),
    ("s3", "HeadBucket"): Rule("HeadBucket needs s3:ListBucket", "https://docs.aws.amazon.com/AmazonS3/latest/API/"
                               "API_HeadBucket.html", _s3_bucket_action("s3:ListBucket")),
    ("s3", "GetBucketLocation"): Rule("GetBucketLocation needs s3:GetBucketLocation", _S3_PERMISSIONS,
                                      _s3_bucket_action("s3:GetBucketLocation")),
    # Implied: what a read of a missing key needs to be answered "not found".
    ("s3", "missing-key"): Rule(
        "reading a key that does not exist (GetObject, HeadObject) is answered 404 only to a caller with "
        "s3:ListBucket on the bucket, 403 AccessDenied to any other",
        "https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html", lambda c, i: []),
    # Implied: KMS keys behind encrypted resources.
    ("kms", "s3-sse-kms"): Rule(
        "an SSE-KMS object needs kms:GenerateDataKey to write (and kms:Decrypt for multipart uploads) and "
        "kms:Decrypt to read", "https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingKMSEncryption.html",
        lambda c, i: []),
    ("kms", "sns-publish"): Rule(
        "publishing to a KMS-encrypted topic needs kms:GenerateDataKey and kms:Decrypt on its key",
        "https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html", lambda c, i: []),
    ("kms", "key-policy"): Rule(
        "an IAM policy grants use of a KMS key only when the key policy allows IAM policies to (the account root "
        "as principal); AWS managed keys (alias/aws/...) are usable by the account's principals through their "
        "service", "https://docs.aws.amazon.com/kms/latest/developerguide/key-policies.html", lambda c, i: []),
    ("sns", "Publish"): Rule("publishing to an encrypted topic uses its key", "https://docs.aws.amazon.com/sns/"
                             "latest/dg/sns-key-management.html", _sns_publish),
    # Implied: tags on create and the .sync integration's managed rule.
    ("batch", "tag-on-create"): Rule(
        "SubmitJob with tags also needs batch:TagResource (tags on create)",
        "https://docs.aws.amazon.com/batch/latest/userguide/tag-resources.html",
        lambda c, i: []),
    ("batch", "SubmitJob"): Rule("SubmitJob needs batch:SubmitJob on the queue and the job definition",
                                 "https://docs.aws.amazon.com/service-authorization/latest/reference/"
                                 "list_awsbatch.html", _batch_submit),
    ("stepfunctions", "batch-sync"): Rule(
        "a state machine with a Batch .sync task needs its role to hold events:PutTargets, PutRule and "
        "DescribeRule on the managed rule StepFunctionsGetEventsForBatchJobsRule (AWS checks them when the "
        "state machine is created), batch:DescribeJobs to wait and batch:TerminateJob to stop the job when the "
        "execution stops (SubmitJob is checked on each submission)",
        "https://docs.aws.amazon.com/step-functions/latest/dg/batch-iam.html", lambda c, i: []),
    ("stepfunctions", "CreateStateMachine"): Rule("creating a state machine checks its role for the .sync "
                                                  "integrations it uses", "https://docs.aws.amazon.com/"
                                                  "step-functions/latest/dg/batch-iam.html", _state_machine_sync,
                                                  checks_passed_role=True),
    # Operations authorised by actions of other names.
    ("dynamodb", "TransactWriteItems"): Rule("a transaction needs the action of each of its items",
                                             "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/"
                                             "transaction-apis-iam.html", _dynamodb_transact),
    ("dynamodb", "TransactGetItems"): Rule("a transaction needs the action of each of its items",
                                           "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/"
                                           "transaction-apis-iam.html", _dynamodb_transact),
    ("lambda", "Invoke"): Rule("Invoke needs lambda:InvokeFunction", "https://docs.aws.amazon.com/lambda/latest/"
                               "dg/lambda-api-permissions-ref.html", _lambda_invoke),
}


def _table_arn(call: Call, table: str) -> str:
    return table if table.startswith("arn:") else call.arn("dynamodb", f"table/{table}")


def _events_rule_arn(call: Call) -> str:
    bus = str(call.params.get("EventBusName") or "default").rsplit("/", 1)[-1]
    name = call.params["Name"] if "Name" in call.params else call.params["Rule"]
    return call.arn("events", f"rule/{name}" if bus == "default" else f"rule/{bus}/{name}")


def _resources(call: Call) -> list[str]:
    """The resource ARNs a call acts on, by the Service Authorization Reference's resource types; `*` for
    actions without resource-level permissions."""
    p = call.params
    match call.service:
        case "dynamodb":
            if "TableName" in p:
                arn = _table_arn(call, p["TableName"])
                return [f"{arn}/index/{p['IndexName']}" if p.get("IndexName") else arn]
            if "RequestItems" in p:
                return [_table_arn(call, table) for table in p["RequestItems"]]
            if call.operation in ("ListTables", "DescribeLimits", "DescribeEndpoints"):
                return ["*"]
        case "sns":
            if p.get("TopicArn") or p.get("TargetArn"):
                return [p.get("TopicArn") or p.get("TargetArn")]
            if call.operation == "CreateTopic":
                return [call.arn("sns", p["Name"])]
            if call.operation.startswith("List"):
                return ["*"]
        case "events":
            if call.operation == "PutEvents":
                return sorted({e.get("EventBusName") if str(e.get("EventBusName", "")).startswith("arn:") else
                               call.arn("events", f"event-bus/{e.get('EventBusName') or 'default'}")
                               for e in p["Entries"]})
            if "Name" in p or "Rule" in p:
                return [_events_rule_arn(call)]
        case "batch":
            if "jobId" in p:
                return [call.arn("batch", f"job/{p['jobId']}")]
            if "resourceArn" in p:
                return [p["resourceArn"]]
            if call.operation.startswith(("Describe", "List")):
                return ["*"]
        case "lambda":
            if "FunctionName" in p:
                return [_function_arn(call)]
            if call.operation.startswith("List"):
                return ["*"]
        case "stepfunctions":
            for name in ("executionArn", "stateMachineArn", "activityArn"):
                if name in p:
                    return [p[name]]
            if call.operation.startswith("List") or call.operation in ("SendTaskSuccess", "SendTaskFailure",
                                                                       "SendTaskHeartbeat"):
                return ["*"]
        case "ec2" | "cloudwatch":
            if call.operation.startswith(("Describe", "Get", "List")) or call.operation == "PutMetricData":
                return ["*"]
        case "sqs":
            if "QueueUrl" in p:
                account, name = urlparse(p["QueueUrl"]).path.strip("/").split("/")[-2:]
                return [f"arn:aws:sqs:{call.region}:{account}:{name}"]
        case "kms":
            if "KeyId" in p:
                return [p["KeyId"]]
        case "s3":
            raise EmulationError(f"aurax local does not know which IAM action authorises s3:{call.operation}; add "
                                 "a row for it to AWS_RULES in aurax/local/iam.py with AWS's documented rule")
    raise EmulationError(f"aurax local does not know which resource {call.action} acts on; add it to _resources in "
                         "aurax/local/iam.py (from the Service Authorization Reference)")


def required_permissions(call: Call, iam: IamEnforcement) -> list[Permission]:
    """Everything `call` needs, by `AWS_RULES` when the operation has a row there, else its own action on the
    resources it names."""
    if call.service == "sts" and call.operation == "GetCallerIdentity":
        return []  # AWS allows it to everyone, whatever the policies say
    rule = AWS_RULES.get((call.service, call.operation))
    if rule is not None:
        return rule.needs(call, iam)
    return [Permission(call.action, resource) for resource in _resources(call)]


# --------------------------------------------------------------------------------------------------------------
# Deciding
# --------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Denial:
    principal: Principal
    permission: Permission
    reason: str
    fix: str

    @property
    def message(self) -> str:
        """AWS's AccessDenied wording, then what aurax local knows about it."""
        p = self.permission
        text = (f"User: {self.principal.session_arn} is not authorized to perform: {p.action} on resource: "
                f"{p.resource} because {self.reason}. [aurax local: the caller is {self.principal.label} (role "
                f"{self.principal.role_name})")
        if p.because:
            text += f"; needed because {p.because}"
        return text + f"; fix: {self.fix}]"


def _lowercase_actions(statement: dict[str, Any]) -> dict[str, Any]:
    """IAM action names are case-insensitive; moto's matcher is not."""
    out = dict(statement)
    for key in ("Action", "NotAction"):
        if key in out:
            value = out[key]
            out[key] = [a.lower() for a in value] if isinstance(value, list) else str(value).lower()
    return out


def _evaluate(documents: list[tuple[str, Any]], action: str, resource: str) -> str:
    """"deny" (an explicit Deny), "allow" or "implicit" (nothing allows it), by moto's `IAMPolicy`."""
    from moto.iam.access_control import IAMPolicy, PermissionResult

    allowed = False
    for name, document in documents:
        policy = json.loads(document) if isinstance(document, str) else document
        statements = policy["Statement"] if isinstance(policy["Statement"], list) else [policy["Statement"]]
        for statement in statements:
            unsupported = {"Condition", "NotResource", "NotPrincipal"} & set(statement)
            if unsupported:
                raise EmulationError(f"policy {name} has {sorted(unsupported)} in a statement; aurax local does not "
                                     "evaluate those: extend _evaluate in aurax/local/iam.py before using them")
        lowered = {**policy, "Statement": [_lowercase_actions(s) for s in statements]}
        result = IAMPolicy(json.dumps(lowered)).is_action_permitted(action.lower(), resource)
        if result == PermissionResult.DENIED:
            return "deny"
        allowed = allowed or result == PermissionResult.PERMITTED
    return "allow" if allowed else "implicit"


def _covers(statement: dict[str, Any], action: str) -> bool:
    """Whether a statement's Action (or NotAction) covers `action`, by moto's matcher."""
    from moto.iam.access_control import IAMPolicyStatement

    element = "Action" if "Action" in statement else "NotAction"
    matches = IAMPolicyStatement(_lowercase_actions(statement))._check_element_matches(element, action.lower())
    return matches if element == "Action" else not matches


def _principal_matches(value: Any, arns: set[str]) -> bool:
    values = value.get("AWS", []) if isinstance(value, dict) else value
    values = values if isinstance(values, list) else [values]
    return any(v == "*" or v in arns for v in values)


class IamEnforcement:
    """Decides every request reaching moto (see the module docstring). A context manager: entering installs
    the check and the principal hooks, leaving removes them."""

    def __init__(self) -> None:
        self.denials: list[Denial] = []
        self.undecided: list[str] = []
        """Requests of a principal the emulation could not decide (`EmulationError`): they fail too."""
        self._stack = ExitStack()
        self._lock = threading.Lock()

    # -- installing ------------------------------------------------------------------------------------------
    def __enter__(self) -> Self:
        from moto.core.botocore_stubber import BotocoreStubber

        original = BotocoreStubber.process_request
        enforcement = self

        def process_request(stubber: Any, request: Any) -> Any:
            if stubber.enabled:
                denied = enforcement.check(request)
                if denied is not None:
                    return denied
            return original(stubber, request)

        self._stack.enter_context(mock.patch.object(BotocoreStubber, "process_request", process_request))
        self._stack.enter_context(threads_inherit_context())
        for patch in _state_machine_client_patches():
            self._stack.enter_context(patch)
        self._stack.callback(_SESSIONS.clear)
        self._stack.callback(_TEMPLATE_OWNERS.clear)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    # -- principals ------------------------------------------------------------------------------------------
    @staticmethod
    def _caller(call: Call) -> Principal | None:
        return _SESSIONS.get(call.access_key) or _CALLER.get()

    # -- the check -------------------------------------------------------------------------------------------
    def check(self, request: Any) -> tuple[int, dict[str, str], bytes] | None:
        """None when the request may go on, else the error response AWS would give."""
        try:
            call = parse_request(request)
        except Exception as exc:  # noqa: BLE001 - moto itself will answer a request it cannot route
            logger.debug("aurax iam: not routed (%s): %s %s", exc, request.method, request.url)
            return None
        if call is None:
            return None
        caller = self._caller(call)
        rule = AWS_RULES.get((call.service, call.operation))
        if caller is None and not (rule is not None and rule.checks_passed_role):
            return None
        try:
            denial = next((d for p in required_permissions(call, self) if (p.principal or caller) is not None
                           and (d := self.decide(p.principal or caller, p, call)) is not None), None)
        except EmulationError as exc:
            with self._lock:
                self.undecided.append(f"{call.action} by {caller.label if caller else 'the operator'}: {exc}")
            logger.error("aurax local cannot decide %s: %s", call.action, exc)
            raise
        if denial is None:
            return None
        with self._lock:
            self.denials.append(denial)
        logger.error("AccessDenied: %s", denial.message)
        return _error_response(call, denial)

    def decide(self, principal: Principal, permission: Permission, call: Call) -> Denial | None:
        role = self._role(principal.role_arn)
        if role is None:
            return Denial(principal, permission, "the role does not exist",
                          f"create the role {principal.role_arn} (is its logical id right in template.yaml?)")
        documents = [(f"{role.name}/{name}", doc) for name, doc in role.policies.items()] + [
            (policy.arn, _default_version(policy)) for policy in role.managed_policies.values()]
        identity = _evaluate(documents, permission.action, permission.resource)
        if identity == "deny":
            return Denial(principal, permission, "an explicit deny in an identity-based policy denies it",
                          f"remove the Deny of {permission.action} from {self._where(principal)}")
        if permission.action.startswith("kms:"):
            return self._decide_kms(principal, permission, call, identity)
        if identity == "allow":
            return None
        return Denial(principal, permission, f"no identity-based policy allows the {permission.action} action",
                      self._fix(principal, permission))

    def _decide_kms(self, principal: Principal, permission: Permission, call: Call, identity: str) -> Denial | None:
        key = self._kms_key(call, permission.resource)
        if key is None:
            return Denial(principal, permission, "the key does not exist", "create the key the resource names")
        if any(alias.startswith("alias/aws/") for alias in key.aliases):
            return None  # an AWS managed key: its key policy lets the account use it through its service
        policy = json.loads(key.policy) if isinstance(key.policy, str) else key.policy
        statements = policy["Statement"] if isinstance(policy["Statement"], list) else [policy["Statement"]]
        root = {f"arn:aws:iam::{call.account}:root", call.account}
        direct = delegated = False
        for statement in statements:
            if not _covers(statement, permission.action):
                continue
            if "Condition" in statement:
                continue  # conditional grants (service principals, encryption context) are not this caller's
            if _principal_matches(statement.get("Principal", {}), {principal.role_arn}):
                if statement["Effect"] == "Deny":
                    return Denial(principal, permission, "the key policy denies it",
                                  f"remove the Deny from the key policy of {permission.resource}")
                direct = True
            elif _principal_matches(statement.get("Principal", {}), root) and statement["Effect"] == "Allow":
                delegated = True
        rule = AWS_RULES[("kms", "key-policy")]
        if direct or (delegated and identity == "allow"):
            return None
        if delegated:
            return Denial(principal, permission, f"no identity-based policy allows the {permission.action} action",
                          self._fix(principal, permission))
        return Denial(principal, permission, "the key policy neither allows the caller nor lets IAM policies grant "
                      f"it ({rule.what}; {rule.source})",
                      f"add a statement for {principal.role_arn} (or the account root) to the key policy")

    # -- what the emulation knows about resources --------------------------------------------------------------
    @staticmethod
    def _role(role_arn: str) -> Any:
        from moto.iam.models import iam_backends

        backend = iam_backends[role_arn.split(":")[4] or ACCOUNT_ID]["aws"]
        try:
            return backend.get_role_by_arn(role_arn)
        except Exception:  # noqa: BLE001 - moto raises its own NotFound types
            return None

    @staticmethod
    def _kms_backend(region: str, account: str) -> Any:
        from moto.kms.models import kms_backends

        return kms_backends[account][region]

    def _kms_key(self, call: Call, key_arn: str) -> Any:
        backend = self._kms_backend(call.region, call.account)
        try:
            return backend.describe_key(key_arn)
        except Exception:  # noqa: BLE001
            return None

    def kms_key_arn(self, call: Call, key: str) -> str:
        """The key ARN behind an id, ARN, alias or alias ARN (moto creates AWS managed keys on first use); an
        unknown key stays as named (deciding on it then says so)."""
        found = self._kms_key(call, key)
        return str(found.arn) if found is not None else key

    @staticmethod
    def sns_topic_kms_key(topic_arn: str) -> str | None:
        from moto.sns.models import sns_backends

        _, _, _, region, account, _ = topic_arn.split(":", 5)
        topic = sns_backends[account][region].topics.get(topic_arn)
        return (topic.kms_master_key_id or None) if topic is not None else None

    @staticmethod
    def _bucket(bucket: str) -> Any:
        from moto.s3.models import s3_backends

        return s3_backends[ACCOUNT_ID]["aws"].buckets.get(bucket)

    def s3_default_kms_key(self, bucket: str) -> str | None:
        found = self._bucket(bucket)
        rule = ((found.encryption or {}).get("Rule") or {}) if found is not None else {}
        default = rule.get("ApplyServerSideEncryptionByDefault") or {}
        return default.get("KMSMasterKeyID") or ("alias/aws/s3" if default.get("SSEAlgorithm") == "aws:kms" else None)

    def _s3_current(self, bucket: str, key: str) -> tuple[bool, Any]:
        """(whether the bucket exists, the key's current object or None): None also when the current version
        is a delete marker (a versioned bucket's deleted key, which GetObject answers as missing)."""
        from moto.s3.models import FakeDeleteMarker

        found = self._bucket(bucket)
        if found is None:
            return False, None
        obj = found.keys.get(key)
        return True, None if isinstance(obj, FakeDeleteMarker) else obj

    def s3_key_missing(self, bucket: str, key: str) -> bool:
        """The bucket exists and the key has no current object."""
        exists, obj = self._s3_current(bucket, key)
        return exists and obj is None

    def s3_object_kms_key(self, bucket: str, key: str) -> str | None:
        obj = self._s3_current(bucket, key)[1]
        if obj is None or obj.encryption != "aws:kms":
            return None
        return obj.kms_key_id or "alias/aws/s3"

    # -- messages --------------------------------------------------------------------------------------------
    @staticmethod
    def _where(principal: Principal) -> str:
        owner = _TEMPLATE_OWNERS.get(principal.role_name)
        return f"{owner}'s Policies in template.yaml" if owner else f"the policies of role {principal.role_name}"

    def _fix(self, principal: Principal, permission: Permission) -> str:
        resource = permission.resource
        if resource.startswith("arn:aws:s3:::") and "/" in resource:  # a grant is for a prefix, not one key
            resource = resource.split("/", 1)[0] + "/*"
        statement = json.dumps({"Effect": "Allow", "Action": permission.action, "Resource": resource})
        return f"add to {self._where(principal)}: - Statement: [{statement}]"


def _default_version(policy: Any) -> str:
    return str(next(v.document for v in policy.versions if v.is_default))


def _state_machine_client_patches() -> list[Any]:
    """moto's interpreter builds each service-integration client with `boto_client_for(region, service,
    state_credentials)`; every module that imported it gets one whose calls act as the state's role."""
    import sys

    # The parser imports every state and service-integration module: all of them are loaded before the scan.
    import moto.stepfunctions.parser.asl.parse.asl_parser  # noqa: F401
    from moto.stepfunctions.parser.asl.utils import boto_client

    original = boto_client.boto_client_for

    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        client = original(region=region, service=service, state_credentials=state_credentials)
        role = getattr(state_credentials, "role_arn", None)
        if role:
            principal = Principal(role, f"state machine role {role.rsplit('/', 1)[-1]}")
            make_api_call = client._make_api_call

            def make_api_call_as_role(operation_name: str, api_params: dict[str, Any]) -> Any:
                with acting_as(principal):
                    return make_api_call(operation_name, api_params)

            client._make_api_call = make_api_call_as_role
        return client

    return [mock.patch.object(module, "boto_client_for", boto_client_for)
            for module in list(sys.modules.values())
            if getattr(module, "boto_client_for", None) is original]


def _error_response(call: Call, denial: Denial) -> tuple[int, dict[str, str], bytes]:
    """The AccessDenied error in the service's protocol, as botocore parses it into a ClientError."""
    from moto.core.utils import get_service_model

    message = denial.message
    protocol = get_service_model(call.service).protocol
    request_id = {"x-amzn-RequestId": f"aurax-local-{uuid.uuid4()}"}
    kms = denial.permission.action.startswith("kms:")
    if call.service == "sns":
        code = "KMSAccessDenied" if kms else "AuthorizationError"
        body = (f'<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><Error><Type>Sender</Type>'
                f"<Code>{code}</Code><Message>{escape(message)}</Message></Error><RequestId>aurax-local</RequestId>"
                "</ErrorResponse>")
        return 403, {"Content-Type": "text/xml", **request_id}, body.encode()
    if protocol == "rest-xml":
        # A HEAD response has no body: the caller sees only the status (botocore's code "403", "Forbidden").
        body = "" if call.operation.startswith("Head") else \
            f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code><Message>{escape(message)}" \
            "</Message></Error>"
        return 403, {"Content-Type": "application/xml", "x-amz-request-id": request_id["x-amzn-RequestId"]}, \
            body.encode()
    if protocol in ("query", "ec2"):
        code = "UnauthorizedOperation" if protocol == "ec2" else "AccessDenied"
        body = (f"<Response><Errors><Error><Code>{code}</Code><Message>{escape(message)}</Message></Error></Errors>"
                "<RequestID>aurax-local</RequestID></Response>") if protocol == "ec2" else (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{escape(message)}</Message>"
            "</Error><RequestId>aurax-local</RequestId></ErrorResponse>")
        return 403, {"Content-Type": "text/xml", **request_id}, body.encode()
    body = json.dumps({"__type": "AccessDeniedException", "message": message, "Message": message})
    return (400 if protocol == "json" else 403), {"Content-Type": "application/x-amz-json-1.1",
                                                   "x-amzn-ErrorType": "AccessDeniedException", **request_id}, \
        body.encode()
