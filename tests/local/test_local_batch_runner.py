"""The subprocess runner: a Batch attempt as a process started as ECS starts the container (the image's
ENTRYPOINT with the job's command as CMD), with the container's environment and credentials, stopped as ECS
stops it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from aurax.local.batch_runner import SubprocessRunner, container_argv, container_exit_code, local_command
from aurax.local.image import ContainerImage, ImageError
from aurax.local.moto_patches import SPOT_RECLAIM_REASON, TIMEOUT_REASON, BatchJobRun

ROOT = Path(__file__).resolve().parents[2]
SHOW_ENV = ("import json, os; print(json.dumps({k: os.environ.get(k) for k in "
            "('AWS_BATCH_JOB_ATTEMPT', 'AWS_ENDPOINT_URL', 'TMPDIR', 'MODE', 'AWS_PROFILE', 'AWS_ACCESS_KEY_ID')}))")
SLEEP = "import time; time.sleep(30)"
#: An image whose ENTRYPOINT is empty: the job's command is the whole argv (for running plain Python here).
NO_ENTRYPOINT = ContainerImage(entrypoint=[], entrypoint_exec_form=True, cmd=[])
DOCKERFILE = ContainerImage.from_dockerfile(ROOT / "Dockerfile")


def attempt(command: list[str], attempt: int = 1, stop: str | None = None, timeout: int | None = None,
            job_role_arn: str | None = None) -> BatchJobRun:
    return BatchJobRun(job_id="j-1", job_name="run-train", job_queue="q", job_definition="train", attempt=attempt,
                       command=command, environment={"MODE": "spot", "AWS_BATCH_JOB_ATTEMPT": str(attempt)},
                       parameters={}, timeout_seconds=timeout, stop_reason=lambda: stop, job_role_arn=job_role_arn)


def runner(tmp_path: Path, image: ContainerImage = NO_ENTRYPOINT, **kwargs: object) -> SubprocessRunner:
    return SubprocessRunner("http://127.0.0.1:9", tmp_path / "logs", image, scratch_dir=tmp_path / "scratch",
                            grace_seconds=5, poll_seconds=0.02, **kwargs)  # type: ignore[arg-type]


def test_the_attempt_sees_its_container_environment_and_its_own_scratch(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("AWS_PROFILE", "someones-real-account")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "someones-real-key")
    result = runner(tmp_path)(attempt([sys.executable, "-c", SHOW_ENV], attempt=2,
                                      job_role_arn="arn:aws:iam::123456789012:role/job"))
    assert result.exit_code == 0 and result.status_reason is None
    log = (tmp_path / "logs" / "run-train-attempt-2.log").read_text().splitlines()
    seen = json.loads(log[-1])
    key = seen.pop("AWS_ACCESS_KEY_ID")
    assert seen == {"AWS_BATCH_JOB_ATTEMPT": "2", "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
                    "TMPDIR": str(tmp_path / "scratch" / "run-train-attempt-2"), "MODE": "spot", "AWS_PROFILE": None}
    assert key.startswith("ASIA")  # the job role's session, not the host's key


def test_a_job_without_a_job_role_gets_no_credentials(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "someones-real-key")
    runner(tmp_path)(attempt([sys.executable, "-c", SHOW_ENV]))
    seen = json.loads((tmp_path / "logs" / "run-train-attempt-1.log").read_text().splitlines()[-1])
    assert seen["AWS_ACCESS_KEY_ID"] is None


def test_the_container_runs_the_images_entrypoint_with_the_jobs_command_as_cmd(tmp_path: Path):
    # No command: the image's CMD (--help). The real `aurax` console script runs, not a stand-in.
    assert runner(tmp_path, DOCKERFILE)(attempt([])).exit_code == 0
    log = (tmp_path / "logs" / "run-train-attempt-1.log").read_text()
    assert log.startswith("$ aurax --help\n") and "usage: aurax" in log


def test_a_command_repeating_the_program_fails_as_it_does_in_ecs(tmp_path: Path):
    # Defect 1: `Command: [aurax, ...]` with ENTRYPOINT ["aurax"] runs `aurax aurax ...`: argparse exits 2.
    result = runner(tmp_path, DOCKERFILE)(attempt(["aurax", "preflight", "--config", "s3://b/c"]))
    assert result.exit_code == 2
    log = (tmp_path / "logs" / "run-train-attempt-1.log").read_text()
    assert log.startswith("$ aurax aurax preflight") and "invalid choice: 'aurax'" in log


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
    aurax = str(Path(sys.executable).parent / "aurax")
    assert container_argv(DOCKERFILE, ["job", "train", "--config", "c"]) == \
        [aurax, "job", "train", "--config", "c", "--metrics-flush-seconds", "1"]
    assert local_command(["preflight", "--require-gpu"]) == ["preflight"]
    assert container_argv(DOCKERFILE, []) == [aurax, "--help"]
    assert container_exit_code(-9) == 137 and container_exit_code(75) == 75


def _image(tmp_path: Path, text: str) -> ContainerImage:
    (tmp_path / "Dockerfile").write_text(text)
    return ContainerImage.from_dockerfile(tmp_path / "Dockerfile")


def test_docker_semantics_of_entrypoint_and_cmd(tmp_path: Path):
    exec_form = _image(tmp_path, 'FROM python:3.11\nCMD ["--help"]\nENTRYPOINT ["aurax"]\n')
    assert exec_form.argv(None) == ["aurax", "--help"] and exec_form.argv(["job", "x"]) == ["aurax", "job", "x"]
    shell_form = _image(tmp_path, "FROM python:3.11\nENTRYPOINT aurax job train\nCMD [\"--help\"]\n")
    assert shell_form.argv(["ignored"]) == ["/bin/sh", "-c", "aurax job train"]  # a shell form ignores CMD
    none = _image(tmp_path, 'FROM python:3.11\nENTRYPOINT []\nCMD ["python", "-V"]\n')
    assert none.argv(None) == ["python", "-V"] and none.argv(["true"]) == ["true"]
    staged = _image(tmp_path, 'FROM a AS build\nENTRYPOINT ["make"]\nFROM b\nENTRYPOINT ["aurax"]\n')
    assert staged.argv(None) == ["aurax"]  # only the final stage is the image; its ENTRYPOINT has no CMD here


def test_a_dockerfile_that_leaves_the_entrypoint_to_its_base_image_is_refused(tmp_path: Path):
    with pytest.raises(ImageError, match="sets no ENTRYPOINT in its final stage"):
        _image(tmp_path, 'FROM python:3.11\nCMD ["aurax"]\n')
