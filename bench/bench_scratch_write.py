"""Sequential fsync'd write rate of a folder, and what it means for the emergency checkpoint of a full
fine-tune (5.04 GB, measured) within the 120 s spot notice.

    python bench/bench_scratch_write.py [--dir /scratch] [--gb 2] [--checkpoint-gb 5.04]

Writes `--gb` of incompressible bytes in 64 MiB chunks to a temporary file in `--dir`, fsyncs (as the checkpoint
writer does), and prints MB/s and the seconds a checkpoint of `--checkpoint-gb` takes at that rate. Run it in
the job image on a Batch instance (`/scratch` is the instance-store NVMe on g4dn) to measure what AWS does not
document: the instance store's sequential write rate. The file is deleted afterwards.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

CHUNK_BYTES = 64 * 2**20
SPOT_NOTICE_SECONDS = 120.0


def measure(folder: Path, total_bytes: int) -> float:
    """Bytes per second of writing `total_bytes` sequentially to a new file in `folder`, fsync included."""
    chunk = os.urandom(CHUNK_BYTES)  # incompressible, like optimizer state
    fd, name = tempfile.mkstemp(dir=folder, prefix=".aurax-write-bench-")
    try:
        started = time.perf_counter()
        written = 0
        with os.fdopen(fd, "wb", buffering=0) as handle:
            while written < total_bytes:
                written += handle.write(chunk[:min(CHUNK_BYTES, total_bytes - written)])
            os.fsync(handle.fileno())
        return written / (time.perf_counter() - started)
    finally:
        Path(name).unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()), help="folder to measure")
    parser.add_argument("--gb", type=float, default=2.0, help="gigabytes (1e9 B) to write (default 2)")
    parser.add_argument("--checkpoint-gb", type=float, default=5.04, help="checkpoint size to project (5.04)")
    args = parser.parse_args()
    rate = measure(args.dir, int(args.gb * 1e9))
    seconds = args.checkpoint_gb * 1e9 / rate
    print(f"folder: {args.dir}")
    print(f"sequential write with fsync: {rate / 1e6:.0f} MB/s over {args.gb:g} GB")
    print(f"a {args.checkpoint_gb:g} GB checkpoint: {seconds:.1f} s to write "
          f"({seconds / SPOT_NOTICE_SECONDS:.0%} of the {SPOT_NOTICE_SECONDS:.0f} s spot notice, before the upload)")


if __name__ == "__main__":
    main()
