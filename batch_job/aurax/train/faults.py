"""Fault injection for the tests: environment variables that make the job fail at a chosen point, exactly as
the real failure would. Unset in production; each costs one dictionary lookup where it is checked.

- `AURAX_FAULT_NAN_AT_STEP=N`: the loss of optimizer step N (1-based: the step that would make `step == N`)
  becomes NaN, so the divergence guard fires there.
- `AURAX_FAULT_OVERFLOW_FROM_STEP=N`: from optimizer step N on, every step counts as skipped by the fp16
  loss scaler (as when the scale collapses), so the overflow guard can be tested without a GPU.
- `AURAX_FAULT_KILL_AT_STEP=N`: the process SIGKILLs itself right after optimizer step N, before any
  checkpoint of that step (a spot reclaim with no notice).
- `AURAX_FAULT_KILL_IN_CHECKPOINT=N`: the process SIGKILLs itself while writing the checkpoint of step N,
  after its first file and before its manifest (a reclaim in the middle of a save).
- `AURAX_FAULT_SLOW_STEP_SECONDS=S`: sleep S seconds after each optimizer step, so that a test can deliver a
  signal or a spot notice while training is certainly still running.
- `AURAX_FAULT_HANG_AT_STEP=N`: optimizer step N never returns (as when a collective or a data read hangs):
  signals are noted but the step goes on waiting; the heartbeat thread goes on beating.
- `AURAX_FAULT_CLOCK_SKEW=R:S`: on rank R, the clock of the time-based checkpoint trigger runs S seconds ahead
  after every step (ranks whose clocks disagree).
- `AURAX_FAULT_LOSS_AT_STEP=N:X`: the loss of optimizer step N is reported as X (a finite loss of any size,
  for the divergence guards).
- `AURAX_FAULT_LOSS_SCALE=X`: the fp16 loss scale is reported as X (zero: the scale collapsed).
- `AURAX_FAULT_SAVE_FAILS_AT_STEP=N`: writing the checkpoint of step N fails with a storage error after its first
  file (S3 failing an upload after boto3's own retries).
"""

from __future__ import annotations

import os
import signal
import time


def _int_env(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None


def nan_at(step: int) -> bool:
    return _int_env("AURAX_FAULT_NAN_AT_STEP") == step


def hang_at(step: int) -> None:
    if _int_env("AURAX_FAULT_HANG_AT_STEP") == step:
        while True:  # a hung collective ignores signals too; only SIGKILL ends it
            time.sleep(3600)


def clock(rank: int, steps_done: int) -> float:
    """time.monotonic(), skewed on the rank AURAX_FAULT_CLOCK_SKEW names."""
    now = time.monotonic()
    if skew := os.environ.get("AURAX_FAULT_CLOCK_SKEW"):
        skewed_rank, seconds = skew.split(":")
        if int(skewed_rank) == rank:
            now += float(seconds) * steps_done
    return now


def loss_at(step: int, loss: float) -> float:
    if forced := os.environ.get("AURAX_FAULT_LOSS_AT_STEP"):
        at, value = forced.split(":")
        if int(at) == step:
            return float(value)
    return loss


def loss_scale(scale: float) -> float:
    forced = os.environ.get("AURAX_FAULT_LOSS_SCALE")
    return float(forced) if forced else scale


def overflow_at(step: int) -> bool:
    start = _int_env("AURAX_FAULT_OVERFLOW_FROM_STEP")
    return start is not None and step >= start


def after_step(step: int) -> None:
    if _int_env("AURAX_FAULT_KILL_AT_STEP") == step:
        os.kill(os.getpid(), signal.SIGKILL)
    if delay := os.environ.get("AURAX_FAULT_SLOW_STEP_SECONDS"):
        time.sleep(float(delay))


def checkpoint_file_written(step: int) -> None:
    if _int_env("AURAX_FAULT_KILL_IN_CHECKPOINT") == step:
        os.kill(os.getpid(), signal.SIGKILL)
    if _int_env("AURAX_FAULT_SAVE_FAILS_AT_STEP") == step:
        from ..storage import StorageError

        raise StorageError(f"cannot write the checkpoint of step {step}: injected fault")
