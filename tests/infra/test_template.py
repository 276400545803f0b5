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
