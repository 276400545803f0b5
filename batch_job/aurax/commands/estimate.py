"""`aurax estimate`: projected time and cost of a run before starting it."""

from __future__ import annotations

import argparse
import json

from aurax_contracts import load_run_config

EXAMPLES = """examples:
  aurax estimate --config run.yaml
  aurax estimate --config run.yaml --samples-per-second 1.4 --spot-usd-per-hour 0.19 --json
  aurax estimate --config run.yaml --true-rate 0.40 --control-rate 0.20 --power 0.9

The figures and their sources are in batch_job/aurax/ops/figures.py; assumed ones are listed in the output.

exit codes: 0 estimated, 64 bad config or arguments"""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "estimate", help="projected time and cost of a run",
        description="Project each phase's hours and dollars from the run config and the benchmark figures.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="the run config (YAML or JSON)")
    parser.add_argument("--samples-per-second", type=float, default=None,
                        help="measured training throughput on the GPU (replaces the FLOPs-based figure)")
    parser.add_argument("--spot-usd-per-hour", type=float, default=None, help="GPU spot price to use")
    parser.add_argument("--true-rate", type=float, default=0.45, metavar="P",
                        help="treatment authenticity to size the decision evaluation for (default 0.45)")
    parser.add_argument("--control-rate", type=float, default=0.15, metavar="P",
                        help="the untouched model's authenticity (default 0.15)")
    parser.add_argument("--power", type=float, default=0.8, metavar="P",
                        help="chance the decision evaluation should have of showing such a model GO (default 0.8)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import math

    from aurax_contracts import ContractError

    from ..ops.estimate import estimate, render
    from ..ops.sample_size import evaluation_plan, render_plan

    problems = []
    for name in ("samples_per_second", "spot_usd_per_hour"):
        value = getattr(args, name)
        if value is not None and not 0 < value < math.inf:
            problems.append(f"--{name.replace('_', '-')} must be above 0 and finite (got {value})")
    for name in ("true_rate", "control_rate", "power"):
        value = getattr(args, name)
        if not 0 < value < 1:
            problems.append(f"--{name.replace('_', '-')} must be between 0 and 1 (got {value})")
    if problems:
        raise ContractError("aurax estimate arguments", problems)
    config = load_run_config(args.config)
    result = estimate(config, samples_per_second=args.samples_per_second, gpu_usd_per_hour=args.spot_usd_per_hour)
    plan = evaluation_plan(config, true_rate=args.true_rate, control_rate=args.control_rate,
                           target_power=args.power, gpu_usd_per_hour=args.spot_usd_per_hour)
    if args.json:
        print(json.dumps({**result.to_json(), "evaluation": plan.to_json()}, indent=2))
    else:
        print("\n".join([render(result), "", *render_plan(plan, config)]))
    return 0
