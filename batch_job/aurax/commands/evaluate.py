"""`aurax job evaluate`: the checkpoint under test against the base model (report.json, report.html)."""

from __future__ import annotations

import argparse
import sys

from .detect import ANALYSIS_CONFIG_HELP

GROUP = "job"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="generate with the checkpoint and the base model, score, compare, write the report",
        description="Treatment: the newest verified checkpoint under --checkpoint-uri; control: the "
                    "untouched base model. Same prompts and seeds for both (config.evaluation). Writes "
                    "report.json (EvalReport), report.html with its plots, and the clips under "
                    "{run-uri}/eval/{point}/.",
        epilog="exit codes: 0 report written, 64 bad config, 65 dataset manifest or checkpoint missing or "
               "corrupt, 75 interrupted (SIGTERM or spot notice; the clips written so far are kept and the same "
               "command resumes from them), 76/77 stopped by the control plane (diverged / over budget)")
    parser.add_argument("--config", required=True, metavar="URI", help="run config (YAML/JSON)")
    parser.add_argument("--run-uri", required=True, metavar="URI",
                        help="the run's root ({bucket}/runs/{run_id})")
    parser.add_argument("--dataset-uri", required=True, metavar="URI",
                        help="prepared dataset root (its manifest hash is provenance)")
    parser.add_argument("--point", required=True, choices=("decision", "final"),
                        help="which evaluation this is")
    parser.add_argument("--checkpoint-uri", metavar="URI",
                        help="checkpoints root (default {run-uri}/checkpoints)")
    parser.add_argument("--analysis-config", metavar="URI", help=ANALYSIS_CONFIG_HELP)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from aurax_contracts import JobExit, parse_run_config

    from .. import storage
    from ..audio.config import load_analysis_config
    from ..evaluate.job import EvaluationInterrupted, run_evaluation

    config = parse_run_config(storage.read_text(args.config), args.config)
    analysis = load_analysis_config(args.analysis_config)
    try:
        report = run_evaluation(config, run_uri=args.run_uri, dataset_uri=args.dataset_uri, point=args.point,
                                checkpoint_uri=args.checkpoint_uri, analysis=analysis)
    except EvaluationInterrupted as stopped:
        print(f"aurax: {stopped}", file=sys.stderr)
        return int(stopped.cause.exit_code)
    print(f"treatment {report.treatment.authentic}/{report.treatment.clips} authentic vs control "
          f"{report.control.authentic}/{report.control.clips} (paired McNemar p = {report.comparison.p_value:.4g})")
    return JobExit.SUCCEEDED
