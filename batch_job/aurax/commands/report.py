"""`aurax report`: fetch a run's HTML reports (evaluations and abort report)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..ops.stack_outputs import add_stack_arguments

EXAMPLES = """examples:
  aurax report amapiano-01 --stack aurax
  aurax report amapiano-01 --stack aurax --out ~/reports --json"""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "report", help="download a run's HTML reports",
        description="Download eval/<point>/report.html (with its clips and plots) and reports/abort.html of a "
                    "run and print their paths.", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="run id")
    add_stack_arguments(parser)
    parser.add_argument("--out", type=Path, default=Path("aurax-reports"),
                        help="folder to download into (default ./aurax-reports/<run>)")
    parser.add_argument("--json", action="store_true", help="print the paths as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import boto3

    from ..ops.report import fetch_reports
    from ..ops.stack_outputs import StackOutputs

    session = boto3.session.Session(region_name=args.region)
    stack = StackOutputs.load(args.stack, session.client("cloudformation"))
    fetched = fetch_reports(stack, args.run, args.out, s3=session.client("s3"))
    if args.json:
        print(json.dumps({"run_id": fetched.run_id, "folder": str(fetched.folder),
                          "reports": [str(p) for p in fetched.reports]}))
    else:
        print("\n".join(str(p) for p in fetched.reports))
    return 0
