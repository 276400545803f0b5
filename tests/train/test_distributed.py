"""Data-parallel training through the same command: `AURAX_CPU_WORKERS=2` runs two gloo workers on the CPU,
exactly the code path of a multi-GPU instance (launcher, DDP, rank 0 saving, decisions agreed by all ranks)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from aurax.cli import main
from aurax_contracts import JobExit
from aurax_contracts.metrics import CheckpointSaved

from .conftest import latest_checkpoint, records, run_train, step_losses, tiny_config, train_argv, write_dataset

pytestmark = pytest.mark.slow


def make_paths(base: Path, config, train_clips: int = 24) -> dict[str, Path]:
    base.mkdir(parents=True, exist_ok=True)
    (base / "config.json").write_text(config.model_dump_json())
    return {"config": base / "config.json", "run": base / "run", "work": base / "work",
            "dataset": write_dataset(base / "dataset", config, train_clips=train_clips)}


def test_two_workers_killed_mid_run_resume_and_replay_the_same_losses(tmp_path: Path) -> None:
    config = tiny_config(batch_size=8)  # 24 clips: 3 steps an epoch, 4 examples per rank in micro-batches of 2
    paths = make_paths(tmp_path, config)
    killed = run_train(paths, until=2, AURAX_CPU_WORKERS="2", AURAX_FAULT_KILL_AT_STEP="5")
    assert killed.returncode != 0 and "workers exited with [-9, -9]" in killed.stderr, killed.stderr
    assert max(step_losses(paths)) == 5  # logged, then lost: the newest checkpoint is step 4
    resumed = run_train(paths, until=2, AURAX_CPU_WORKERS="2")
    assert resumed.returncode == 0, resumed.stderr
    assert "step-000000004 (step 4" in resumed.stderr
    # Step 5 ran twice, from the checkpoint's weights, optimizer and data position; dropout draws from generators
    # seeded by data position: step_losses fails if the replay logged a different loss.
    assert sorted(step_losses(paths)) == [1, 2, 3, 4, 5, 6]
    final = latest_checkpoint(paths)
    assert (final.manifest.world_size, final.manifest.step, final.manifest.epoch_complete) == (2, 6, True)
    assert final.manifest.plan.world_size == 2 and final.manifest.plan.micro_batch_size == 2


def test_ranks_whose_clocks_disagree_agree_on_time_checkpoints_and_match_one_process(tmp_path: Path,
                                                                                    monkeypatch) -> None:
    """Rank 1's clock runs 100 s ahead per step, so only it finds the 1-minute checkpoint interval due; a rank
    that decided alone would save (a gather) while the other went on (an all-reduce), both hanging until the
    collective timed out. Every rank follows the agreed decision instead. Without dropout (the recipe's 0), two
    ranks train the same weights as one process (the step does not depend on how it is split)."""
    config = tiny_config(batch_size=8, micro_batch_size=None)
    config.model.decoder_dropout = 0.0
    config.checkpoint.interval_minutes = 1.0
    two = make_paths(tmp_path / "two", config)
    done = run_train(two, until=1, every=None, AURAX_CPU_WORKERS="2", AURAX_FAULT_CLOCK_SKEW="1:100")
    assert done.returncode == 0, done.stderr[-3000:]
    saves = [(r.trigger, r.step) for r in records(two) if isinstance(r, CheckpointSaved)]
    assert saves == [("interval", 1), ("interval", 2), ("epoch", 3)]
    one = make_paths(tmp_path / "one", config)
    monkeypatch.setenv("AURAX_IMDS_ENDPOINT", "off")
    assert main(train_argv(one, until=1, every=None)) == JobExit.SUCCEEDED
    assert step_losses(one).keys() == step_losses(two).keys()
    for step, loss in step_losses(one).items():
        assert loss == pytest.approx(step_losses(two)[step], rel=1e-5)
    a, b = latest_checkpoint(one).load_tensors(), latest_checkpoint(two).load_tensors()
    assert all(torch.allclose(a[name], b[name], rtol=1e-4, atol=1e-6) for name in a)
