"""The deployed stack's outputs the CLI needs, read once from CloudFormation."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Any

from ..errors import InputError

#: Environment variable naming the stack, so that `--stack` can be left out.
STACK_ENV = "AURAX_STACK"
#: Outputs of template.yaml the CLI reads.
REQUIRED_OUTPUTS = ("DataBucketName", "StateMachineArn", "RunTableName", "AlertTopicArn", "EventBusName")


class StackError(InputError):
    """The stack is missing or lacks an output; the message says how to fix it."""


@dataclass(frozen=True)
class StackOutputs:
    stack_name: str
    region: str
    data_bucket: str
    state_machine_arn: str
    run_table: str
    alert_topic_arn: str
    event_bus_name: str
    job_queues: tuple[str, ...] = ()
    """Every `*JobQueueArn` output (GPU and CPU queues)."""

    @property
    def root(self) -> str:
        """Root URI of the run layout (`aurax_contracts.RunLayout`)."""
        return f"s3://{self.data_bucket}"

    @classmethod
    def load(cls, stack_name: str, cloudformation: Any) -> StackOutputs:
        region = cloudformation.meta.region_name
        try:
            stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
            message = getattr(exc, "response", {}).get("Error", {}).get("Message", str(exc))
            if "does not exist" in message:
                raise StackError(f"stack {stack_name!r} does not exist in {region}; deploy it with "
                                 "`sam deploy --guided` (see docs/operations.md#deploy), or pass the right "
                                 "--stack / --region") from exc
            raise StackError(f"cannot read stack {stack_name!r} in {region}: {code}: {message}; check your AWS "
                             "credentials (aws sts get-caller-identity) and region") from exc
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
        missing = [name for name in REQUIRED_OUTPUTS if name not in outputs]
        if missing:
            raise StackError(f"stack {stack_name!r} has no output {', '.join(missing)}: it was not deployed from "
                             f"this project's template.yaml (status {stacks[0].get('StackStatus')}); redeploy "
                             "with `sam build && sam deploy`")
        return cls(stack_name, region, outputs["DataBucketName"], outputs["StateMachineArn"],
                   outputs["RunTableName"], outputs["AlertTopicArn"], outputs["EventBusName"],
                   tuple(v for k, v in sorted(outputs.items()) if k.endswith("JobQueueArn")))


def add_stack_arguments(parser: argparse.ArgumentParser) -> None:
    """`--stack` (default $AURAX_STACK) and `--region` for the commands that work on a deployed stack."""
    default = os.environ.get(STACK_ENV) or None
    parser.add_argument("--stack", default=default, required=default is None,
                        help=f"CloudFormation stack name given to `sam deploy` (default ${STACK_ENV})")
    parser.add_argument("--region", default=None, help="AWS region of the stack (default: your AWS config)")
