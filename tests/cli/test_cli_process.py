"""`aurax` as a process: a SIGTERM that reaches a Batch job before its watch starts is not lost, and a reader
that stops reading (`| head`) ends a command quietly."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import pytest

from aurax import interrupts
from aurax.cli import main
from aurax.interrupts import Cause, InterruptWatch


@pytest.fixture
def sigterm_restored(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(interrupts, "_EARLY_SIGTERM", threading.Event())
    previous = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, previous)


def test_a_sigterm_before_a_batch_jobs_watch_starts_is_acted_on_when_it_starts(monkeypatch, sigterm_restored):
    monkeypatch.setenv("AWS_BATCH_JOB_ID", "job-1")
    with pytest.raises(SystemExit):
        main(["job", "train", "--help"])  # main has run up to argument parsing, as before a job's imports
    assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL  # else the signal below ends this test run
    signal.raise_signal(signal.SIGTERM)  # Batch stops the container while torch is still importing
    watch = InterruptWatch(imds=None, stop_request_uri=None)
    watch.start()
    try:
        assert watch.pending() is Cause.SIGTERM
    finally:
        watch.stop()


def test_outside_batch_sigterm_keeps_its_default_action(monkeypatch, sigterm_restored):
    monkeypatch.delenv("AWS_BATCH_JOB_ID", raising=False)
    with pytest.raises(SystemExit):
        main(["job", "train", "--help"])
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_reader_that_closes_the_pipe_ends_the_command_quietly():
    command = [sys.executable, "-m", "aurax.cli", "config", "reference"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # `aurax config reference | head -0`: the reader is gone before the first write
    err = process.stderr.read().decode()
    assert process.wait(timeout=60) == 128 + signal.SIGPIPE
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_a_multi_gpu_launcher_stopped_before_its_workers_start_exits_75_and_starts_none(monkeypatch,
                                                                                         sigterm_restored):
    """The launcher starts no watch of its own: a SIGTERM it held while torch imported must not be lost (the
    workers would train on until ECS kills the container at its stop timeout)."""
    from aurax.train import distributed
    from aurax_contracts import JobExit

    def no_worker(*args, **kwargs):
        raise AssertionError("a worker was started after the job was told to stop")

    monkeypatch.setenv("AWS_BATCH_JOB_ID", "job-1")
    with pytest.raises(SystemExit):
        main(["job", "train", "--help"])
    held = signal.getsignal(signal.SIGTERM)
    signal.raise_signal(signal.SIGTERM)  # Batch stops the container while the launcher imports torch
    monkeypatch.setattr(distributed.subprocess, "Popen", no_worker)
    assert distributed.launch_workers(["job", "train"], 2) == JobExit.INTERRUPTED
    assert signal.getsignal(signal.SIGTERM) is held


def test_a_worker_the_forwarded_sigterm_ends_while_it_imports_makes_the_job_interrupted_not_failed(
        monkeypatch, sigterm_restored):
    """Workers install their SIGTERM hold only after importing the CLI: one stopped before that dies of the
    signal (-15). It had trained nothing, so the job exits 75 (Batch retries), not 1 (the run would end)."""
    from aurax.train import distributed
    from aurax_contracts import JobExit

    real_popen = subprocess.Popen
    started = threading.Event()

    def importing_worker(args, **kwargs):  # a worker that has not yet installed any SIGTERM handler
        started.set()
        return real_popen([sys.executable, "-c", "import time; time.sleep(60)"], **kwargs)

    def batch_stops_the_container() -> None:
        assert started.wait(30)
        time.sleep(0.5)  # both workers started
        signal.raise_signal(signal.SIGTERM)  # reaches the launcher's forwarding handler

    monkeypatch.setattr(distributed.subprocess, "Popen", importing_worker)
    stopper = threading.Thread(target=batch_stops_the_container)
    stopper.start()
    try:
        assert distributed.launch_workers(["job", "train"], 2) == JobExit.INTERRUPTED
    finally:
        stopper.join()
