"""Removing one permission from the template fails the pipeline run, and the failure names the principal, the
action and the resource, with the policy to add: the emulation's IAM enforcement is what stops these runs."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

from aurax.local.stack import load_template
from tests.infra.support import TEMPLATE
from tests.infra.test_pipeline_paths import (  # noqa: F401 - run_pipeline is a fixture
    FakeJobs,
    Observed,
    fake_evaluate,
    fake_train,
    run_pipeline,
)

REGION = "us-east-1"


def _without(template: dict[str, Any], resource: str, keep: Callable[[Any], bool]) -> dict[str, Any]:
    edited = copy.deepcopy(template)
    properties = edited["Resources"][resource]["Properties"]
    properties["Policies"] = [p for p in properties["Policies"] if keep(p)]
    return edited


def _only(denials: list[str], role: str, action: str, resource: str, where: str) -> None:
    assert denials, "the run went through without the permission"
    for denial in denials:
        assert f"assumed-role/{role}/" in denial, denial
        assert f"perform: {action} on resource: {resource}" in denial, denial
        assert f"add to {where}'s Policies in template.yaml" in denial, denial


def test_without_tag_on_create_the_first_job_is_denied(run_pipeline: Callable[..., Observed]) -> None:  # noqa: F811
    template = load_template(TEMPLATE)
    for statement in (p["Statement"] for p in template["Resources"]["PipelineStateMachine"]["Properties"]["Policies"]
                      if "Statement" in p):
        statement[:] = [s for s in statement if s.get("Action") != "batch:TagResource"]
    observed = run_pipeline(FakeJobs({}), template=template, expect_denials=True)
    assert observed.status == "FAILED" and observed.jobs.runs == []
    _only(observed.iam_denials, observed.stack.resources["PipelineStateMachineRole"], "batch:TagResource",
          "arn:aws:batch:us-east-1:123456789012:job/*", "PipelineStateMachine")


def test_without_kms_decrypt_the_decision_cannot_be_announced(run_pipeline: Callable[..., Observed]) -> None:  # noqa: F811
    template = load_template(TEMPLATE)
    for policy in template["Resources"]["DecideFunction"]["Properties"]["Policies"]:
        for statement in policy.get("Statement", []) if isinstance(policy, dict) else []:
            if statement.get("Sid") == "PublishToTheEncryptedAlertTopic":
                statement["Action"] = ["kms:GenerateDataKey"]
    observed = run_pipeline(FakeJobs({"train": fake_train, "evaluate": fake_evaluate(treatment_authentic=12)}),
                            template=template, expect_denials=True)
    assert observed.status == "FAILED" and observed.final_state != "ModelPromoted"
    key = f"arn:aws:kms:{REGION}:123456789012:key/{observed.stack.resources['AlertTopicKey']}"
    _only(observed.iam_denials, observed.stack.resources["DecideFunctionRole"], "kms:Decrypt", key, "DecideFunction")


def test_without_its_table_policy_a_function_is_denied_its_own_call(run_pipeline: Callable[..., Observed]) -> None:  # noqa: F811
    template = _without(load_template(TEMPLATE), "PlanRunFunction",
                        lambda policy: not (isinstance(policy, dict) and "DynamoDBCrudPolicy" in policy))
    observed = run_pipeline(FakeJobs({}), template=template, expect_denials=True)
    assert observed.status == "FAILED" and observed.jobs.runs == []
    table = f"arn:aws:dynamodb:us-east-1:123456789012:table/{observed.stack.outputs['RunTableName']}"
    assert observed.iam_denials
    for denial in observed.iam_denials:
        assert f"assumed-role/{observed.stack.resources['PlanRunFunctionRole']}/" in denial
        assert re.search(rf"perform: dynamodb:\w+ on resource: {re.escape(table)}\b", denial), denial
        assert "add to PlanRunFunction's Policies in template.yaml" in denial
