"""One optimizer step (`Trainer._step`) with a real `GradScaler` and without one: a non-finite gradient never
reaches the weights, and the step reports itself skipped so the overflow guard can count it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from aurax.train.data import Batch
from aurax.train.distributed import DistContext
from aurax.train.loop import StepResult, Trainer
from aurax.train.precision import Precision

from .conftest import tiny_config


class SqrtLoss(torch.nn.Module):
    """Loss sqrt(w): at w = 0 the loss is finite (0) but its gradient is inf, as in an overflowed fp16 backward."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, attention_mask: torch.Tensor, encoder_outputs: tuple[torch.Tensor],
                labels: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(loss=(self.w.float() ** 0.5).sum())


def one_step(model: SqrtLoss, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
             precision: Precision) -> StepResult:
    trainer = Trainer(options=None, config=tiny_config(), ctx=DistContext(0, 1, torch.device("cpu")))  # type: ignore[arg-type]
    batch = Batch(torch.zeros(1, 1, 1, dtype=torch.long), torch.zeros(1, 1, 1), torch.ones(1, 1, dtype=torch.long),
                  tokens=1)
    return trainer._step(model, [batch], [0], 1, optimizer, scaler, precision, list(model.parameters()), step=1)


@pytest.mark.parametrize("name", ["fp32", "fp16"])
def test_a_non_finite_gradient_is_skipped_not_applied_and_a_finite_one_is_applied(name: str) -> None:
    precision = Precision(name, "cpu")  # type: ignore[arg-type]
    model = SqrtLoss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scaler = precision.grad_scaler()
    scale = scaler.get_scale()

    overflowed = one_step(model, optimizer, scaler, precision)
    assert (overflowed.loss, overflowed.grad_norm, overflowed.skipped) == (0.0, float("inf"), True)
    assert model.w.item() == 0.0  # untouched: not NaN
    if precision.uses_loss_scaling:  # the real scaler backed off: what a run of skipped steps collapses
        assert scaler.get_scale() == scale * scaler.get_backoff_factor()

    with torch.no_grad():
        model.w.fill_(4.0)
    applied = one_step(model, optimizer, scaler, precision)
    assert (applied.loss, applied.skipped) == (2.0, False) and applied.grad_norm == pytest.approx(0.25)
    assert model.w.item() < 4.0
