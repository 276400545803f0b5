"""Fault injection for the tests of `aurax job prepare`: environment variables that make the job slow or kill
it at a chosen point, as a real reclaim would. Unset in production; each costs one dictionary lookup.

- `AURAX_FAULT_SLOW_BATCH_SECONDS=S`: sleep S seconds after each encoded batch, so that a test can deliver a
  SIGTERM while the job is certainly still encoding.
- `AURAX_FAULT_KILL_AFTER_SHARDS=N`: the process SIGKILLs itself right after writing its N-th shard, before
  the progress record lists it (a reclaim with no notice).
"""

from __future__ import annotations

import os
import signal
import time


def after_batch() -> None:
    if delay := os.environ.get("AURAX_FAULT_SLOW_BATCH_SECONDS"):
        time.sleep(float(delay))


def after_shard(shards_written: int) -> None:
    if os.environ.get("AURAX_FAULT_KILL_AFTER_SHARDS") == str(shards_written):
        os.kill(os.getpid(), signal.SIGKILL)
