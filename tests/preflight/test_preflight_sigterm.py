"""`aurax preflight` as PID 1 of its container: a real process, a real SIGTERM while a check is blocked (an S3
read that never gets an answer), and exit 75 within seconds, as every job command does."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

from aurax_contracts import JobExit

ROOT = Path(__file__).resolve().parents[2]
#: ECS gives a container its stop timeout after SIGTERM (120 s here); the job must be done well within it.
STOP_WITHIN_SECONDS = 10.0


@cache
def pid_1_prefix() -> list[str]:
    """`unshare` arguments that run the command as PID 1 of a new PID namespace (as in a container), when this
    machine allows it (an unprivileged user namespace); else none, and the command runs as a plain child."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return []
    prefix = [unshare, "--user", "--map-root-user", "--pid", "--fork"]
    probe = subprocess.run([*prefix, "sh", "-c", 'test "$$" = 1'], capture_output=True, timeout=30)
    return prefix if probe.returncode == 0 else []


class SilentServer:
    """Accepts TCP connections and never answers: an S3 endpoint that hangs."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.connected = threading.Event()
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self._held.append(connection)
            self.connected.set()

    def close(self) -> None:
        for connection in self._held:
            connection.close()
        self.socket.close()


@pytest.fixture
def silent_s3() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def job_pid(process: subprocess.Popen[str], as_pid_1: bool) -> int:
    """The job's process id in this namespace: `unshare --fork`'s child, or the process itself."""
    if not as_pid_1:
        return process.pid
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.05)
    raise AssertionError("unshare did not start the job")


def test_sigterm_stops_a_blocked_preflight_within_seconds_with_exit_75(silent_s3: SilentServer,
                                                                       tmp_path: Path) -> None:
    prefix = pid_1_prefix()
    env = {**os.environ, "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{silent_s3.port}", "AURAX_IMDS_ENDPOINT": "off",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    command = [*prefix, sys.executable, "-m", "aurax.cli", "preflight",
               "--analysis-config", "s3://aurax-data/thresholds.yaml"]
    process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        assert silent_s3.connected.wait(120), "preflight never reached its S3 read"
        time.sleep(0.5)  # inside the blocked read, not between two checks
        os.kill(job_pid(process, bool(prefix)), signal.SIGTERM)
        sent = time.monotonic()
        _, stderr = process.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == JobExit.INTERRUPTED, stderr[-2000:]
    assert took < STOP_WITHIN_SECONDS, f"stopped {took:.1f} s after SIGTERM"
    assert "preflight interrupted (sigterm)" in stderr
