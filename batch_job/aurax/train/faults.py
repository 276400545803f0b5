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
