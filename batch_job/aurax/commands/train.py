"""`aurax job train`: fine-tune MusicGen on a prepared dataset until an epoch, resuming from checkpoints.

Exit codes: 0 trained to --until-epoch (or already there); 64 bad config, a checkpoint from another
setup, or training.total_epochs changed on resume without training.allow_schedule_change (or after the
schedule ended: a finished run is not extended); 65 dataset or URI unreadable/corrupt; 75 interrupted after
an emergency checkpoint, or a checkpoint could not be written (run the same command again: it resumes from
the last good one); 76 diverged (last good checkpoint kept); 77 stopped by the budget guard.
"""

from __future__ import annotations

import argparse
import sys

GROUP = "job"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


#: The longest metrics flush period: heartbeats (the idle watch's evidence of progress) go out at this period.
MAX_FLUSH_SECONDS = 600.0


def _flush_seconds(text: str) -> float:
    value = float(text)
    if not 0 <= value <= MAX_FLUSH_SECONDS:  # NaN fails too
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and {MAX_FLUSH_SECONDS:g} seconds (heartbeats "
                                         "go out at this period, and the idle watch needs them)")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="fine-tune MusicGen until an epoch, resuming from the newest good checkpoint",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, metavar="URI", help="run config (YAML/JSON), s3:// or local")
    parser.add_argument("--run-uri", required=True, metavar="URI", help="the run's folder: s3://BUCKET/runs/ID")
    parser.add_argument("--dataset-uri", required=True, metavar="URI", help="prepared dataset (aurax job prepare)")
    parser.add_argument("--until-epoch", required=True, type=_positive_int, metavar="N",
                        help="train until N epochs are complete, then exit 0")
    parser.add_argument("--checkpoint-uri", metavar="URI", help="default: {run-uri}/checkpoints")
    parser.add_argument("--metrics-uri", metavar="URI", help="default: {run-uri}/metrics")
    parser.add_argument("--work-dir", metavar="DIR", help="local scratch (dataset cache, checkpoint staging)")
    parser.add_argument("--checkpoint-every-steps", type=_positive_int, metavar="N",
                        help="also checkpoint every N optimizer steps (overrides checkpoint.interval_steps)")
    parser.add_argument("--metrics-flush-seconds", type=_flush_seconds, default=60.0, metavar="S",
                        help="write at most one metrics object per S seconds (default 60)")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from ..train.distributed import launch_workers, workers_to_launch

    if workers := workers_to_launch():  # several GPUs: one worker per GPU, each re-running this command line
        return launch_workers(sys.argv[1:], workers)
    from ..train.loop import run_training
    from ..train.options import TrainOptions

    return run_training(TrainOptions.from_args(args))
