"""`aurax stop`: stop a run on purpose (it can be resumed by starting it again)."""

from __future__ import annotations

import argparse
import json

from ..ops.stack_outputs import add_stack_arguments

EXAMPLES = """examples:
  aurax stop amapiano-01 --stack aurax
  aurax start --stack aurax --config run.yaml   # later: resumes from the last checkpoint

The training job receives SIGTERM, writes a checkpoint and exits; Batch does not retry it."""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "stop", help="stop a run: end its execution, terminate its jobs",
        description="Stop the run's execution and terminate its active Batch jobs (reason `aurax:stopped`, which "
                    "Batch does not retry).", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="run id")
    add_stack_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import boto3

    from ..ops.stack_outputs import StackOutputs
    from ..ops.stop import stop_run

    session = boto3.session.Session(region_name=args.region)
    stack = StackOutputs.load(args.stack, session.client("cloudformation"))
    stopped = stop_run(stack, args.run, sfn=session.client("stepfunctions"), batch=session.client("batch"))
    if args.json:
        print(json.dumps(stopped.to_json()))
    else:
        print(f"stopped run {stopped.run_id}: execution {stopped.execution_arn or '(none running)'}, "
              f"{len(stopped.terminated_jobs)} job(s) terminated\nresume later with: aurax start --stack {args.stack} "
              f"--config <its config>")
    return 0
