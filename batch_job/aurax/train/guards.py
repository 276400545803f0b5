"""Which values the training loop may write as metric records, and which mean divergence (exit 76).

Every value the loop produces either fits its record (`aurax_contracts.metrics`) or is divergence: a loss
that validation would reject as absurd must stop the run the way a NaN does, not crash the job with a
validation error (exit 1, which Batch and the state machine read as a bug).

- loss (training or validation): NaN -> `nan-loss`; +-inf -> `inf-loss`; finite outside [0, MAX_LOSS] ->
  `loss-out-of-range`.
- learning rate outside [0, MAX_LR] or not finite -> `lr-out-of-range` (a schedule bug must not train on).
- fp16 loss scale of zero or not finite -> `loss-scale-collapse`: at zero every gradient is zero, so no step
  overflows and the overflow guard would never fire while training silently stalls.
- gradient norm: written as inf when not finite (a skipped step; a run of them is `overflow-collapse`).
- throughput: any finite non-negative figure fits its record.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from aurax_contracts.metrics import MAX_LOSS, MAX_LR


@dataclass(frozen=True)
class Divergence:
    cause: str
    value: float

    def describe(self) -> str:
        return f"{self.cause} ({self.value:g})"


def loss_divergence(loss: float) -> Divergence | None:
    if math.isnan(loss):
        return Divergence("nan-loss", loss)
    if math.isinf(loss):
        return Divergence("inf-loss", loss)
    if not 0.0 <= loss <= MAX_LOSS:
        return Divergence("loss-out-of-range", loss)
    return None


def step_divergence(loss: float, lr: float, loss_scale: float | None) -> Divergence | None:
    """The first value of a finished step that cannot be recorded, as divergence; None when all fit."""
    if found := loss_divergence(loss):
        return found
    if not (math.isfinite(lr) and 0.0 <= lr <= MAX_LR):
        return Divergence("lr-out-of-range", lr)
    if loss_scale is not None and not (math.isfinite(loss_scale) and loss_scale > 0.0):
        return Divergence("loss-scale-collapse", loss_scale)
    return None


def recordable_grad_norm(grad_norm: float) -> float:
    return grad_norm if math.isfinite(grad_norm) else math.inf


def recordable_throughput(samples: int, seconds: float) -> float:
    return samples / seconds if seconds > 0 and math.isfinite(seconds) else 0.0
