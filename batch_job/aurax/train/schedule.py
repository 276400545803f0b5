"""The learning-rate schedule: linear warm-up, then cosine decay to zero (audiocraft's MusicGen recipe), as a
pure function of the optimizer step, and what happens to it when a resumed run's length changes.

The schedule's totals travel in every checkpoint (`LrSchedule`): a resume compares them with what the config
asks for now. Changing `training.total_epochs` on resume would otherwise reshape the learning rate silently
(x2.8 when 3 epochs become 6 after epoch 1; about /7 when 20 become 12 after epoch 10). It is refused unless
`training.allow_schedule_change` is set; then the remaining steps decay by a cosine from the current learning
rate to zero at the new end, so the rate never jumps, and the change is recorded as a schedule segment. A run
whose schedule has already ended (its learning rate is zero) cannot be extended that way: it is refused too.
"""

from __future__ import annotations

import math

from aurax_contracts import ContractError
from aurax_contracts.artifacts import LrSchedule, ScheduleSegment
from aurax_contracts.config import TrainingConfig


def planned_schedule(training: TrainingConfig, steps_per_epoch: int) -> LrSchedule:
    """The schedule the config asks for (independent of the number of GPUs: a step is `batch_size` examples)."""
    return LrSchedule(warmup_steps=training.warmup_steps, steps_per_epoch=steps_per_epoch,
                      total_epochs=training.total_epochs, total_steps=steps_per_epoch * training.total_epochs)


def _cosine(step: int, start: int, end: int, start_factor: float) -> float:
    progress = (step - start) / max(1, end - start)
    return max(0.0, start_factor * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))


def lr_factor(schedule: LrSchedule, step: int) -> float:
    """Multiplier of the peak learning rate for the update made after `step` steps (0-based: the first
    update uses step 0). Same formula as `transformers.get_cosine_schedule_with_warmup`."""
    for segment in reversed(schedule.segments):
        if step >= segment.start_step:
            return _cosine(step, segment.start_step, segment.end_step, segment.start_factor)
    if step < schedule.warmup_steps:
        return step / max(1, schedule.warmup_steps)
    return _cosine(step, schedule.warmup_steps, schedule.base_total_steps or schedule.total_steps, 1.0)


def resume_schedule(saved: LrSchedule | None, wanted: LrSchedule, step: int, allow_change: bool
                    ) -> tuple[LrSchedule, str | None]:
    """The schedule to continue with after `step` steps, and a description of the change when there is one.

    Raises `ContractError` (exit 64) when the run's length changed and `allow_change` is False, saying what the
    learning rate would do and how to proceed."""
    if saved is None:  # a fresh run, or a checkpoint from before schedules were saved
        return wanted, None
    if (saved.total_steps, saved.steps_per_epoch, saved.warmup_steps) == \
            (wanted.total_steps, wanted.steps_per_epoch, wanted.warmup_steps):  # segments and all
        return saved, None
    now = lr_factor(saved, step)
    naive = lr_factor(wanted, step)
    what = (f"the run's schedule ends at step {saved.total_steps} ({saved.total_epochs} epochs of "
            f"{saved.steps_per_epoch} steps) in the checkpoint, at step {wanted.total_steps} ({wanted.total_epochs} "
            f"epochs of {wanted.steps_per_epoch}) in this config")
    if now == 0.0 and step >= saved.warmup_steps:  # past the cosine's end: a decay from zero trains nothing
        raise ContractError("training.total_epochs", [
            f"{what}, but that schedule already ended at step {step}: its learning rate is 0, so the "
            f"{max(0, wanted.total_steps - step)} added steps would change no weight; fix: set "
            f"training.total_epochs back to {saved.total_epochs} (this run is complete), or train for "
            f"{wanted.total_epochs} epochs in a new run (a new run_id)"])
    if not allow_change:
        raise ContractError("training.total_epochs", [
            f"{what}; recomputing the schedule would move the learning rate at step {step} from "
            f"{now:.3g} to {naive:.3g} of its peak; fix: set training.total_epochs back to {saved.total_epochs}, "
            "or set training.allow_schedule_change: true to decay from the current learning rate to zero at the "
            "new end (recorded in the checkpoint)"])
    if wanted.total_steps <= step:
        raise ContractError("training.total_epochs", [
            f"{what}, but {step} steps are already trained; fix: set training.total_epochs above "
            f"{step // wanted.steps_per_epoch}"])
    if step < saved.warmup_steps:  # still warming up: the warm-up does not depend on the length, no jump
        new = wanted.model_copy(update={"segments": list(saved.segments)})
        return new, f"{what}; still in warm-up at step {step}: the cosine now ends at step {wanted.total_steps}"
    segment = ScheduleSegment(start_step=step, start_factor=now, end_step=wanted.total_steps,
                              reason=f"total_epochs {saved.total_epochs} -> {wanted.total_epochs} at step {step}")
    new = wanted.model_copy(update={"segments": [*saved.segments, segment],
                                    "base_total_steps": saved.base_total_steps or saved.total_steps})
    return new, (f"{what}; from step {step} the learning rate decays from {now:.3g} of its peak to zero at step "
                 f"{wanted.total_steps} (training.allow_schedule_change)")
