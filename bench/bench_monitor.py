"""Control-plane benchmark: records/s through the metrics monitor, cold-start import time of each Lambda
handler, and the size of the Lambda artefacts (function code + the aurax layer).

    .venv/bin/python bench/bench_monitor.py [--records 100000] [--no-pip]

The layer is measured by pip-installing layers/aurax/requirements.txt for the Lambda platform
(manylinux2014_x86_64, CPython 3.11) into a temporary folder; with --no-pip (or when pip cannot reach an
index) it is measured from the installed distributions instead. boto3 is not counted: the runtime has it.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import UTC, datetime, timedelta
from importlib.metadata import distribution
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYER = ROOT / "layers" / "aurax"
FUNCTIONS = ROOT / "functions"
ENV = {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
       "DATA_BUCKET": "b", "RUN_TABLE": "t", "IDEMPOTENCY_TABLE": "i", "ALERT_TOPIC_ARN": "arn:aws:sns:us-east-1:1:a",
       "EVENT_BUS_NAME": "e", "JOB_QUEUES": "q", "POWERTOOLS_SERVICE_NAME": "bench",
       "POWERTOOLS_METRICS_NAMESPACE": "AuraX", "POWERTOOLS_TRACE_DISABLED": "true"}


def lines(n: int) -> list[bytes]:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    return [json.dumps({"kind": "train", "run_id": "bench-run", "time": (t0 + timedelta(seconds=i)).isoformat(),
                        "step": i, "epoch": 0, "loss": 3.0 - i * 1e-6, "lr": 1e-5, "samples_per_s": 12.0}).encode()
            for i in range(n)]


def monitor_throughput(n: int, repeats: int = 3) -> float:
    from aurax_contracts.config import MonitoringConfig
    from aurax_control.monitor import ChunkMonitor, MonitorState

    chunk = lines(n)
    rates = []
    for _ in range(repeats):
        monitor = ChunkMonitor("bench-run", MonitoringConfig(), MonitorState())
        start = time.perf_counter()
        for line in chunk:
            monitor.feed_line(line)
        monitor.finish(datetime.now(UTC))
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


IMPORT_SNIPPET = """
import importlib.util, sys, time
start = time.perf_counter()
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(time.perf_counter() - start)
"""


def cold_import(app: Path, repeats: int = 3) -> float:
    """Median seconds to import the handler module in a fresh interpreter (what a cold start pays)."""
    env = {**os.environ, **ENV}
    times = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", IMPORT_SNIPPET, str(app)], env=env, capture_output=True,
                             text=True, check=True)
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


def tree_size(paths: list[Path], root: Path | None = None) -> tuple[int, int]:
    """(bytes on disk, bytes zipped) of the files under paths, without caches; archive names are relative to
    `root` (default: each path's parent), as they would lie in the artefact."""
    raw = 0
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for base in paths:
            files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
            for path in files:
                if "__pycache__" in path.parts or path.suffix == ".pyc":
                    continue
                raw += path.stat().st_size
                archive.write(path, path.relative_to(root or base.parent))
    return raw, len(buffer.getvalue())


def layer_dependencies(use_pip: bool) -> tuple[str, int, int]:
    if use_pip:
        with tempfile.TemporaryDirectory() as tmp:
            result = subprocess.run(
                [sys.executable, "-m", "pip", "install", "--quiet", "--target", tmp,
                 "--platform", "manylinux2014_x86_64", "--python-version", "3.11", "--only-binary=:all:",
                 "-r", str(LAYER / "requirements.txt")],
                capture_output=True, text=True)
            if result.returncode == 0:
                raw, zipped = tree_size([p for p in Path(tmp).iterdir()])
                return "pip install (manylinux2014_x86_64, cp311)", raw, zipped
            print(f"pip install failed ({result.stderr.strip().splitlines()[-1:]}); measuring installed files",
                  file=sys.stderr)
    files: list[Path] = []
    site = Path(distribution("pydantic").locate_file(""))
    for name in ("pydantic", "pydantic-core", "annotated-types", "typing-extensions", "typing-inspection", "PyYAML",
                 "aws-lambda-powertools", "jmespath"):
        dist = distribution(name)
        files += [Path(dist.locate_file(f)) for f in dist.files or [] if not str(f).endswith(".pyc")]
    return "installed distributions", *tree_size([f for f in files if f.is_file()], root=site)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--no-pip", action="store_true")
    args = parser.parse_args()
    os.environ.update(ENV)

    print(f"monitor throughput ({args.records:,} train records, median of 3): "
          f"{monitor_throughput(args.records):,.0f} records/s")
    print("\ncold-start import of each handler module (fresh interpreter, median of 3):")
    for app in sorted(FUNCTIONS.glob("*/app.py")):
        print(f"  {app.parent.name:18s} {cold_import(app) * 1000:7.0f} ms")
    baseline = subprocess.run([sys.executable, "-c", "import time; s=time.perf_counter(); "
                               "from aws_xray_sdk.core import xray_recorder; "
                               "from aws_lambda_powertools import Tracer; Tracer(); print(time.perf_counter()-s)"],
                              env={**os.environ, **ENV}, capture_output=True, text=True)
    if baseline.returncode == 0:
        print(f"  (Tracer() alone, not used: {float(baseline.stdout.strip()) * 1000:.0f} ms)")

    print("\nLambda artefacts:")
    code_raw, code_zip = tree_size([LAYER / "aurax_contracts", LAYER / "aurax_control"])
    print(f"  layer code (aurax_contracts + aurax_control): {code_raw / 1e3:,.0f} kB, {code_zip / 1e3:,.0f} kB zipped")
    for app in sorted(FUNCTIONS.glob("*/app.py")):
        raw, zipped = tree_size([app.parent])
        print(f"  function {app.parent.name:18s} {raw / 1e3:6.1f} kB, {zipped / 1e3:5.1f} kB zipped")
    how, dep_raw, dep_zip = layer_dependencies(not args.no_pip)
    print(f"  layer dependencies ({how}): {dep_raw / 1e6:,.1f} MB, {dep_zip / 1e6:,.1f} MB zipped")
    total = code_raw + dep_raw
    print(f"  layer total: {total / 1e6:,.1f} MB unzipped (Lambda limit 250 MB for function + layers)")


if __name__ == "__main__":
    main()
