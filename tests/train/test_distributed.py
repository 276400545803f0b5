"""Data-parallel training through the same command: `AURAX_CPU_WORKERS=2` runs two gloo workers on the CPU,
exactly the code path of a multi-GPU instance (launcher, DDP, rank 0 saving every rank's RNG state)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from .conftest import latest_checkpoint, run_train, step_losses, tiny_config, write_dataset

pytestmark = pytest.mark.slow


def test_two_workers_killed_mid_run_resume_and_replay_the_same_losses(tmp_path: Path) -> None:
    config = tiny_config()
    (tmp_path / "config.json").write_text(config.model_dump_json())
    paths = {"config": tmp_path / "config.json", "run": tmp_path / "run", "work": tmp_path / "work",
             "dataset": write_dataset(tmp_path / "dataset", config, train_clips=24)}  # 8 clips a step: 3 steps/epoch
    killed = run_train(paths, until=2, AURAX_CPU_WORKERS="2", AURAX_FAULT_KILL_AT_STEP="5")
    assert killed.returncode != 0 and "workers exited with [-9, -9]" in killed.stderr, killed.stderr
    assert max(step_losses(paths)) == 5  # logged, then lost: the newest checkpoint is step 4
    resumed = run_train(paths, until=2, AURAX_CPU_WORKERS="2")
    assert resumed.returncode == 0, resumed.stderr
    assert "step-000000004 (step 4" in resumed.stderr
    # Step 5 ran twice, from the checkpoint's weights, optimizer, data position and both ranks' RNG
    # (dropout differs per rank): step_losses fails if the replay logged a different loss.
    assert sorted(step_losses(paths)) == [1, 2, 3, 4, 5, 6]
    final = latest_checkpoint(paths)
    assert (final.manifest.world_size, final.manifest.step, final.manifest.epoch_complete) == (2, 6, True)
    rng = final.load_trainer_state()["rng"]
    assert len(rng) == 2 and not torch.equal(rng[0]["torch"], rng[1]["torch"])
