"""Deploy `template.yaml` into the in-process AWS emulation (moto), as CloudFormation would on AWS.

1. Translate the SAM template offline with aws-sam-translator (moto's CloudFormation ignores the `Transform`).
   Each function's `CodeUri` and the layer's `ContentUri` become zips uploaded to an artefacts bucket, and the
   state machine's `DefinitionUri` is inlined.
2. Create the VPC, subnet and security group Batch needs (stack parameters on AWS) and Batch's
   service-linked role (AWS creates it on first use; moto's CloudFormation requires it), rewrite the few
   properties moto reads in another form (`_adapt_for_moto`), then `create_stack`.
3. Fill what moto's CloudFormation leaves out, from the same template: the data bucket's versioning and its
   notification to the metrics monitor; and the state machine itself, created again from the same ASL with
   its `DefinitionSubstitutions` filled from the stack's physical ids, in moto's executing backend.

Everything here must run inside `mock_aws(config=MOTO_CONFIG)`.
"""

from __future__ import annotations

import copy
import functools
import io
import json
import logging
import re
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import yaml

from .iam import name_template_roles

logger = logging.getLogger(__name__)

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account
ARTEFACTS_BUCKET = "aurax-local-artefacts"
#: The image URI the job definitions name; locally the jobs run from this checkout instead.
LOCAL_IMAGE_URI = f"{ACCOUNT_ID}.dkr.ecr.{REGION}.amazonaws.com/aurax-job:local"


class StackError(RuntimeError):
    """The template could not be deployed into the emulation; the message says what and how to fix it."""


class _CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation's short-form tags (!Ref, !Sub, !GetAtt, ...) as their long form."""


def _construct_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: Path) -> dict[str, Any]:
    try:
        return yaml.load(path.read_text(), Loader=_CfnLoader)
    except OSError as exc:
        raise StackError(f"cannot read the template {path}: {exc.strerror}; run from the repository root "
                         "or pass --template") from exc


def _zip_folder(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                archive.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()


@dataclass
class LocalStack:
    """The deployed stack: its outputs and the physical ids the local run needs."""

    name: str
    outputs: dict[str, str]
    resources: dict[str, str]
    """Logical id -> physical id."""
    functions: dict[str, str] = field(default_factory=dict)
    """Logical id -> function name, for every function."""
    schedules: dict[str, str] = field(default_factory=dict)
    """Logical id of a scheduled function -> its schedule expression (moto does not fire them)."""
    parameters: dict[str, str] = field(default_factory=dict)

    @property
    def bucket(self) -> str:
        return self.outputs["DataBucketName"]

    @property
    def state_machine_arn(self) -> str:
        return self.outputs["StateMachineArn"]


def _upload_code(template: dict[str, Any], root: Path, overrides: Mapping[str, Path]) -> None:
    """Point every CodeUri / ContentUri at a zip of its folder in the artefacts bucket."""
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=ARTEFACTS_BUCKET)
    for logical_id, resource in template["Resources"].items():
        key = {"AWS::Serverless::Function": "CodeUri", "AWS::Serverless::LayerVersion": "ContentUri"}.get(
            resource.get("Type", ""))
        if key is None:
            continue
        properties = resource.setdefault("Properties", {})
        folder = overrides.get(logical_id) or root / str(properties.get(key, ""))
        if not folder.is_dir():
            raise StackError(f"{logical_id}: {key} {folder} is not a folder; write the function's code there "
                             "(see template.yaml) before running aurax local")
        s3.put_object(Bucket=ARTEFACTS_BUCKET, Key=f"{logical_id}.zip", Body=_zip_folder(folder))
        properties[key] = f"s3://{ARTEFACTS_BUCKET}/{logical_id}.zip"


