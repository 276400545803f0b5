"""Benchmark of `aurax local`: wall time of one whole local run and of each part (deploying the template into
the emulation, each Batch job attempt), GO with the injected spot reclaim, then NO-GO.

    .venv/bin/python bench/bench_local.py [--variant go|no-go|both]

Prints one table per run. The total is what a newcomer waits for `make local` (after the install).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

from aurax.local.pipeline import run_local


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variant", choices=("go", "no-go", "both"), default="both")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average at start {os.getloadavg()[0]:.2f}")
    for variant in (("go", "no-go") if args.variant == "both" else (args.variant,)):
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="aurax-bench-") as reports:
            result = run_local(variant, interrupt=variant == "go", report_dir=Path(reports))  # type: ignore[arg-type]
        total = time.monotonic() - started
        print(f"\naurax local --variant {variant}: {result.end_state} ({result.outcome}) in {total:.1f} s")
        print(f"  {'deploy template into the emulation':<48} {result.deploy_seconds:6.1f} s")
        for attempt in result.batch_attempts:
            name = attempt["job"].removeprefix(result.run_id + "-")
            note = f"  ({attempt['status_reason']})" if attempt["status_reason"] else ""
            print(f"  {name + ' attempt ' + str(attempt['attempt']):<48} {attempt['seconds']:6.1f} s{note}")
        jobs = sum(a["seconds"] for a in result.batch_attempts)
        rest = total - result.deploy_seconds - jobs
        print(f"  {'everything else (Lambda tasks, polling, reports)':<48} {rest:6.1f} s")
        print(f"  load average now {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
