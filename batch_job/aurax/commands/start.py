"""`aurax start`: validate a run config, upload it and start the pipeline."""

from __future__ import annotations

import argparse
import json

from aurax_contracts import load_run_config

from ..ops.stack_outputs import add_stack_arguments

EXAMPLES = """examples:
  aurax start --stack aurax --config run.yaml
  aurax start --stack aurax --config run.yaml --json | jq -r .execution_arn

An invalid config exits 64 with each bad field and its fix; nothing is uploaded or started."""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "start", help="start a run on the deployed stack",
        description="Validate the run config, upload it to s3://<data bucket>/runs/<run_id>/config.json and start "
                    "an execution of the stack's state machine.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_stack_arguments(parser)
    parser.add_argument("--config", required=True, help="the run config (YAML or JSON)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import boto3

    from ..ops.stack_outputs import StackOutputs
    from ..ops.start import start_run

    config = load_run_config(args.config)  # before any AWS call: a bad config starts nothing
    session = boto3.session.Session(region_name=args.region)
    stack = StackOutputs.load(args.stack, session.client("cloudformation"))
    started = start_run(stack, config, s3=session.client("s3"), sfn=session.client("stepfunctions"))
    if args.json:
        print(json.dumps(started.to_json()))
    else:
        print(f"started run {started.run_id}\n  config     {started.config_uri}\n"
              f"  execution  {started.execution_arn}\n  console    {started.console_url}\n"
              f"watch it with: aurax status {started.run_id} --stack {args.stack} --watch")
    return 0