def _inline_definitions(template: dict[str, Any], root: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    """Inline each state machine's DefinitionUri; returns logical id -> (ASL text, substitutions)."""
    machines = {}
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") != "AWS::Serverless::StateMachine":
            continue
        properties = resource["Properties"]
        asl = (root / properties.pop("DefinitionUri")).read_text()
        properties["Definition"] = json.loads(asl)
        machines[logical_id] = (asl, dict(properties.get("DefinitionSubstitutions", {})))
    return machines


def _translate(template: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    from samtranslator.translator.transform import transform

    class NoManagedPolicies:
        """The translator looks up AWS managed policies; offline there are none to find."""

        def load(self) -> dict[str, str]:
            return {}

    try:
        return transform(template, parameters, NoManagedPolicies())  # type: ignore[arg-type]
    except Exception as exc:  # samtranslator raises its own InvalidDocumentException with causes
        causes = getattr(exc, "causes", None) or [exc]
        raise StackError("template.yaml does not translate: " + "; ".join(str(c) for c in causes)) from exc


def _network() -> tuple[str, str]:
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.42.0.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="aurax-local", Description="aurax local", VpcId=vpc)["GroupId"]
    return subnet, group


def _adapt_for_moto(translated: dict[str, Any]) -> None:
    """Where moto's CloudFormation reads a property differently from AWS, rewrite it in the form moto reads
    (same meaning):
    - an `AWS::Events::Archive`'s `EventPattern` must be a JSON string (AWS also takes an object);
    - an `AWS::Batch::ComputeEnvironment` needs `ServiceRole` (optional on AWS: the service-linked role, which
      AWS creates on first use and which is created here);
    - `Ref` to an `AWS::Events::EventBus` yields moto's object, not the bus name: each such `Ref` is replaced
      by the bus's `Name` property (what `Ref` returns on AWS).
    """
    buses = {logical_id: resource["Properties"]["Name"] for logical_id, resource in translated["Resources"].items()
             if resource.get("Type") == "AWS::Events::EventBus"}

    def replace_bus_refs(value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {"Ref"} and value["Ref"] in buses:
                return buses[value["Ref"]]
            return {k: replace_bus_refs(v) for k, v in value.items()}
        if isinstance(value, list):
            return [replace_bus_refs(v) for v in value]
        return value

    translated["Resources"] = replace_bus_refs(translated["Resources"])
    translated["Outputs"] = replace_bus_refs(translated.get("Outputs", {}))
    for resource in translated["Resources"].values():
        properties = resource.get("Properties", {})
        if resource.get("Type") == "AWS::Events::Archive" and isinstance(properties.get("EventPattern"), dict):
            properties["EventPattern"] = json.dumps(properties["EventPattern"])
    _batch_service_role(translated)


def _batch_service_role(translated: dict[str, Any]) -> None:
    role = boto3.client("iam", region_name=REGION).create_role(
        RoleName="AWSServiceRoleForBatch", Path="/aws-service-role/batch.amazonaws.com/",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "batch.amazonaws.com"}, "Action": "sts:AssumeRole"}]}))
    for resource in translated["Resources"].values():
        if resource.get("Type") == "AWS::Batch::ComputeEnvironment":
            resource["Properties"].setdefault("ServiceRole", role["Role"]["Arn"])


def _resolve(value: Any, resources: dict[str, str], functions_arn: dict[str, str], stack: LocalStack) -> Any:
    """Resolve the intrinsic functions a DefinitionSubstitutions value uses (Ref, GetAtt .Arn, Sub)."""
    if isinstance(value, str):
        return value
    if "Ref" in value:
        return resources[value["Ref"]]
    if "Fn::GetAtt" in value:
        logical_id, attribute = value["Fn::GetAtt"]
        if attribute == "Arn" and logical_id in functions_arn:
            return functions_arn[logical_id]
        raise StackError(f"aurax local cannot resolve GetAtt {logical_id}.{attribute} in DefinitionSubstitutions")
    if "Fn::Sub" in value:
        text = value["Fn::Sub"]
        variables = {"AWS::AccountId": ACCOUNT_ID, "AWS::Region": REGION, "AWS::Partition": "aws",
                     **stack.parameters}
        for name, replacement in variables.items():
            text = text.replace("${" + name + "}", str(replacement))
        return text
    raise StackError(f"aurax local cannot resolve {value} in DefinitionSubstitutions")


def _substitute(asl: str, substitutions: dict[str, str]) -> str:
    for name, value in substitutions.items():
        asl = asl.replace("${" + name + "}", value)
    return asl


def _bucket_extras(translated: dict[str, Any], stack: LocalStack, functions_arn: dict[str, str]) -> None:
    """Versioning and Lambda notifications of every bucket in the template (moto's CFN skips both)."""
    s3 = boto3.client("s3", region_name=REGION)
    for logical_id, resource in translated["Resources"].items():
        if resource.get("Type") != "AWS::S3::Bucket":
            continue
        bucket = stack.resources[logical_id]
        properties = resource.get("Properties", {})
        if properties.get("VersioningConfiguration", {}).get("Status") == "Enabled":
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        configs = []
        for config in properties.get("NotificationConfiguration", {}).get("LambdaConfigurations", []):
            function = config["Function"]
            arn = functions_arn[function["Fn::GetAtt"][0]] if isinstance(function, dict) else function
            rules = config.get("Filter", {}).get("S3Key", {}).get("Rules", [])
            entry: dict[str, Any] = {"LambdaFunctionArn": arn, "Events": [config["Event"]]}
            if rules:
                entry["Filter"] = {"Key": {"FilterRules": [{"Name": r["Name"], "Value": r["Value"]} for r in rules]}}
            configs.append(entry)
        if configs:
            s3.put_bucket_notification_configuration(
                Bucket=bucket, NotificationConfiguration={"LambdaFunctionConfigurations": configs})


