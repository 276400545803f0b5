"""Micro-batch, gradient accumulation and activation checkpointing, chosen from the GPU's memory.

`training.batch_size` is the examples per optimizer step over all ranks. Each rank takes its share (sizes
differing by at most one) and splits it into balanced micro-batches. Gradients are normalised over the whole
step's counted tokens (see `loop`), so the result does not depend on this split (up to float rounding), and
a run may resume on another GPU type, or another number of GPUs, with another plan.

On a GPU the plan comes from a memory probe at start: one forward and backward pass at micro-batches 1 and 2,
with and without activation checkpointing, gives each mode's fixed memory and memory per example (linear in the
micro-batch). Adding the optimizer's state (two fp32 moments per trained parameter, allocated at the first step)
gives the largest micro-batch of each mode that fits `MEMORY_MARGIN` of the memory this process can reach
(`memory_budget`). Of the plans that fit, the one with the shortest predicted step wins, by a throughput model
fitted to this project's H200 measurements (shared/notes/gpu-measurements.md): a forward and backward of m
examples costs as much as m + `FIXED_COST_EXAMPLES` examples would at full efficiency, and checkpointing multiplies
the time by 1 / `CHECKPOINTING_SPEED`. So a step of B examples in n micro-batches takes about (B + n x 12.5) /
speed: no checkpointing where a reasonable micro-batch fits (an H200), checkpointing where it lets one fit (a 16 GB
T4 with 30 s segments).

`AURAX_GPU_MEMORY_GIB=N` plans (and caps the process) as if the GPU had N GiB: to share a GPU, or to measure what
a T4's 15 GiB allows on a larger GPU.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch

from aurax_contracts import ContractError

from ..errors import InputError

log = logging.getLogger(__name__)

#: Share of the GPU's memory a plan may fill: the rest absorbs allocator fragmentation, the CUDA context and
#: prompts longer than the probe's.
MEMORY_MARGIN = 0.88
#: Throughput model (fit to the H200 table in shared/notes/gpu-measurements.md: sdpa without checkpointing
#: 34.6 samples/s at micro-batch 4 and 79.8 at 16; with it 22.3 at 4 and 67.4 at 32).
FIXED_COST_EXAMPLES = 12.5
CHECKPOINTING_SPEED = 0.67
GIB = 1024 ** 3


@dataclass(frozen=True)
class MemoryFit:
    """Peak memory of one forward + backward pass as fixed + per_example x micro-batch, in bytes."""

    checkpointing: bool
    fixed: float
    per_example: float

    def largest_micro_batch(self, usable: float) -> int:
        if self.per_example <= 0:
            return 1 << 20
        return max(0, math.floor((usable - self.fixed) / self.per_example))


@dataclass(frozen=True)
class Choice:
    micro_batch_size: int
    accumulation_steps: int
    activation_checkpointing: bool


def largest_rank_share(batch_size: int, world_size: int) -> int:
    """Examples of a step on the rank with the most (`data.rank_positions`: the shares differ by at most one,
    and rank 0's is never the larger): what a plan must fit."""
    return -(-batch_size // world_size)


def accumulation_for(per_rank: int, micro_batch_size: int) -> Choice:
    steps = max(1, -(-per_rank // micro_batch_size))
    return Choice(-(-per_rank // steps), steps, False)


def predicted_step_cost(per_rank: int, accumulation_steps: int, checkpointing: bool) -> float:
    return (per_rank + accumulation_steps * FIXED_COST_EXAMPLES) / (CHECKPOINTING_SPEED if checkpointing else 1.0)


def choose(per_rank: int, fits: list[MemoryFit], usable: float, optimizer_bytes: float) -> Choice:
    """The fastest plan that fits, by the throughput model. Raises `InputError` when nothing fits."""
    best: tuple[float, Choice] | None = None
    for fit in fits:
        largest = min(per_rank, fit.largest_micro_batch(usable - optimizer_bytes))
        if largest < 1:
            continue
        steps = -(-per_rank // largest)
        cost = predicted_step_cost(per_rank, steps, fit.checkpointing)
        choice = Choice(-(-per_rank // steps), steps, fit.checkpointing)
        if best is None or cost < best[0] - 1e-9:
            best = (cost, choice)
    if best is None:
        need = min(fit.fixed + fit.per_example for fit in fits) + optimizer_bytes
        raise InputError(f"one example does not fit this GPU's memory ({need / GIB:.1f} GiB needed, "
                         f"{usable / GIB:.1f} GiB usable); fix: shorten training.segment_seconds, use "
                         "model.finetune: lora, or use a GPU with more memory")
    return best[1]


def configured_choice(per_rank: int, micro_batch_size: int, fits: list[MemoryFit], usable: float,
                      optimizer_bytes: float) -> Choice:
    """The plan for a configured `training.micro_batch_size`, among the checkpointing modes the config allows
    (`fits`: both for `auto`, one for `on` or `off`): the first that fits it, without checkpointing before with.
    When none is predicted to fit, the most frugal allowed mode, with a warning: the config asked for this size."""
    choice = accumulation_for(per_rank, micro_batch_size)
    modes = sorted(fits, key=lambda fit: fit.checkpointing)
    fitting = [fit for fit in modes if fit.largest_micro_batch(usable - optimizer_bytes) >= choice.micro_batch_size]
    if not fitting:
        largest = max(fit.largest_micro_batch(usable - optimizer_bytes) for fit in modes)
        log.warning("training.micro_batch_size %d is predicted not to fit this GPU's memory (largest: %d); the "
                    "first step may run out of memory: lower it, or remove it to let the job choose",
                    choice.micro_batch_size, largest)
    return Choice(choice.micro_batch_size, choice.accumulation_steps, (fitting or modes[::-1])[0].checkpointing)


def _memory_cap_gib(text: str) -> float:
    """AURAX_GPU_MEMORY_GIB as a positive, finite number of GiB; raises `ContractError` (exit 64) otherwise."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ContractError("AURAX_GPU_MEMORY_GIB", [
            f"{text!r} is not a positive number of GiB; fix: give the memory to plan for (e.g. 15 for a T4's "
            "budget), or unset it to plan for the whole GPU"])
    return value


def memory_budget(device: torch.device) -> float:
    """Bytes this process's tensors may use on `device`: the GPU's memory, or AURAX_GPU_MEMORY_GIB when set (which
    is also enforced, so that going over it fails as it would on the smaller GPU); at most what the driver reports
    free plus what this process's allocator already holds, so that the CUDA context and any other process's
    memory (neither of which the probe's peaks count) are left out."""
    total = float(torch.cuda.get_device_properties(device).total_memory)
    free, _ = torch.cuda.mem_get_info(device)
    reachable = float(free) + float(torch.cuda.memory_reserved(device))
    cap = os.environ.get("AURAX_GPU_MEMORY_GIB")
    if cap:
        capped = min(total, _memory_cap_gib(cap) * GIB)
        torch.cuda.set_per_process_memory_fraction(capped / total, device)
        return min(capped, reachable)
    return min(total, reachable)


def measure_fit(checkpointing: bool, run_pass: Callable[[int], None], device: torch.device) -> tuple[MemoryFit,
                                                                                                   dict[str, float]]:
    """Peak memory of `run_pass(micro_batch)` (a forward and backward) at micro-batches 1 and 2."""
    peaks = {}
    for micro in (1, 2):
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        run_pass(micro)
        torch.cuda.synchronize(device)
        peaks[micro] = float(torch.cuda.max_memory_allocated(device))
    per_example = max(0.0, peaks[2] - peaks[1])
    name = "on" if checkpointing else "off"
    return (MemoryFit(checkpointing, peaks[1] - per_example, per_example),
            {f"checkpointing-{name}@{m}": round(p / GIB, 3) for m, p in peaks.items()})
