"""The subprocess runner: a Batch attempt as a process with the container's environment, stopped as ECS does."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from aurax.local.batch_runner import SubprocessRunner, container_exit_code, job_command
from aurax.local.moto_patches import SPOT_RECLAIM_REASON, TIMEOUT_REASON, BatchJobRun

SHOW_ENV = ("import json, os; print(json.dumps({k: os.environ.get(k) for k in "
            "('AWS_BATCH_JOB_ATTEMPT', 'AWS_ENDPOINT_URL', 'TMPDIR', 'MODE', 'AWS_PROFILE')}))")
SLEEP = "import time; time.sleep(30)"


def attempt(command: list[str], attempt: int = 1, stop: str | None = None, timeout: int | None = None) -> BatchJobRun:
    return BatchJobRun(job_id="j-1", job_name="run-train", job_queue="q", job_definition="train", attempt=attempt,
                       command=command, environment={"MODE": "spot", "AWS_BATCH_JOB_ATTEMPT": str(attempt)},
                       parameters={}, timeout_seconds=timeout, stop_reason=lambda: stop)


def runner(tmp_path: Path, **kwargs: object) -> SubprocessRunner:
    return SubprocessRunner("http://127.0.0.1:9", tmp_path / "logs", scratch_dir=tmp_path / "scratch",
                            grace_seconds=5, poll_seconds=0.02, **kwargs)  # type: ignore[arg-type]


def test_the_attempt_sees_its_container_environment_and_its_own_scratch(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("AWS_PROFILE", "someones-real-account")
    result = runner(tmp_path)(attempt([sys.executable, "-c", SHOW_ENV], attempt=2))
    assert result.exit_code == 0 and result.status_reason is None
    log = (tmp_path / "logs" / "run-train-attempt-2.log").read_text().splitlines()
    seen = json.loads(log[-1])
    assert seen == {"AWS_BATCH_JOB_ATTEMPT": "2", "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
                    "TMPDIR": str(tmp_path / "scratch" / "run-train-attempt-2"), "MODE": "spot", "AWS_PROFILE": None}


def test_exit_codes_pass_through(tmp_path: Path):
    assert runner(tmp_path)(attempt([sys.executable, "-c", "raise SystemExit(76)"])).exit_code == 76


def test_terminate_job_stops_the_process_with_its_reason(tmp_path: Path):
    result = runner(tmp_path)(attempt([sys.executable, "-c", SLEEP], stop="aurax:idle: quiet for 120 minutes"))
    assert result == (143, "aurax:idle: quiet for 120 minutes", None)  # SIGTERM, as a container reports it


def test_an_injected_spot_reclaim_and_a_timeout(tmp_path: Path):
    reclaimed = runner(tmp_path, interrupt=lambda run: True)(attempt([sys.executable, "-c", SLEEP]))
    assert reclaimed.status_reason == SPOT_RECLAIM_REASON and reclaimed.exit_code == 143
    timed_out = runner(tmp_path)(attempt([sys.executable, "-c", SLEEP], timeout=1))
    assert timed_out.status_reason == TIMEOUT_REASON


def test_local_command_deviations():
    train = job_command(["aurax", "job", "train", "--config", "c"])
    assert train[1:] == ["-m", "aurax.cli", "job", "train", "--config", "c", "--metrics-flush-seconds", "1"]
    assert "--require-gpu" not in job_command(["aurax", "preflight", "--require-gpu"])
    assert job_command(["echo", "--require-gpu"]) == ["echo", "--require-gpu"]
    assert container_exit_code(-9) == 137 and container_exit_code(75) == 75