def deploy(template_path: Path, stack_name: str = "aurax-local", *, deployment_name: str = "local",
           code_overrides: Mapping[str, Path] | None = None, budget_usd: float = 600.0,
           template: dict[str, Any] | None = None) -> LocalStack:
    """Deploy the template into the emulation. `code_overrides` maps a function's logical id to another code
    folder (tests deploy stub handlers with it); `template`, when given, is deployed instead of the file's
    content (tests deploy an edited copy), with paths still relative to `template_path`'s folder."""
    root = template_path.resolve().parent
    template = copy.deepcopy(template) if template is not None else load_template(template_path)
    _upload_code(template, root, code_overrides or {})
    machines = _inline_definitions(template, root)
    subnet, group = _network()
    parameters = {"DeploymentName": deployment_name, "JobImageUri": LOCAL_IMAGE_URI, "SubnetIds": subnet,
                  "SecurityGroupIds": group, "AlertEmail": "", "BudgetUSD": str(budget_usd)}
    declared = template.get("Parameters", {})
    parameters = {k: v for k, v in parameters.items() if k in declared}
    # moto splits a list parameter's value only when it is passed, not its default: pass the defaults.
    parameters.update({k: str(p["Default"]) for k, p in declared.items()
                       if "List" in p.get("Type", "") and "Default" in p and k not in parameters})
    translated = _translate(template, {**parameters, "AWS::Region": REGION, "AWS::AccountId": ACCOUNT_ID})

    _adapt_for_moto(translated)
    cfn = boto3.client("cloudformation", region_name=REGION)
    with _quiet_moto():
        cfn.create_stack(StackName=stack_name, TemplateBody=json.dumps(translated),
                         Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
                         Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"])
        stack = _described(cfn, stack_name, parameters)
    name_template_roles(stack.resources, translated)
    return _finish(stack, template, translated, machines)


def _bind(value: Any, names: Mapping[str, str]) -> Any:
    """Replace each `Ref X`, `GetAtt X.Y` and `${X}` / `${X.Y}` in `Fn::Sub` naming a resource with its value
    in `names` (keyed `X` or `X.Y`); a resource not in `names` becomes `aurax-unbound-X`, which no request names."""
    def bound(key: str) -> str:
        return names.get(key, f"aurax-unbound-{key.split('.')[0]}")

    if isinstance(value, list):
        return [_bind(v, names) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"} and not str(value["Ref"]).startswith("AWS::") and value["Ref"] != "DeploymentName":
        return bound(value["Ref"])
    if set(value) == {"Fn::GetAtt"}:
        target = value["Fn::GetAtt"]
        return bound(".".join(target) if isinstance(target, list) else target)
    if set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
        text = re.sub(r"\$\{([A-Za-z0-9]+(?:\.[A-Za-z0-9]+)?)\}",
                      lambda m: m.group(0) if m.group(1) == "DeploymentName" else bound(m.group(1)),
                      value["Fn::Sub"].replace("${AWS::", "${AWS__"))
        return {"Fn::Sub": text.replace("${AWS__", "${AWS::")}
    return {k: _bind(v, names) for k, v in value.items()}


@functools.lru_cache(maxsize=4)
def _translated_roles(template_path: Path, mtime_ns: int, deployment_name: str) -> dict[str, Any]:
    """The translated template, for its roles (translating takes a second: tests share it while the file is
    unchanged)."""
    template = load_template(template_path)
    for resource in template["Resources"].values():  # code locations do not matter for the roles
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if key in properties:
                properties[key] = "s3://aurax-unused/code.zip"
        if "DefinitionUri" in properties:
            properties.pop("DefinitionUri")
            properties["Definition"] = {"StartAt": "Unused", "States": {"Unused": {"Type": "Pass", "End": True}}}
    parameters = {"DeploymentName": deployment_name, "JobImageUri": LOCAL_IMAGE_URI}
    return _translate(template, {**parameters, "AWS::Region": REGION, "AWS::AccountId": ACCOUNT_ID})


def deploy_roles(template_path: Path, names: Mapping[str, str], *, deployment_name: str,
                 stack_name: str = "aurax-roles") -> dict[str, str]:
    """Create only the template's IAM roles, their references to the stack's other resources bound to `names`
    (`LogicalId` or `LogicalId.Attribute` -> the value CloudFormation would give): the roles, with the template's
    policies, of resources a test made itself. Returns the owner of each role (e.g. `DecideFunction`, `JobRole`)
    -> its ARN. Inside `mock_aws`."""
    translated = copy.deepcopy(_translated_roles(template_path.resolve(), template_path.stat().st_mtime_ns,
                                                 deployment_name))
    roles = {logical_id: _bind(resource, names) for logical_id, resource in translated["Resources"].items()
             if resource["Type"] == "AWS::IAM::Role"}
    cfn = boto3.client("cloudformation", region_name=REGION)
    body = {"Parameters": {"DeploymentName": {"Type": "String"}}, "Resources": roles}
    with _quiet_moto():
        cfn.create_stack(StackName=stack_name, TemplateBody=json.dumps(body), Capabilities=["CAPABILITY_IAM"],
                         Parameters=[{"ParameterKey": "DeploymentName", "ParameterValue": deployment_name}])
    physical = _described(cfn, stack_name, {}).resources
    iam = boto3.client("iam", region_name=REGION)
    return {owner: iam.get_role(RoleName=physical[logical_id])["Role"]["Arn"]
            for logical_id, owner in name_template_roles(physical, translated).items()}


@contextmanager
def _quiet_moto() -> Iterator[None]:
    """moto warns for each resource type it does not emulate (the bucket and topic policies and the AWS
    Budget), each time it reads the stack: they restrict or notify on AWS and change nothing locally."""
    moto_log = logging.getLogger("moto")
    level = moto_log.level
    moto_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        moto_log.setLevel(level)


def _described(cfn: Any, stack_name: str, parameters: dict[str, str]) -> LocalStack:
    described = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    if described["StackStatus"] != "CREATE_COMPLETE":
        raise StackError(f"stack {stack_name} ended {described['StackStatus']}: "
                         f"{described.get('StackStatusReason', 'no reason given')}")
    resources = {r["LogicalResourceId"]: r["PhysicalResourceId"]
                 for r in cfn.describe_stack_resources(StackName=stack_name)["StackResources"]
                 if r.get("LogicalResourceId") and r.get("PhysicalResourceId")}
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    return LocalStack(stack_name, outputs, resources, parameters=parameters)


def _finish(stack: LocalStack, template: dict[str, Any], translated: dict[str, Any],
            machines: dict[str, tuple[str, dict[str, Any]]]) -> LocalStack:
    resources = stack.resources
    lam = boto3.client("lambda", region_name=REGION)
    functions_arn = {}
    for logical_id, resource in translated["Resources"].items():
        if resource["Type"] == "AWS::Lambda::Function":
            name = resources[logical_id]
            stack.functions[logical_id] = name
            functions_arn[logical_id] = lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
    for logical_id, resource in template["Resources"].items():
        for event in (resource.get("Properties", {}).get("Events") or {}).values():
            if event.get("Type") == "Schedule":
                stack.schedules[logical_id] = event["Properties"]["Schedule"]

    _bucket_extras(translated, stack, functions_arn)
    _create_state_machines(template, machines, stack, functions_arn)
    return stack


def _create_state_machines(template: dict[str, Any], machines: dict[str, tuple[str, dict[str, Any]]],
                           stack: LocalStack, functions_arn: dict[str, str]) -> None:
    """Create each state machine again, substituted, in the executing backend, under the name (so the ARN)
    the stack gave it: moto's CloudFormation made it unsubstituted, in the backend that does not execute."""
    sfn = boto3.client("stepfunctions", region_name=REGION)
    for logical_id, (asl, substitutions) in machines.items():
        values = {k: str(_resolve(v, stack.resources, functions_arn, stack)) for k, v in substitutions.items()}
        name = stack.resources[logical_id].rsplit(":", 1)[-1]
        role = stack.resources.get(f"{logical_id}Role", name)  # the role SAM generates for the machine
        try:  # should the same backend hold CloudFormation's copy, it would clash by name
            sfn.delete_state_machine(stateMachineArn=stack.resources[logical_id])
        except sfn.exceptions.ClientError:
            pass
        sfn.create_state_machine(name=name, definition=_substitute(asl, values),
                                 roleArn=f"arn:aws:iam::{ACCOUNT_ID}:role/{role}",
                                 type=template["Resources"][logical_id]["Properties"].get("Type", "STANDARD"))
