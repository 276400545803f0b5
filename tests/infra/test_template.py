"""template.yaml: lints clean (cfn-lint, sam validate --lint, checkov) and is wired the way the code expects."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from aurax.cli import build_parser
from aurax.local.image import ContainerImage
from aurax_contracts import batch_retry_strategy
from tests.infra.support import ROOT, TEMPLATE, tool

OFFLINE_ENV = {**os.environ, "SAM_CLI_TELEMETRY": "0", "BC_SKIP_MAPPING": "TRUE", "AWS_DEFAULT_REGION": "us-east-1"}


def run(cmd: list[str], timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, env=OFFLINE_ENV, capture_output=True, text=True, timeout=timeout)


def test_cfn_lint_has_no_errors() -> None:
    result = run([tool("cfn-lint"), str(TEMPLATE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_sam_validate_lint() -> None:
    result = run([tool("sam"), "validate", "--lint", "--template-file", str(TEMPLATE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_checkov_has_no_failed_check_and_every_skip_is_justified(template: dict[str, Any]) -> None:
    result = run([tool("checkov"), "-f", str(TEMPLATE), "--framework", "cloudformation", "--skip-download",
                  "--quiet", "--compact"])
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    for name, resource in template["Resources"].items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert len(skip.get("comment", "")) > 30, f"{name}: checkov skip {skip['id']} needs a real justification"


def _walk(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def test_no_wildcard_iam_actions(template: dict[str, Any]) -> None:
    for name, resource in template["Resources"].items():
        if resource["Type"] == "AWS::KMS::Key":
            continue  # a key policy must grant the account root kms:* (AWS's default key policy)
        for key, value in _walk(resource.get("Properties", {})):
            if key == "Action":
                actions = value if isinstance(value, list) else [value]
                wildcard = [a for a in actions if isinstance(a, str) and a.split(":")[-1] == "*"]
                if resource["Type"] == "AWS::S3::BucketPolicy":
                    continue  # a Deny of s3:* for insecure transport is a restriction, not a grant
                assert not wildcard, f"{name} grants wildcard actions {wildcard}"


def test_every_job_definition_uses_the_contract_retry_strategy(template: dict[str, Any]) -> None:
    job_definitions = {n: r for n, r in template["Resources"].items() if r["Type"] == "AWS::Batch::JobDefinition"}
    assert set(job_definitions) == {"PreflightJobDefinition", "PrepareJobDefinition", "TrainJobDefinition",
                                    "EvaluateJobDefinition"}
    for name, resource in job_definitions.items():
        assert resource["Properties"]["RetryStrategy"] == batch_retry_strategy(), name


def test_every_job_retries_an_interrupted_exit_and_a_task_that_failed_to_start(template: dict[str, Any]) -> None:
    # Each job command exits 75 after SIGTERM or a spot notice (evaluate, prepare and preflight as training does).
    from aurax.local.moto_patches import BatchJobResult, batch_retry_action

    for name, resource in template["Resources"].items():
        if resource["Type"] == "AWS::Batch::JobDefinition":
            strategy = resource["Properties"]["RetryStrategy"]
            assert batch_retry_action(strategy, BatchJobResult(75, "Essential container in task exited")) == "RETRY"
            assert batch_retry_action(strategy, BatchJobResult(None, "Task failed to start",
                                                               "CannotPullContainerError: 429")) == "RETRY", name
            assert batch_retry_action(strategy, BatchJobResult(1, "Essential container in task exited")) == "EXIT"


def test_each_job_runs_one_valid_aurax_command_as_ecs_composes_it(template: dict[str, Any]) -> None:
    # ECS runs the image's ENTRYPOINT with the job's command as CMD (Docker appends CMD to an exec-form
    # ENTRYPOINT): with ENTRYPOINT ["aurax"], a Command starting with `aurax` ran `aurax aurax ...`, which
    # argparse rejects (exit 2) at the first job of every run.
    image = ContainerImage.from_dockerfile(ROOT / "Dockerfile")
    parser = build_parser()
    for name, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Batch::JobDefinition":
            continue
        command = [re.sub(r"^Ref::(\w+)$", lambda m: _sample_value(m.group(1)), part)
                   for part in resource["Properties"]["ContainerProperties"]["Command"]]
        argv = image.argv(command)
        assert argv[0] == "aurax", f"{name}: the container runs {argv}"
        try:
            parser.parse_args(argv[1:])
        except SystemExit as exc:
            raise AssertionError(f"{name}: the container runs {' '.join(argv)}, which the CLI rejects") from exc


def _sample_value(parameter: str) -> str:
    return {"until_epoch": "5", "point": "decision"}.get(parameter, f"s3://bucket/{parameter}")


def test_gpu_compute_is_spot_t4_scaling_to_zero(template: dict[str, Any]) -> None:
    compute = template["Resources"]["GpuComputeEnvironment"]["Properties"]["ComputeResources"]
    assert compute["Type"] == "SPOT"
    assert compute["AllocationStrategy"] == "SPOT_PRICE_CAPACITY_OPTIMIZED"
    assert compute["MinvCpus"] == 0
    assert template["Parameters"]["GpuInstanceTypes"]["Default"].startswith("g4dn.")


def test_functions_match_handler_folders(template: dict[str, Any]) -> None:
    functions = {r["Properties"]["CodeUri"].strip("/") for r in template["Resources"].values()
                 if r["Type"] == "AWS::Serverless::Function"}
    folders = {f"functions/{p.parent.name}" for p in (ROOT / "functions").glob("*/app.py")}
    assert functions == folders


def test_outputs_the_cli_needs(template: dict[str, Any]) -> None:
    assert {"DataBucketName", "StateMachineArn", "RunTableName", "AlertTopicArn", "EventBusName",
            "DashboardUrl"} <= set(template["Outputs"])


@pytest.mark.slow
def test_sam_build_offline_without_numpy_or_torch(tmp_path: Any) -> None:
    build_dir = tmp_path / "build"
    result = run([tool("sam"), "build", "--template-file", str(TEMPLATE), "--build-dir", str(build_dir)], timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    built = {p.relative_to(build_dir).parts[0] for p in build_dir.iterdir() if p.is_dir()}
    assert {"ContractsLayer", "MetricsMonitorFunction", "DecideFunction"} <= built
    heavy = [str(p.relative_to(build_dir)) for p in build_dir.rglob("*")
             if p.is_dir() and p.name in ("numpy", "torch", "librosa", "scipy", "matplotlib")]
    assert not heavy, f"Lambda artefacts must not contain {heavy}"
    assert (build_dir / "ContractsLayer" / "python" / "aurax_contracts" / "__init__.py").exists()


# --- issue 10, item 8: what a first real deployment needs ------------------------------------------------------
DEPLOYMENT_TAG = "aurax:deployment"
GPU_JOBS = ("PreflightJobDefinition", "TrainJobDefinition", "EvaluateJobDefinition")


def _render(value: Any, region: str, deployment: str = "main") -> str:
    """A `!Sub` string with the pseudo parameter and the deployment name filled in."""
    return value["Fn::Sub"].replace("${AWS::Region}", region).replace("${DeploymentName}", deployment)


def test_compute_environments_run_amazon_linux_2023(template: dict[str, Any]) -> None:
    # Batch's Ec2Configuration image types; the AL2 ECS AMIs reach end of support.
    images = {name: r["Properties"]["ComputeResources"].get("Ec2Configuration")
              for name, r in template["Resources"].items() if r["Type"] == "AWS::Batch::ComputeEnvironment"}
    assert images == {"GpuComputeEnvironment": [{"ImageType": "ECS_AL2023_NVIDIA"}],
                      "CpuComputeEnvironment": [{"ImageType": "ECS_AL2023"}]}


def test_account_wide_names_differ_between_regions(template: dict[str, Any]) -> None:
    # Dashboard and budget names are global to the account: the same deployment in two regions must not clash.
    resources = template["Resources"]
    for name in (resources["AccountBudget"]["Properties"]["Budget"]["BudgetName"],
                 resources["Dashboard"]["Properties"]["DashboardName"]):
        assert _render(name, "us-east-1") != _render(name, "eu-west-1")
    dashboard = _render(resources["Dashboard"]["Properties"]["DashboardName"], "eu-west-1")
    assert _render(template["Outputs"]["DashboardUrl"]["Value"], "eu-west-1").endswith(f"#dashboards:name={dashboard}")


def test_the_budget_counts_only_this_deployment(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    filters = resources["AccountBudget"]["Properties"]["Budget"]["CostFilters"]
    assert filters == {"TagKeyValue": [{"Fn::Join": ["", [f"user:{DEPLOYMENT_TAG}$", {"Ref": "DeploymentName"}]]}],
                       "Region": [{"Ref": "AWS::Region"}]}
    deployment = {"Ref": "DeploymentName"}
    # what costs money carries the tag: Batch's instances and their volumes, the bucket, the functions
    specs = resources["BatchLaunchTemplate"]["Properties"]["LaunchTemplateData"]["TagSpecifications"]
    assert {s["ResourceType"] for s in specs if {"Key": DEPLOYMENT_TAG, "Value": deployment} in s["Tags"]} == \
        {"instance", "volume"}
    for name in ("GpuComputeEnvironment", "CpuComputeEnvironment"):
        assert resources[name]["Properties"]["ComputeResources"]["Tags"][DEPLOYMENT_TAG] == deployment
    assert {"Key": DEPLOYMENT_TAG, "Value": deployment} in resources["DataBucket"]["Properties"]["Tags"]
    assert template["Globals"]["Function"]["Tags"][DEPLOYMENT_TAG] == deployment
    runbook = (ROOT / "docs" / "operations.md").read_text()
    assert f"update-cost-allocation-tags-status --cost-allocation-tags-status TagKey={DEPLOYMENT_TAG},Status=Active" \
        in runbook


def test_gpu_jobs_stage_checkpoints_on_the_instance_store(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    user_data = resources["BatchLaunchTemplate"]["Properties"]["LaunchTemplateData"]["UserData"]["Fn::Base64"]
    script = user_data[user_data.index("#!/bin/bash"):user_data.index("\n--==AURAX==--")]
    checked = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert "echo ECS_CONTAINER_STOP_TIMEOUT=120s >> /etc/ecs/ecs.config" in script
    # the instance-store NVMe SSD (its model name in sysfs, spaces removed), formatted and mounted at /scratch
    assert '"$model" = "AmazonEC2NVMeInstanceStorage"' in script and 'mount -o noatime "$device" /scratch' in script
    for name in GPU_JOBS:
        container = resources[name]["Properties"]["ContainerProperties"]
        assert {"Name": "TMPDIR", "Value": "/scratch"} in container["Environment"], name
        assert container["Volumes"] == [{"Name": "scratch", "Host": {"SourcePath": "/scratch"}}], name
        assert container["MountPoints"] == [{"SourceVolume": "scratch", "ContainerPath": "/scratch",
                                             "ReadOnly": False}], name


def test_the_launch_template_user_data_is_a_mime_multipart_archive(template: dict[str, Any]) -> None:
    # AWS Batch merges its own user data with the launch template's, which must therefore be a MIME multi-part
    # archive (Batch User Guide, "Amazon EC2 user data in launch templates"); a bare script breaks the merge.
    import email

    user_data = template["Resources"]["BatchLaunchTemplate"]["Properties"]["LaunchTemplateData"]["UserData"]
    archive = email.message_from_string(user_data["Fn::Base64"])
    assert archive["MIME-Version"] == "1.0" and archive.get_content_type() == "multipart/mixed"
    assert archive.is_multipart() and archive.defects == []
    parts = archive.get_payload()
    assert [part.get_content_type() for part in parts] == ["text/x-shellscript"]
    assert parts[0].get_payload().startswith("#!/bin/bash\n") and parts[0].defects == []
    assert user_data["Fn::Base64"].rstrip().endswith(f"--{archive.get_boundary()}--")  # the closing boundary
