"""`aurax preflight`: check everything a run needs before training is paid for (exit 78 on any failure)."""

from __future__ import annotations

import argparse
import json
import sys

from .detect import ANALYSIS_CONFIG_HELP


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "preflight", help="check detector, GPU, config, dataset, idle rule and alert topic before training",
        description="Runs the log-drum detector validation suite, checks the GPU (with --require-gpu), "
                    "the run config, the dataset manifest (when --dataset-uri has one), and that the "
                    "idle-shutdown rule (env AURAX_IDLE_RULE_NAME) is enabled and the alert topic (env "
                    "AURAX_ALERT_TOPIC_ARN) exists; a check whose input is not given is skipped with its "
                    "reason.",
        epilog="exit codes: 0 every check passed or was skipped, 75 interrupted by SIGTERM or a spot notice (run "
               "it again), 78 a check failed (the report lists all)")
    parser.add_argument("--config", metavar="URI", help="run config (YAML/JSON) to validate")
    parser.add_argument("--dataset-uri", metavar="URI", help="prepared dataset root (s3://... or a folder)")
    parser.add_argument("--require-gpu", action="store_true", help="fail when no usable CUDA GPU is visible")
    parser.add_argument("--min-gpu-memory-gib", type=float, default=None, metavar="GIB",
                        help="free GPU memory needed (default 12)")
    parser.add_argument("--analysis-config", metavar="URI", help=ANALYSIS_CONFIG_HELP)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from aurax_contracts import JobExit

    from ..audio.config import load_analysis_config
    from ..interrupts import ImdsClient, InterruptWatch
    from ..preflight import DEFAULT_MIN_GPU_MEMORY_GIB, PreflightReport, run_interruptible, run_preflight

    def checks() -> PreflightReport:
        return run_preflight(config_uri=args.config, dataset_uri=args.dataset_uri, require_gpu=args.require_gpu,
                             analysis=load_analysis_config(args.analysis_config),
                             min_gpu_memory_gib=DEFAULT_MIN_GPU_MEMORY_GIB if args.min_gpu_memory_gib is None
                             else args.min_gpu_memory_gib)

    # As a Batch job this is PID 1 of its container: without a handler the kernel ignores SIGTERM there and
    # ECS kills it after its stop timeout.
    watch = InterruptWatch(ImdsClient.from_env(), stop_request_uri=None)
    watch.start()
    try:
        report = run_interruptible(checks, watch)
    finally:
        cause = watch.pending()
        watch.stop()
    if report is None:
        print(f"aurax: preflight interrupted ({cause.record_cause if cause else 'stop'}); nothing was spent on "
              "training: run it again (Batch does)", file=sys.stderr)
        return int(JobExit.INTERRUPTED)
    print(json.dumps(report.to_json(), indent=2) if args.json else report.render())
    return int(JobExit.SUCCEEDED if report.passed else JobExit.PREFLIGHT_FAILED)
