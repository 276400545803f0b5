"""Data-parallel training on every GPU of the instance, with the single-process path as world size 1.

`aurax job train` is what the Batch job definition runs. On an instance with several GPUs (g4dn.12xlarge)
that process becomes a launcher: it starts one worker per GPU running the same command, with torchrun's
environment contract (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), forwards SIGTERM to them and
exits with their exit code. Not torchrun itself: its elastic agent reports any worker failure as exit 1,
which would hide the codes Batch's retry strategy and the state machine act on (75, 76, 77). A command
started under torchrun (WORLD_SIZE set) works too.

Environment: `AURAX_CPU_WORKERS=N` runs N gloo workers on the CPU (the same code path, for tests);
`AURAX_DEVICE=cpu` keeps training on the CPU on a GPU machine.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from types import FrameType
from typing import Any

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

#: How long the launcher lets the other workers finish (e.g. an emergency checkpoint) after one has failed.
_GRACE_SECONDS = 120


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def max_ints(self, values: list[int]) -> list[int]:
        """The largest of each value over all ranks, in one collective: every rank reaches the same decisions
        (a stop cause, whether a checkpoint is due) even when their signals or clocks disagree."""
        if not self.distributed:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.int64, device=self._comm_device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return [int(v) for v in tensor.tolist()]

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """Sum over ranks (step loss shares, validation sums), on the tensor's own device."""
        if not self.distributed:
            return values
        reduced = values.to(self._comm_device, copy=True)
        dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
        return reduced.to(values.device)

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank; doubles as a barrier after rank 0's checkpoint save."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    @property
    def _comm_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


def _device_for(local_rank: int) -> torch.device:
    if os.environ.get("AURAX_DEVICE", "").lower() == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def init_distributed() -> DistContext:
    """This process's rank and device; joins the process group when started as one of several workers."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = _device_for(int(os.environ.get("LOCAL_RANK", "0")))
    if world_size > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world_size,
                                timeout=timedelta(minutes=30))
    return DistContext(rank=rank, world_size=world_size, device=device)


def workers_to_launch() -> int:
    """How many workers this process should start (0: train in this process)."""
    if "WORLD_SIZE" in os.environ:  # already a worker (ours or torchrun's)
        return 0
    if workers := int(os.environ.get("AURAX_CPU_WORKERS", "0")):
        return workers if workers > 1 else 0
    if os.environ.get("AURAX_DEVICE", "").lower() == "cpu" or not torch.cuda.is_available():
        return 0
    count = torch.cuda.device_count()
    return count if count > 1 else 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def launch_workers(argv: Sequence[str], workers: int) -> int:
    """Run `aurax <argv>` as `workers` ranks; return rank 0's exit code, or the first failure's (75 at once when
    Batch stopped the job before the workers started: the launcher starts no `InterruptWatch` to act on it; 75
    for a worker the forwarded SIGTERM ended before it could handle it)."""
    from aurax_contracts import JobExit

    from ..interrupts import sigterm_held

    port = _free_port()
    procs: list[subprocess.Popen[bytes]] = []
    forwarded: set[int] = set()

    def forward(signum: int, frame: FrameType | None) -> None:
        forwarded.add(signum)
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if sigterm_held():  # a SIGTERM held while torch imported: no worker would ever see it
            log.warning("SIGTERM received before the workers started: exiting 75 (nothing trained, nothing lost)")
            return int(JobExit.INTERRUPTED)
        for rank in range(workers):
            env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(workers),
                   "LOCAL_WORLD_SIZE": str(workers), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
            if os.environ.get("AURAX_CPU_WORKERS"):
                env["AURAX_DEVICE"] = "cpu"
            procs.append(subprocess.Popen([sys.executable, "-m", "aurax.cli", *argv], env=env))
        log.info("launched %d data-parallel workers (pids %s)", workers, [p.pid for p in procs])
        failed_at: float | None = None
        while any(p.poll() is None for p in procs):
            if failed_at is None and any(p.returncode not in (None, 0) for p in procs):
                failed_at = time.monotonic()
            if failed_at is not None and time.monotonic() - failed_at > _GRACE_SECONDS:
                log.error("a worker failed; stopping the others")
                for proc in procs:
                    if proc.poll() is None:
                        proc.kill()
            time.sleep(0.2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    codes = [p.returncode for p in procs]
    log.info("workers exited with %s", codes)
    if signal.SIGTERM in forwarded:
        # A worker still importing (before its own hold) dies of the forwarded SIGTERM's default action: it had
        # trained nothing, so the job was interrupted, not failed, and Batch should retry it.
        codes = [int(JobExit.INTERRUPTED) if c == -signal.SIGTERM else c for c in codes]
    if codes[0] != 0:
        return codes[0] if codes[0] > 0 else 1
    return next((c if c > 0 else 1 for c in codes if c != 0), 0)
