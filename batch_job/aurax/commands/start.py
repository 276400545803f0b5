"""`aurax start`: validate a run config, upload it and start the pipeline."""

from __future__ import annotations

import argparse
import json

from aurax_contracts import load_run_config

from ..ops.stack_outputs import add_stack_arguments
from .dataset import ANNOTATIONS_HELP

EXAMPLES = """examples:
  aurax start --stack aurax --config run.yaml
  aurax start --stack aurax --config run.yaml --annotations ./annotations_final.csv   # offline
  aurax start --stack aurax --config run.yaml --json | jq -r .execution_arn

An invalid config exits 64 with each bad field and its fix, and so does a config the real annotations cannot
meet (the dataset plan, `aurax dataset plan`, names the setting to change and a value that works); annotations
that cannot be read exit 65. In each case nothing is uploaded or started."""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "start", help="start a run on the deployed stack",
        description="Validate the run config, check its dataset plan on MagnaTagATune's annotations, upload it "
                    "to s3://<data bucket>/runs/<run_id>/config.json and start an execution of the stack's state "
                    "machine.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_stack_arguments(parser)
    parser.add_argument("--config", required=True, help="the run config (YAML or JSON)")
    parser.add_argument("--annotations", metavar="URI", help=ANNOTATIONS_HELP)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import boto3

    from ..ops.stack_outputs import StackOutputs
    from ..ops.start import check_dataset_plan, start_run

    config = load_run_config(args.config)  # before any AWS call: a bad config starts nothing
    plan = check_dataset_plan(config, args.annotations)  # nor does one the real data cannot meet
    session = boto3.session.Session(region_name=args.region)
    stack = StackOutputs.load(args.stack, session.client("cloudformation"))
    started = start_run(stack, config, s3=session.client("s3"), sfn=session.client("stepfunctions"))
    if args.json:
        print(json.dumps({**started.to_json(), "dataset_plan": {"annotations": plan.annotations,
                                                                "selected": plan.selected}}))
    else:
        print(f"started run {started.run_id}\n  dataset    {plan.selected_total:,} clips (train "
              f"{plan.selected['train']:,}, validation {plan.selected['validation']:,}) planned on "
              f"{plan.annotations}\n  config     {started.config_uri}\n"
              f"  execution  {started.execution_arn}\n  console    {started.console_url}\n"
              f"watch it with: aurax status {started.run_id} --stack {args.stack} --watch")
    return 0
