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
                labels: torch.Tensor, use_cache: bool = True) -> SimpleNamespace:
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


class Recording(SqrtLoss):
    def __init__(self, events: list[str]) -> None:
        super().__init__()
        self.events = events

    def forward(self, attention_mask: torch.Tensor, encoder_outputs: tuple[torch.Tensor],
                labels: torch.Tensor, use_cache: bool = True) -> SimpleNamespace:
        self.events.append("forward" if not use_cache else "forward building a key/value cache")
        return super().forward(attention_mask, encoder_outputs, labels)


@pytest.mark.parametrize("micro_batches", [1, 4])
def test_a_step_copies_every_micro_batch_before_computing_and_reads_the_host_once(
        micro_batches: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A copy to the GPU between forward passes, or a `.item()` per micro-batch, would make the host wait for
    the GPU once per micro-batch; the step reads the host once, whatever its number of micro-batches. No forward
    pass builds a key/value cache (useless in training; under `torch.compile` it forces recompilation)."""
    events: list[str] = []
    copy = Batch.to
    monkeypatch.setattr(Batch, "to", lambda batch, device: events.append("copy") or copy(batch, device))
    reads: list[str] = []

    def counted(name: str, original: object) -> object:
        return lambda tensor, *args: reads.append(name) or original(tensor, *args)  # type: ignore[operator]

    for name in ("item", "tolist", "__float__", "__int__"):
        monkeypatch.setattr(torch.Tensor, name, counted(name, getattr(torch.Tensor, name)))
    model = Recording(events)
    with torch.no_grad():
        model.w.fill_(4.0)
    trainer = Trainer(options=None, config=tiny_config(), ctx=DistContext(0, 1, torch.device("cpu")))  # type: ignore[arg-type]
    batch = Batch(torch.zeros(1, 1, 1, dtype=torch.long), torch.zeros(1, 1, 1), torch.ones(1, 1, dtype=torch.long),
                  tokens=1)
    precision = Precision("fp32", "cpu")
    params = list(model.parameters())
    result = trainer._step(model, [batch] * micro_batches, [0] * micro_batches, micro_batches,
                           torch.optim.SGD(params, lr=0.1), precision.grad_scaler(), precision, params, step=1)
    assert events == ["copy"] * micro_batches + ["forward"] * micro_batches
    assert reads == ["tolist"] and result.loss == pytest.approx(2.0)
