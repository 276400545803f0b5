"""The pure rules of the loop: the micro-batch plan, the learning-rate schedule on resume, and which values
are divergence; and a step's independence of its micro-batch split, on the tiny model."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
import torch

from aurax.errors import InputError
from aurax.model import load_configured_musicgen
from aurax.train.data import ExampleSource, TextConditioning, epoch_order, split_micro_batches
from aurax.train.distributed import DistContext
from aurax.train.guards import recordable_grad_norm, recordable_throughput, step_divergence
from aurax.train.loop import Trainer
from aurax.train.plan import GIB, MemoryFit, choose
from aurax.train.precision import Precision
from aurax.train.schedule import lr_factor, planned_schedule, resume_schedule
from aurax.train.trainable import make_trainable
from aurax_contracts import ContractError
from aurax_contracts.metrics import MAX_LOSS, TrainStep

from .conftest import tiny_config

# Memory fits from the H200 table (shared/notes/gpu-measurements.md): sdpa without checkpointing 14.1 GiB at
# micro-batch 4 and 37.5 at 16; with it 8.6 at 4 and 14.5 at 32.
WITHOUT = MemoryFit(False, 14.1 * GIB - 4 * (23.4 / 12) * GIB, 23.4 / 12 * GIB)
WITH = MemoryFit(True, 8.6 * GIB - 4 * (5.9 / 28) * GIB, 5.9 / 28 * GIB)


def test_a_t4_sized_budget_checkpoints_a_large_micro_batch_and_an_h200_does_not_checkpoint() -> None:
    t4 = choose(32, [WITHOUT, WITH], usable=15 * GIB * 0.88, optimizer_bytes=0)
    assert (t4.activation_checkpointing, t4.micro_batch_size, t4.accumulation_steps) == (True, 16, 2)
    h200 = choose(32, [WITHOUT, WITH], usable=141 * GIB * 0.88, optimizer_bytes=0)
    assert (h200.activation_checkpointing, h200.micro_batch_size, h200.accumulation_steps) == (False, 32, 1)
    squeezed = choose(32, [WITHOUT, WITH], usable=16 * GIB, optimizer_bytes=3.4 * GIB)  # AdamW's moments count
    assert squeezed.activation_checkpointing and squeezed.micro_batch_size < 32
    with pytest.raises(InputError, match="does not fit this GPU's memory.*segment_seconds"):
        choose(32, [WITHOUT, WITH], usable=7 * GIB, optimizer_bytes=0)


def test_a_configured_micro_batch_checkpoints_only_where_the_config_allows_and_memory_needs_it(caplog) -> None:
    from aurax.train.plan import configured_choice

    t4 = 15 * GIB * 0.88
    auto_small = configured_choice(32, 2, [WITHOUT, WITH], t4, 0)  # 3 fit without checkpointing
    auto_large = configured_choice(32, 16, [WITHOUT, WITH], t4, 0)
    assert (auto_small.activation_checkpointing, auto_large.activation_checkpointing) == (False, True)
    assert (auto_large.micro_batch_size, auto_large.accumulation_steps) == (16, 2)
    assert configured_choice(32, 4, [WITH], t4, 0).activation_checkpointing  # `on` is on
    assert not caplog.records
    off = configured_choice(32, 16, [WITHOUT], t4, 0)  # `off` stays off, though 16 does not fit without
    assert not off.activation_checkpointing and "micro_batch_size 16 is predicted not to fit" in caplog.text


def test_the_schedule_is_refused_or_continued_without_a_jump_when_the_run_length_changes() -> None:
    three = planned_schedule(tiny_config(total_epochs=3, warmup_steps=10).training, steps_per_epoch=100)
    six = planned_schedule(tiny_config(total_epochs=6, warmup_steps=10).training, steps_per_epoch=100)
    assert resume_schedule(three, three, 100, allow_change=False) == (three, None)
    with pytest.raises(ContractError, match=r"set training.total_epochs back to 3.*allow_schedule_change"):
        resume_schedule(three, six, 100, allow_change=False)
    naive_jump = lr_factor(six, 100) / lr_factor(three, 100)
    assert naive_jump > 1.2  # what recomputing would have done
    extended, note = resume_schedule(three, six, 100, allow_change=True)
    assert note and "decays from" in note and extended.total_steps == 600
    assert lr_factor(extended, 100) == pytest.approx(lr_factor(three, 100))  # no jump
    assert lr_factor(extended, 99) == lr_factor(three, 99)  # the past is unchanged
    assert lr_factor(extended, 350) < lr_factor(extended, 101) and lr_factor(extended, 600) == 0.0
    again, note = resume_schedule(extended, six, 250, allow_change=False)  # the next resume: nothing changes
    assert again == extended and note is None
    cut, _ = resume_schedule(extended, planned_schedule(tiny_config(total_epochs=4, warmup_steps=10).training,
                                                        100), 300, allow_change=True)
    assert lr_factor(cut, 300) == pytest.approx(lr_factor(extended, 300)) and lr_factor(cut, 400) == 0.0
    warm, note = resume_schedule(three, six, 5, allow_change=True)
    assert warm.segments == [] and lr_factor(warm, 5) == lr_factor(three, 5) and "warm-up" in note


@pytest.mark.parametrize(("loss", "lr", "scale", "cause"), [
    (float("nan"), 1e-5, None, "nan-loss"),
    (float("inf"), 1e-5, None, "inf-loss"),
    (2.5e6, 1e-5, None, "loss-out-of-range"),  # the example: a finite loss the record cannot hold
    (-0.5, 1e-5, None, "loss-out-of-range"),
    (2.0, 1.5, None, "lr-out-of-range"),
    (2.0, float("nan"), None, "lr-out-of-range"),
    (2.0, 1e-5, 0.0, "loss-scale-collapse"),
    (2.0, 1e-5, float("inf"), "loss-scale-collapse"),
])
def test_each_value_out_of_its_records_range_is_divergence(loss: float, lr: float, scale: float | None,
                                                           cause: str) -> None:
    found = step_divergence(loss, lr, scale)
    assert found is not None and found.cause == cause


def test_every_value_the_guards_let_through_fits_the_training_record() -> None:
    for loss, lr, scale, norm, rate in [(MAX_LOSS, 1.0, 65536.0, float("nan"), (512, 1e-9)),
                                        (0.0, 0.0, 1e-30, float("inf"), (0, 0.0)), (3.2, 1e-5, None, 1e30, (16, 1.0))]:
        assert step_divergence(loss, lr, scale) is None
        TrainStep(run_id="r", time=datetime.now(UTC), step=1, epoch=0, loss=loss, lr=lr, loss_scale=scale,
                  grad_norm=recordable_grad_norm(norm), samples_per_s=recordable_throughput(*rate))


def test_a_step_is_the_same_whatever_its_micro_batch_split() -> None:
    """Token-weighted micro-batch losses: 8 examples as 1 x 8, 2 x 4, 3 x (3, 3, 2) or 8 x 1 give one loss and
    one update (up to float rounding), including clips too short for the segment (padding)."""
    config = tiny_config(micro_batch_size=None, batch_size=8, condition_dropout=0.5)
    config.model.decoder_dropout = 0.0  # the recipe's value; with dropout the masks follow the split
    import numpy as np

    from aurax.dataset.shards import Clip

    rng = np.random.default_rng(3)
    clips = [Clip(i, f"prompt {i % 3}", rng.integers(0, 64, (4, int(rng.integers(8, 40))), dtype=np.int16))
             for i in range(8)]
    text = TextConditioning({f"prompt {i}": torch.randn(2 + i, 64) for i in range(3)})
    source = ExampleSource(clips, text, segment_frames=20, seed=1, condition_dropout=0.5)
    order = epoch_order(1, 0, 8)
    results = {}
    for micro in (8, 4, 3, 1):
        torch.manual_seed(0)
        model = load_configured_musicgen(config.model)
        make_trainable(model, config)
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(params, lr=1.0)  # the update is the gradient (Adam's would amplify rounding)
        pieces = split_micro_batches(range(0, 8), micro)
        trainer = Trainer(options=None, config=config, ctx=DistContext(0, 1, torch.device("cpu")))  # type: ignore[arg-type]
        precision = Precision("fp32", "cpu")
        result = trainer._step(model, [source.train_batch(0, order, p) for p in pieces], [0] * len(pieces),
                               source.train_tokens(0, order, range(0, 8)), optimizer, precision.grad_scaler(),
                               precision, params, step=1)
        results[micro] = (result.loss, result.grad_norm, torch.cat([p.detach().flatten() for p in params]))
    loss, norm, weights = results[8]
    whole = load_configured_musicgen(config.model)  # the single-pass loss transformers computes
    with torch.no_grad():
        batch = source.train_batch(0, order, range(0, 8))
        reference = whole(attention_mask=batch.attention_mask, encoder_outputs=(batch.encoder_hidden,),
                          labels=batch.labels).loss.item()
    assert loss == pytest.approx(reference, rel=1e-5)
    for micro in (4, 3, 1):
        other_loss, other_norm, other_weights = results[micro]
        assert other_loss == pytest.approx(loss, rel=1e-5) and other_norm == pytest.approx(norm, rel=1e-4)
        assert torch.allclose(other_weights, weights, rtol=1e-5, atol=1e-7), micro
    assert math.isfinite(loss)


def test_a_config_written_for_the_old_batch_fields_gets_an_error_saying_what_to_write() -> None:
    from aurax_contracts import parse_run_config

    with pytest.raises(ContractError) as raised:
        parse_run_config("run_id: old-run\n"
                         "training: {batch_size: 4, grad_accum_steps: 4, gradient_checkpointing: true}\n")
    message = str(raised.value)
    assert "set batch_size to the old batch_size x grad_accum_steps x GPUs (16" in message
    assert "training.activation_checkpointing: on" in message


def test_the_plan_fits_the_rank_with_the_most_examples() -> None:
    """9 examples on 2 ranks are 4 on rank 0 and 5 on rank 1: the plan (the whole share in one pass on the CPU)
    is made for 5, and every rank's split has at most the plan's micro-batches."""
    from aurax.train.data import rank_positions

    config = tiny_config(batch_size=9, micro_batch_size=None)
    model = load_configured_musicgen(config.model)
    for rank in (0, 1):
        trainer = Trainer(options=None, config=config, ctx=DistContext(rank, 2, torch.device("cpu")))  # type: ignore[arg-type]
        plan = trainer._plan(model, None, 20, Precision("fp32", "cpu"), "adamw-foreach")  # type: ignore[arg-type]
        assert (plan.micro_batch_size, plan.accumulation_steps) == (5, 1)
        pieces = split_micro_batches(rank_positions(0, 9, 2, rank), plan.micro_batch_size)
        assert len(pieces) <= plan.accumulation_steps and max(map(len, pieces)) <= plan.micro_batch_size


def test_the_memory_budget_leaves_out_memory_this_process_cannot_reach(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe's peaks count only this process's tensors: the CUDA context, and other processes on the GPU,
    come off the budget (the driver's free memory plus what this process's allocator already holds)."""
    from types import SimpleNamespace

    from aurax.train.plan import memory_budget

    fractions: list[float] = []
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: SimpleNamespace(total_memory=16 * GIB))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (int(10.5 * GIB), 16 * GIB))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device: 5 * GIB)  # the model, already loaded
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda f, device: fractions.append(f))
    monkeypatch.delenv("AURAX_GPU_MEMORY_GIB", raising=False)
    cuda = torch.device("cuda", 0)
    assert memory_budget(cuda) == 15.5 * GIB  # 0.5 GiB of context
    monkeypatch.setenv("AURAX_GPU_MEMORY_GIB", "12")
    assert memory_budget(cuda) == 12 * GIB and fractions == [12 / 16]


