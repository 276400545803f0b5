"""`aurax dataset plan`: what the run's dataset rules select on the real annotations, before anything starts."""

from __future__ import annotations

import argparse
import json

ANNOTATIONS_HELP = ("annotations_final.csv to plan on: a local path, s3:// or https:// URI, or the folder holding it "
                    "(default: the config's dataset.source_uri). Give a local copy to work offline")

EXAMPLES = """examples:
  aurax dataset plan --config run.yaml
  aurax dataset plan --config run.yaml --annotations ./annotations_final.csv
  aurax dataset plan --config run.yaml --json | jq .selected

Only annotations_final.csv is read (about 20 MB, downloaded once and cached in ~/.cache/aurax or
$AURAX_CACHE_DIR); no audio. aurax start, preflight and aurax job prepare run the same check.

exit codes: 0 the target can be met; 64 it cannot (each fix is printed), or a tag in the rules is not an MTAT
tag; 65 the annotations cannot be read or are not MagnaTagATune's format"""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("dataset", help="plan the run's MagnaTagATune selection before starting",
                                   description="Commands about the training set.")
    sub = parser.add_subparsers(dest="dataset_command", metavar="COMMAND", required=True)
    plan = sub.add_parser(
        "plan", help="eligible clips per folder and split, score distribution, contributing tags, target met?",
        description="Apply the config's dataset rules to MagnaTagATune's annotations (no audio) and print the "
                    "eligible clips per folder and split, the score distribution, the tags that contributed and "
                    "whether the target can be met; when it cannot, the setting to change and a value that works.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    plan.add_argument("--config", required=True, help="the run config (YAML or JSON)")
    plan.add_argument("--annotations", metavar="URI", help=ANNOTATIONS_HELP)
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.set_defaults(handler=run_plan)


def run_plan(args: argparse.Namespace) -> int:
    from aurax_contracts import JobExit, load_run_config

    from ..dataset.plan import plan_run

    config = load_run_config(args.config)
    plan = plan_run(config.dataset, args.annotations)
    print(json.dumps(plan.to_json(), indent=2) if args.json else plan.render())
    return int(JobExit.SUCCEEDED if plan.met else JobExit.BAD_CONFIG)
