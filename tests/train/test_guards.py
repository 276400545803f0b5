"""Corrupt checkpoints, divergence, and bad inputs: each ends in a clear outcome and overwrites nothing."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from aurax.cli import main
from aurax_contracts import JobExit
from aurax_contracts.metrics import CheckpointSaved, Diverged, Interruption, JobWarning, TrainStep, ValLoss

from .conftest import (
    latest_checkpoint,
    records,
    run_train,
    step_losses,
    tiny_config,
    train_argv,
    write_dataset,
)


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()} if root.exists() else {}


@pytest.mark.slow
def test_corrupt_newest_checkpoint_is_skipped_with_a_warning_and_the_previous_one_used(make_run, baseline) -> None:
    paths = make_run()
    first = run_train(paths, until=1)  # checkpoints step 2 and step 3 (epoch end)
    assert first.returncode == 0, first.stderr
    newest = paths["run"] / "checkpoints" / "step-000000003-end" / "model.safetensors"
    data = bytearray(newest.read_bytes())
    data[-100] ^= 0xFF  # same size, one flipped byte
    newest.write_bytes(bytes(data))
    resumed = run_train(paths, until=2)
    assert resumed.returncode == 0, resumed.stderr
    assert "checkpoints/step-000000002 (step 2" in resumed.stderr
    warnings = [r for r in records(paths) if isinstance(r, JobWarning)]
    assert [w.code for w in warnings] == ["checkpoint-corrupt"]
    assert "step-000000003-end" in warnings[0].message and "sha256" in warnings[0].message
    losses = step_losses(paths)
    assert losses == {s: baseline["losses"][s] for s in range(1, 7)}
    assert latest_checkpoint(paths).manifest.step == 6


def test_nan_loss_exits_76_keeps_the_last_good_checkpoint_and_writes_diverged(make_run, no_imds, monkeypatch) -> None:
    paths = make_run()
    monkeypatch.setenv("AURAX_FAULT_NAN_AT_STEP", "5")
    assert run_in_process(paths, until=3) == JobExit.DIVERGED
    checkpoints = paths["run"] / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["latest", "step-000000003-end", "step-000000004"]
    good = latest_checkpoint(paths)
    assert good.name == "step-000000004"
    diverged = [r for r in records(paths) if isinstance(r, Diverged)]
    assert [(d.cause, d.step, d.last_good_checkpoint) for d in diverged] == [("nan-loss", 5, good.uri)]
    assert max(step_losses(paths)) == 4  # the NaN step is never logged as a training step


def test_a_run_of_overflowed_fp16_steps_warns_then_exits_76(make_run, no_imds, monkeypatch) -> None:
    paths = make_run(config=tiny_config(max_overflow_steps=4))
    monkeypatch.setenv("AURAX_FAULT_OVERFLOW_FROM_STEP", "3")  # the loss scaler skips every step from 3 on
    assert run_in_process(paths, until=3) == JobExit.DIVERGED
    written = records(paths)
    assert [(w.code, w.step) for w in written if isinstance(w, JobWarning)] == [("overflow-steps", 4)]
    assert [(d.cause, d.step) for d in written if isinstance(d, Diverged)] == [("overflow-collapse", 6)]


def test_high_loss_warns_once_and_the_time_interval_triggers_checkpoints(make_run, no_imds) -> None:
    config = tiny_config()
    config.monitoring.loss_warn = 1.0  # the tiny model's loss starts near ln(64) = 4.2
    config.checkpoint.interval_minutes = 1e-6  # every step is "10 minutes later"
    paths = make_run(config=config)
    assert main([*train_argv(paths, 1)[:-2]]) == JobExit.SUCCEEDED  # no --checkpoint-every-steps
    written = records(paths)
    warnings = [r for r in written if isinstance(r, JobWarning)]
    assert [(w.code, w.step) for w in warnings] == [("high-loss", 1)]  # once per episode, not every step
    assert [(r.trigger, r.step) for r in written if isinstance(r, CheckpointSaved)] == [
        ("interval", 1), ("interval", 2), ("epoch", 3)]


def run_in_process(paths: dict[str, Path], until: int = 1) -> int:
    return main(train_argv(paths, until))


@pytest.fixture
def no_imds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AURAX_IMDS_ENDPOINT", "off")


def test_missing_dataset_manifest_exits_65_and_writes_nothing(make_run, no_imds, capsys) -> None:
    paths = make_run()
    (paths["dataset"] / "manifest.json").unlink()
    assert run_in_process(paths) == JobExit.BAD_INPUT
    assert "no dataset manifest" in capsys.readouterr().err
    assert not paths["run"].exists()


def test_corrupt_dataset_manifest_exits_65(make_run, no_imds, capsys) -> None:
    paths = make_run()
    (paths["dataset"] / "manifest.json").write_text('{"fingerprint": "abc"')
    assert run_in_process(paths) == JobExit.BAD_INPUT
    assert "corrupt" in capsys.readouterr().err
    assert not paths["run"].exists()


def test_dataset_for_another_config_exits_65(make_run, no_imds, capsys) -> None:
    paths = make_run()
    write_dataset(paths["dataset"], tiny_config(), fingerprint="0" * 64)
    assert run_in_process(paths) == JobExit.BAD_INPUT
    assert "prepared for another config" in capsys.readouterr().err
    assert not paths["run"].exists()


def test_unreadable_uris_exit_65(make_run, no_imds, capsys) -> None:
    paths = make_run()
    missing_config = {**paths, "config": paths["config"].with_name("nope.yaml")}
    assert run_in_process(missing_config) == JobExit.BAD_INPUT
    assert "cannot read" in capsys.readouterr().err
    bad_scheme = {**paths, "dataset": "ftp://host/dataset"}
    assert run_in_process(bad_scheme) == JobExit.BAD_INPUT
    assert "unsupported scheme" in capsys.readouterr().err
    assert not paths["run"].exists()


def test_until_epoch_beyond_total_epochs_exits_64(make_run, no_imds, capsys) -> None:
    paths = make_run()
    assert run_in_process(paths, until=4) == JobExit.BAD_CONFIG
    assert "--until-epoch" in capsys.readouterr().err


@pytest.mark.parametrize("seconds", ["nan", "inf", "1e300", "-1"])
def test_a_metrics_flush_period_that_is_not_a_sane_duration_is_refused_before_anything_runs(
        make_run, no_imds, capsys, seconds: str) -> None:
    """NaN flushed on every record; inf (or any period beyond threading's timeout) killed the heartbeat thread
    with an OverflowError, and the idle watch would then terminate a healthy job."""
    paths = make_run()
    with pytest.raises(SystemExit) as exit_info:
        main([*train_argv(paths, 1)[:-2], "--metrics-flush-seconds", seconds])
    assert exit_info.value.code == 2
    assert "--metrics-flush-seconds" in capsys.readouterr().err and not paths["run"].exists()


def test_checkpoint_from_another_setup_is_refused_with_exit_64_naming_the_difference(make_run, no_imds,
                                                                                     capsys) -> None:
    paths = make_run()
    assert run_in_process(paths) == JobExit.SUCCEEDED
    before = tree_digest(paths["run"])
    changed = tiny_config(learning_rate=1e-3)
    paths["config"].write_text(changed.model_dump_json())
    write_dataset(paths["dataset"], changed)  # same data; only the recipe differs
    capsys.readouterr()
    assert run_in_process(paths, until=2) == JobExit.BAD_CONFIG
    assert "training.learning_rate: checkpoint 0.003, config 0.001" in capsys.readouterr().err
    assert tree_digest(paths["run"]) == before  # nothing overwritten, not even a metrics chunk


def test_already_at_the_asked_epoch_exits_0_at_once_touching_nothing(make_run, no_imds, caplog) -> None:
    paths = make_run()
    assert run_in_process(paths) == JobExit.SUCCEEDED
    before = tree_digest(paths["run"])
    caplog.set_level(logging.INFO, logger="aurax.train.loop")
    assert run_in_process(paths) == JobExit.SUCCEEDED
    assert "nothing to do" in caplog.text
    assert tree_digest(paths["run"]) == before


def write_stop_request(paths: dict[str, Path], reason: str) -> None:
    stop = paths["run"] / "control" / "stop.json"
    stop.parent.mkdir(parents=True, exist_ok=True)
    stop.write_text(json.dumps({"reason": reason, "detail": "from the test", "requested_at": "2026-11-26T19:00:00Z"}))


def test_stop_request_present_at_start_exits_77_before_training(make_run, no_imds) -> None:
    paths = make_run()
    write_stop_request(paths, "over-budget")
    assert run_in_process(paths) == JobExit.OVER_BUDGET
    assert [(r.cause, r.step) for r in records(paths) if isinstance(r, Interruption)] == [("budget-stop", 0)]
    assert not (paths["run"] / "checkpoints").exists()  # nothing trained, nothing to save


def test_stop_request_mid_run_checkpoints_then_exits_76(make_run, no_imds, monkeypatch) -> None:
    paths = make_run()
    monkeypatch.setenv("AURAX_FAULT_SLOW_STEP_SECONDS", "0.4")
    first = paths["run"] / "checkpoints" / "step-000000002" / "manifest.json"

    def request_stop() -> None:
        while not first.exists():
            time.sleep(0.05)
        write_stop_request(paths, "diverged")

    threading.Thread(target=request_stop, daemon=True).start()
    assert run_in_process(paths, until=3) == JobExit.DIVERGED
    stops = [r for r in records(paths) if isinstance(r, Interruption)]
    saved = latest_checkpoint(paths).manifest
    assert [(r.cause, r.steps_lost) for r in stops] == [("budget-stop", 0)]
    # No step lost: the newest checkpoint is at the last trained step. It is the emergency save, unless the stop
    # came right after a regular save at that same step (step-interval or epoch-end), which then suffices.
    assert saved.step == stops[0].step == max(step_losses(paths)) > 2


def test_sigterm_in_an_epochs_last_step_saves_before_validating(make_run, no_imds, monkeypatch) -> None:
    """Validation can outlast a spot notice's 2 minutes: the emergency save comes first, validation on resume."""
    paths = make_run()
    monkeypatch.setenv("AURAX_FAULT_SLOW_STEP_SECONDS", "0.5")

    def sigterm_during_step_3() -> None:  # step 3 is epoch 0's last; its record is written before the pause
        while not any(isinstance(r, TrainStep) and r.step == 3 for r in records(paths)):
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=sigterm_during_step_3, daemon=True).start()
    assert run_in_process(paths, until=1) == JobExit.INTERRUPTED
    assert [r.step for r in records(paths) if isinstance(r, ValLoss)] == [0]  # only the baseline, before step 1
    saved = latest_checkpoint(paths).manifest
    assert (saved.step, saved.index_in_epoch, saved.epoch_complete, saved.trigger) == (3, 12, False, "interruption")
    monkeypatch.delenv("AURAX_FAULT_SLOW_STEP_SECONDS")
    assert run_in_process(paths, until=1) == JobExit.SUCCEEDED  # validates epoch 0 without training a step
    assert [(r.epoch, r.step, r.baseline) for r in records(paths) if isinstance(r, ValLoss)] == [
        (0, 0, True), (0, 3, False)]  # the baseline is carried by the checkpoint, not measured again
    assert max(step_losses(paths)) == 3 and latest_checkpoint(paths).manifest.epoch_complete
