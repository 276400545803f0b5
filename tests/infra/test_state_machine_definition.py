"""The ASL: statelint and moto's parser accept it, and its substitutions match the template exactly."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import pytest
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

from tests.infra.support import ASL_FILES, ROOT, tool

PLACEHOLDER = re.compile(r"\$\{(\w+)\}")


@pytest.mark.parametrize("path", ASL_FILES, ids=lambda p: p.name)
def test_statelint(path: Any) -> None:
    result = subprocess.run([tool("statelint"), "--ignore=URI", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", ASL_FILES, ids=lambda p: p.name)
def test_moto_parser_accepts_the_definition(path: Any) -> None:
    text = PLACEHOLDER.sub(lambda m: f"arn:aws:lambda:us-east-1:123456789012:function:{m.group(1)}",
                           path.read_text())
    AmazonStateLanguageParser.parse(text)


def test_substitutions_are_all_used_and_all_defined(template: dict[str, Any]) -> None:
    machines = [r for r in template["Resources"].values() if r["Type"] == "AWS::Serverless::StateMachine"]
    assert machines
    for machine in machines:
        props = machine["Properties"]
        text = (ROOT / props["DefinitionUri"]).read_text()
        used = set(PLACEHOLDER.findall(text))
        defined = set(props["DefinitionSubstitutions"])
        assert used - defined == set(), f"placeholders without a substitution: {used - defined}"
        assert defined - used == set(), f"substitutions the ASL never uses: {defined - used}"


def test_no_monitoring_loop_inside_the_execution(asl_definitions: dict[str, dict[str, Any]]) -> None:
    # A run lasts weeks and Standard workflows cap history at 25,000 events: no Wait states polling metrics.
    for definition in asl_definitions.values():
        assert not [n for n, s in definition["States"].items() if s["Type"] == "Wait"]


def test_batch_tasks_retry_service_errors_with_jitter_and_catch_everything(
        asl_definitions: dict[str, dict[str, Any]]) -> None:
    for definition in asl_definitions.values():
        for name, state in definition["States"].items():
            if state.get("Resource") != "arn:aws:states:::batch:submitJob.sync":
                continue
            retry = state["Retry"][0]
            assert retry["JitterStrategy"] == "FULL" and retry["BackoffRate"] > 1, name
            assert "States.TaskFailed" not in json.dumps(state["Retry"]), f"{name}: Batch already retries jobs"
            assert state["Catch"][0]["ErrorEquals"] == ["States.ALL"], name


def test_every_abort_reason_ends_in_a_named_state(asl_definitions: dict[str, dict[str, Any]]) -> None:
    from aurax_contracts import AbortReason

    states = asl_definitions["pipeline.asl.json"]["States"]
    routed = {c["StringEquals"] for c in states["WhyAborted"]["Choices"]}
    # Reasons without their own branch end in AbortedJobFailed (default); no-go ends in StoppedNoGo.
    assert routed <= {r.value for r in AbortReason}
    assert states[states["WhyAborted"]["Default"]]["Type"] == "Fail"
    assert states["StoppedNoGo"]["Type"] == "Succeed"
