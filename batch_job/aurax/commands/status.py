"""`aurax status`: where a run is, what it has spent and when it will finish."""

from __future__ import annotations

import argparse
import json
import time

from ..ops.stack_outputs import add_stack_arguments

EXAMPLES = """examples:
  aurax status --stack aurax                 # the latest run
  aurax status amapiano-01 --stack aurax --watch
  aurax status amapiano-01 --stack aurax --json"""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "status", help="state, progress, loss, spend and ETA of a run",
        description="Read the run's state and cost ledger from the run-state table and its execution from Step "
                    "Functions.", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", nargs="?", default=None, help="run id (default: the latest execution's run)")
    add_stack_arguments(parser)
    parser.add_argument("--watch", action="store_true", help="refresh until the execution ends")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between refreshes (default 60)")
    parser.add_argument("--json", action="store_true", help="print JSON (one object per refresh)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import boto3

    from ..ops.stack_outputs import StackOutputs
    from ..ops.status import load_status, render

    session = boto3.session.Session(region_name=args.region)
    stack = StackOutputs.load(args.stack, session.client("cloudformation"))
    ddb, sfn = session.client("dynamodb"), session.client("stepfunctions")
    run_id = args.run
    while True:
        view = load_status(stack, run_id, ddb=ddb, sfn=sfn)
        run_id = view.run_id  # keep following the same run
        print(json.dumps(view.to_json()) if args.json else render(view), flush=True)
        if not args.watch or view.finished:
            return 0
        time.sleep(args.interval)
        if not args.json:
            print()
