"""What a run records and refuses: the baseline validation loss, the plan and schedule in every checkpoint,
heartbeats with progress, a changed run length on resume, a loss no record can hold, and exact resume with
another micro-batch."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from aurax.cli import main
from aurax_contracts import JobExit
from aurax_contracts.metrics import Diverged, Heartbeat, JobWarning, TrainingSetup, TrainStep, ValLoss

from .conftest import (
    assert_same_weights,
    latest_checkpoint,
    records,
    run_train,
    step_losses,
    tiny_config,
    train_argv,
)


@pytest.fixture(autouse=True)
def no_imds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AURAX_IMDS_ENDPOINT", "off")


def manifests(paths: dict[str, Path]) -> list:
    from aurax_contracts import CheckpointManifest

    return [CheckpointManifest.model_validate_json(p.read_text())
            for p in sorted((paths["run"] / "checkpoints").glob("step-*/manifest.json"))]


def test_the_baseline_is_measured_once_before_the_first_step_and_carried_by_every_checkpoint(baseline) -> None:
    paths = baseline["paths"]
    written = records(paths)
    [first] = [r for r in written if isinstance(r, ValLoss) and r.baseline]
    assert (first.step, first.epoch) == (0, 0) and abs(first.val_loss - 4.16) < 0.3  # untouched: near ln(64)
    assert written.index(first) < min(i for i, r in enumerate(written) if isinstance(r, TrainStep))
    epoch_losses = [r.val_loss for r in written if isinstance(r, ValLoss) and not r.baseline]
    assert len(epoch_losses) == 3 and first.val_loss not in epoch_losses  # random data: no direction
    saved = manifests(paths)
    assert saved and all(m.baseline_val_loss == first.val_loss for m in saved)
    final = saved[-1]
    assert final.plan is not None and (final.plan.batch_size, final.plan.micro_batch_size,
                                       final.plan.accumulation_steps, final.plan.chosen_by) == (4, 2, 2, "config")
    assert (final.plan.attention, final.plan.optimizer, final.plan.decoder_dropout) == ("sdpa", "adamw-foreach", 0.1)
    assert final.schedule is not None and (final.schedule.total_steps, final.schedule.steps_per_epoch) == (9, 3)
    setups = [r for r in written if isinstance(r, TrainingSetup)]
    assert len(setups) == 1 and setups[0].plan == final.plan
    beats = [r for r in written if isinstance(r, Heartbeat)]
    assert beats and all(b.progress is not None for b in beats)
    assert beats[-1].progress.optimizer_steps == 9 and beats[-1].progress.validation_batches >= 4
    assert beats[-1].progress.checkpoint_bytes > 0


def test_a_changed_run_length_is_refused_unless_allowed_and_then_continues_without_a_jump(make_run, capsys) -> None:
    paths = make_run()
    assert main(train_argv(paths, until=1, every=None)) == JobExit.SUCCEEDED  # 3 of 9 steps
    longer = tiny_config(total_epochs=6)
    paths["config"].write_text(longer.model_dump_json())
    capsys.readouterr()
    assert main(train_argv(paths, until=2, every=None)) == JobExit.BAD_CONFIG
    err = capsys.readouterr().err
    assert "set training.total_epochs back to 3" in err and "allow_schedule_change" in err
    allowed = tiny_config(total_epochs=6, allow_schedule_change=True)
    paths["config"].write_text(allowed.model_dump_json())
    assert main(train_argv(paths, until=2, every=None)) == JobExit.SUCCEEDED
    written = records(paths)
    lrs = {r.step: r.lr for r in written if isinstance(r, TrainStep)}
    # The 3-epoch schedule gives step 4 (after 3 steps, 2 of warm-up) 3e-3 x cos-decay at 1/7 of the cosine.
    import math

    expected = 3e-3 * 0.5 * (1 + math.cos(math.pi * (3 - 2) / (9 - 2)))
    assert lrs[4] == pytest.approx(expected)  # no jump at the resume
    assert lrs[5] < lrs[4]
    warnings = [w for w in written if isinstance(w, JobWarning) and w.code == "schedule-changed"]
    assert len(warnings) == 1 and "decays from" in warnings[0].message
    schedule = latest_checkpoint(paths).manifest.schedule
    assert schedule.total_steps == 18 and len(schedule.segments) == 1 and schedule.segments[0].start_step == 3


def test_a_finished_run_is_not_extended_at_zero_learning_rate(baseline, tmp_path: Path, capsys) -> None:
    """The finished 3-epoch run (its cosine at zero) resumed with 6 epochs and the change allowed: refused with
    exit 64 before anything trains, instead of 9 steps at a learning rate of 0."""
    import shutil

    done = baseline["paths"]
    paths = {"config": tmp_path / "config.json", "run": tmp_path / "run", "dataset": done["dataset"],
             "work": tmp_path / "work"}
    shutil.copytree(done["run"], paths["run"])
    paths["config"].write_text(tiny_config(total_epochs=6, allow_schedule_change=True).model_dump_json())
    capsys.readouterr()
    assert main(train_argv(paths, until=6, every=None)) == JobExit.BAD_CONFIG
    assert "already ended at step 9" in capsys.readouterr().err
    assert latest_checkpoint(paths).manifest.step == 9
    assert not [r for r in records(paths) if isinstance(r, TrainStep) and r.step > 9]


def test_a_checkpoint_that_cannot_be_written_exits_75_for_a_retry_and_the_retry_loses_nothing(make_run, baseline,
                                                                                              monkeypatch) -> None:
    """S3 failing a regular save (after boto3's own retries) is a transient fault of a weeks-long run: exit 75,
    which Batch retries, not 65 ("bad input"), which ends the run. The retry resumes from the last good
    checkpoint and trains the same run."""
    paths = make_run()
    monkeypatch.setenv("AURAX_FAULT_SAVE_FAILS_AT_STEP", "4")
    assert main(train_argv(paths, until=3)) == JobExit.INTERRUPTED
    assert latest_checkpoint(paths).manifest.step == 3
    monkeypatch.delenv("AURAX_FAULT_SAVE_FAILS_AT_STEP")
    assert main(train_argv(paths, until=3)) == JobExit.SUCCEEDED
    assert step_losses(paths) == baseline["losses"]
    assert_same_weights(latest_checkpoint(paths).load_tensors(), baseline["weights"])


def test_a_finite_loss_no_record_can_hold_exits_76_not_1(make_run, monkeypatch) -> None:
    paths = make_run()
    monkeypatch.setenv("AURAX_FAULT_LOSS_AT_STEP", "3:2.5e6")
    assert main(train_argv(paths, until=1)) == JobExit.DIVERGED
    diverged = [r for r in records(paths) if isinstance(r, Diverged)]
    assert [(d.cause, d.step, d.value) for d in diverged] == [("loss-out-of-range", 3, 2.5e6)]
    assert latest_checkpoint(paths).manifest.step == 2  # nothing saved after the bad step
    assert max(step_losses(paths)) == 2


@pytest.mark.slow
def test_exact_resume_with_another_micro_batch_after_sigkill(make_run) -> None:
    config = tiny_config(micro_batch_size=1)  # 4 micro-batches a step
    whole, killed = make_run("whole", config=config), make_run("killed", config=config)
    assert run_train(whole, until=2).returncode == 0
    died = run_train(killed, until=2, AURAX_FAULT_KILL_AT_STEP="5")
    assert died.returncode == -signal.SIGKILL, died.stderr
    resumed = run_train(killed, until=2)
    assert resumed.returncode == 0 and "resuming from" in resumed.stderr, resumed.stderr
    assert step_losses(killed) == step_losses(whole)
    assert_same_weights(latest_checkpoint(killed).load_tensors(), latest_checkpoint(whole).load_tensors())
