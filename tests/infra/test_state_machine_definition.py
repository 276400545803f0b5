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
    # The one Wait is the backoff before resubmitting a stage after a transient failure: reached only from
    # the failure verdict, for the seconds the verdict gives (ClassifyFailure caps how often).
    for definition in asl_definitions.values():
        states = definition["States"]
        for name, state in states.items():
            if state["Type"] != "Wait":
                continue
            assert state.get("SecondsPath") == "$.verdict.resubmit_after_seconds", name
            entries = [n for n, s in states.items() if name in json.dumps(
                {k: v for k, v in s.items() if k in ("Next", "Choices", "Default", "Catch")})]
            assert entries == ["ResumeOrAbort"], f"{name} is entered from {entries}"


def test_definition_has_no_duplicate_keys() -> None:
    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [key for key, _ in pairs]
        assert len(keys) == len(set(keys)), f"duplicate keys {keys}"
        return dict(pairs)

    for path in ASL_FILES:
        json.loads(path.read_text(), object_pairs_hook=unique)


def test_every_batch_stage_can_be_resubmitted_and_resets_the_count(asl_definitions: dict[str, dict[str, Any]]
                                                                   ) -> None:
    states = asl_definitions["pipeline.asl.json"]["States"]
    batch = {n for n, s in states.items() if s.get("Resource") == "arn:aws:states:::batch:submitJob.sync"}
    assert {c["Next"] for c in states["ResubmitStage"]["Choices"]} == batch
    for name in batch:
        assert states[name]["ResultSelector"] == {"resubmissions": 0}, name
        assert states[name]["ResultPath"] == "$.infrastructure", name


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
