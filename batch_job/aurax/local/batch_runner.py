"""Runs each emulated Batch attempt as a real subprocess, started as ECS starts the container: the image's
ENTRYPOINT with the job's command (the job definition's after `Ref::` substitution, or the submission's
override) as its CMD (`image.ContainerImage.argv`), the program found as the image's PATH finds it (this
environment's `aurax` script). Its environment: the job definition's and the submission's overrides,
`AWS_BATCH_JOB_ID` and `AWS_BATCH_JOB_ATTEMPT`, the credentials of the job role (`iam.container_credentials`)
and `AWS_ENDPOINT_URL` pointing at the emulation (see `endpoint`).

`TerminateJob` and the attempt timeout stop the process as ECS stops a container: SIGTERM, then SIGKILL after a
grace period. An injected spot reclaim does the same and reports Batch's `Host EC2 ... terminated.` reason.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .iam import container_credentials
from .image import ContainerImage, resolve_program
from .moto_patches import SPOT_RECLAIM_REASON, TIMEOUT_REASON, BatchJobResult, BatchJobRun

logger = logging.getLogger(__name__)

#: Host variables a job must not inherit: they would point it at a real AWS account, or give it credentials
#: other than its job role's.
_HOST_AWS = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
             "AWS_SECURITY_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CA_BUNDLE")


def container_exit_code(returncode: int) -> int:
    """A process killed by signal N exits -N in Python, 128+N in a container (what Batch reports)."""
    return 128 - returncode if returncode < 0 else returncode


#: Where a local attempt differs from the container ECS would run, and why (the only differences).
LOCAL_DEVIATIONS: dict[str, str] = {
    "--require-gpu": "dropped from the job's command: a laptop has no GPU, so preflight's GPU check is skipped",
    "--metrics-flush-seconds": "added to `job train` as 1 s (60 s on AWS) so the monitor sees the short local "
                               "run as it goes",
    "image ENV": "not applied: its values are the image's own paths (HF_HOME=/opt/hf, TMPDIR=/scratch); the "
                 "attempt gets its own scratch folder and runs offline (HF_HUB_OFFLINE) as the image does",
}


def local_command(command: list[str]) -> list[str]:
    """The job's command (the container's CMD) with `LOCAL_DEVIATIONS` applied."""
    args = [arg for arg in command if arg != "--require-gpu"]
    if args[:2] == ["job", "train"] and "--metrics-flush-seconds" not in args:
        args += ["--metrics-flush-seconds", "1"]
    return args


def container_argv(image: ContainerImage, command: list[str]) -> list[str]:
    """What the attempt's process runs: the image's ENTRYPOINT and the job's command, as ECS composes them,
    with the program found where this environment installs it."""
    return resolve_program(image.argv(local_command(command)))


@dataclass
class SubprocessRunner:
    """A `BatchRunner` (see `moto_patches`) that runs the attempt's command as a subprocess."""

    endpoint_url: str
    log_dir: Path
    image: ContainerImage
    """The job image's ENTRYPOINT and CMD (`ContainerImage.from_dockerfile`)."""
    scratch_dir: Path | None = None
    """When set, each attempt gets its own empty temporary folder under it (`TMPDIR`, `AURAX_WORK_DIR`), as
    each Batch attempt gets a fresh container: nothing cached by one job leaks into another."""
    extra_env: dict[str, str] = field(default_factory=dict)
    interrupt: Callable[[BatchJobRun], bool] | None = None
    """Polled while an attempt runs; True injects a spot reclaim (SIGTERM, then Batch's reclaim reason)."""
    attempt_env: Callable[[BatchJobRun], dict[str, str]] | None = None
    """Extra variables for one attempt (fault injection)."""
    grace_seconds: float = 30.0
    """SIGTERM to SIGKILL, as ECS's default stop timeout."""
    poll_seconds: float = 0.1
    base_env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    """This process's environment when the runner was made: read once, because an in-process Lambda
    invocation sets its function's variables in `os.environ` while it runs."""

    def environment(self, run: BatchJobRun) -> dict[str, str]:
        env = {k: v for k, v in self.base_env.items() if k not in _HOST_AWS}
        env.update(run.environment)
        env.update({"AWS_ENDPOINT_URL": self.endpoint_url,
                    "AWS_DEFAULT_REGION": env.get("AWS_DEFAULT_REGION", "us-east-1"), "PYTHONUNBUFFERED": "1",
                    **container_credentials(run.job_role_arn, f"Batch job {run.job_name} attempt {run.attempt}")})
        if self.scratch_dir is not None:
            scratch = self.scratch_dir / f"{run.job_name}-attempt-{run.attempt}"
            scratch.mkdir(parents=True, exist_ok=True)
            env.update({"TMPDIR": str(scratch), "TEMP": str(scratch), "TMP": str(scratch),
                        "AURAX_WORK_DIR": str(scratch / "work")})
        env.update(self.extra_env)
        if self.attempt_env is not None:
            env.update(self.attempt_env(run))
        return env

    def __call__(self, run: BatchJobRun) -> BatchJobResult:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{run.job_name}-attempt-{run.attempt}.log"
        argv = container_argv(self.image, run.command)
        with log_path.open("wb") as log:
            log.write(f"$ {' '.join(self.image.argv(run.command))}\n".encode())
            log.flush()
            process = subprocess.Popen(argv, env=self.environment(run), stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
            return self._supervise(run, process)

    def _supervise(self, run: BatchJobRun, process: subprocess.Popen[bytes]) -> BatchJobResult:
        started = time.monotonic()
        status_reason: str | None = None
        sigterm_at: float | None = None
        while process.poll() is None:
            if sigterm_at is None:
                if reason := run.stop_reason():
                    status_reason = reason
                elif run.timeout_seconds and time.monotonic() - started > run.timeout_seconds:
                    status_reason = TIMEOUT_REASON
                elif self.interrupt is not None and self.interrupt(run):
                    status_reason = SPOT_RECLAIM_REASON
                if status_reason:
                    logger.info("stopping %s attempt %d: %s", run.job_name, run.attempt, status_reason)
                    process.send_signal(signal.SIGTERM)
                    sigterm_at = time.monotonic()
            elif time.monotonic() - sigterm_at > self.grace_seconds:
                process.kill()
            time.sleep(self.poll_seconds)
        return BatchJobResult(container_exit_code(process.returncode), status_reason)