def test_extending_a_run_whose_schedule_has_ended_is_refused_not_trained_at_zero_learning_rate() -> None:
    """After the last step of a 3-epoch run the cosine is at zero: "decaying from the current learning rate"
    would train every added epoch at a learning rate of 0 (GPU hours that change no weight). Refused, with what
    to do, whether or not the change is allowed; an extension just before the end still continues."""
    three = planned_schedule(tiny_config(total_epochs=3, warmup_steps=10).training, steps_per_epoch=100)
    six = planned_schedule(tiny_config(total_epochs=6, warmup_steps=10).training, steps_per_epoch=100)
    assert lr_factor(three, 300) == 0.0
    for allow in (True, False):
        with pytest.raises(ContractError, match=r"already ended at step 300.*learning rate is 0.*new run_id") as err:
            resume_schedule(three, six, 300, allow_change=allow)
        assert "allow_schedule_change: true to decay" not in str(err.value)
    late, note = resume_schedule(three, six, 299, allow_change=True)
    assert note and lr_factor(late, 299) == pytest.approx(lr_factor(three, 299)) and lr_factor(late, 299) > 0


@pytest.mark.parametrize("cap", ["abc", "0", "-4", "nan", "inf"])
def test_a_memory_cap_that_is_not_a_positive_size_is_a_bad_setting_not_a_crash(cap: str,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from aurax.train.plan import memory_budget

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: SimpleNamespace(total_memory=16 * GIB))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (int(10.5 * GIB), 16 * GIB))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device: 5 * GIB)
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda f, device: None)
    monkeypatch.setenv("AURAX_GPU_MEMORY_GIB", cap)
    with pytest.raises(ContractError, match=r"(?s)AURAX_GPU_MEMORY_GIB.*positive number of GiB.*unset it"):
        memory_budget(torch.device("cuda", 0))
