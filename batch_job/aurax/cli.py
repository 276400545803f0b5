"""`aurax`: the one command line for people and for the Batch jobs.

Subcommands live in `aurax.commands`, one module each, found at start-up: a module defines
`register(subparsers)` that adds its parser and sets `handler=` to a function `(argparse.Namespace) -> int`.
A module whose `GROUP = "job"` registers under `aurax job`. Command modules import heavy libraries (torch,
librosa) inside their handlers so that `aurax --help` stays instant.

Exit codes are `aurax_contracts.JobExit` (documented in the README).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import signal
import sys
from collections.abc import Sequence

from aurax_contracts import ContractError, JobExit

from . import commands
from .errors import InputError
from .interrupts import hold_sigterm_until_watched
from .storage import StorageError

EPILOG = """exit codes: 0 ok, 1 unexpected error, 64 bad config or arguments, 65 bad input data,
75 interrupted (checkpoint saved; run the same command again), 76 diverged, 77 over budget,
78 preflight failed. See README.md#one-exit-code-contract."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aurax", description="AURA-X Train Control: fine-tune MusicGen-small for Amapiano, safely.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    top = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    job = top.add_parser("job", help="the Batch job commands (prepare, train, evaluate)",
                         description="Commands the AWS Batch jobs run; each works on s3:// and local URIs.")
    job_sub = job.add_subparsers(dest="job_command", metavar="JOB", required=True)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(job_sub if getattr(module, "GROUP", None) == "job" else top)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if "AWS_BATCH_JOB_ID" in os.environ:  # a Batch job's container: this process is its PID 1
        hold_sigterm_until_watched()
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        code = int(args.handler(args))
        sys.stdout.flush()  # inside the try: a reader that went away (`| head`) is seen here
        return code
    except BrokenPipeError:
        # The reader of our output closed it: stop quietly (Python docs, signal module, "Note on SIGPIPE");
        # stdout goes to devnull so that the interpreter's final flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except ContractError as exc:
        print(f"aurax: {exc}", file=sys.stderr)
        return JobExit.BAD_CONFIG
    except (StorageError, InputError) as exc:
        print(f"aurax: {exc}", file=sys.stderr)
        return JobExit.BAD_INPUT
    except KeyboardInterrupt:
        print("aurax: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
