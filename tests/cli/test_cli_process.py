"""`aurax` as a process: a SIGTERM that reaches a Batch job before its watch starts is not lost, and a reader
that stops reading (`| head`) ends a command quietly."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading

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
