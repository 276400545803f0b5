"""The learning-rate schedule: linear warm-up, then cosine decay to zero (audiocraft's MusicGen recipe).

The same formula as `transformers.get_cosine_schedule_with_warmup`, written here because importing that
helper pulls in transformers' Trainer utilities and peft (seconds of start-up per job attempt).
"""

from __future__ import annotations

import math
from functools import partial

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def _factor(step: int, warmup_steps: int, total_steps: int) -> float:
    if step < warmup_steps:
        return step / max(1, warmup_steps)
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def cosine_with_warmup(optimizer: Optimizer, warmup_steps: int, total_steps: int) -> LambdaLR:
    """Its state (`last_epoch`, the step count) is all a checkpoint needs; the formula is rebuilt on resume."""
    return LambdaLR(optimizer, partial(_factor, warmup_steps=warmup_steps, total_steps=total_steps))
