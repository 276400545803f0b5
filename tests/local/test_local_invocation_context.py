"""An in-process Lambda invocation's environment and stdout are its own: other threads of the emulation neither
see nor race them (a shared `os.environ` changed per invocation once failed pipeline runs with
`KeyError: 'AWS_LAMBDA_FUNCTION_NAME'` in a thread copying the environment, and a CLI's output printed while a
Lambda ran went into that function's log file)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import pytest

from aurax.local.environ import function_environment, isolated_environ
from aurax.local.moto_patches import _LOG_ROUTER

NAME = "AWS_LAMBDA_FUNCTION_NAME"


@pytest.fixture(autouse=True)
def _installed():
    assert NAME not in os.environ
    with isolated_environ():
        yield


@contextmanager
def invocation_running(context: Callable[[], AbstractContextManager[object]],
                       body: Callable[[], None] = lambda: None) -> Iterator[None]:
    """Holds an invocation open in its own thread (inside `context`, after `body`) while the block runs."""
    inside, release = threading.Event(), threading.Event()

    def invocation() -> None:
        with context():
            body()
            inside.set()
            release.wait(10)

    lambda_thread = threading.Thread(target=invocation)
    lambda_thread.start()
    try:
        assert inside.wait(10)
        yield
    finally:
        release.set()
        lambda_thread.join()


def test_an_invocations_variables_are_seen_in_it_and_in_the_threads_it_starts():
    seen: dict[str, str | None] = {}
    with function_environment({NAME: "aurax-decide", "TABLE": "runs"}):
        assert os.environ[NAME] == "aurax-decide" and os.getenv("TABLE") == "runs"
        assert dict(os.environ)[NAME] == "aurax-decide" and NAME in os.environ.copy()
        worker = threading.Thread(target=lambda: seen.update(worker=os.environ.get(NAME)))
        worker.start()
        worker.join()
    assert seen == {"worker": "aurax-decide"}
    assert NAME not in os.environ


def test_other_threads_and_subprocesses_never_see_an_invocations_variables():
    with invocation_running(lambda: function_environment({NAME: "aurax-decide"})):
        assert NAME not in os.environ and NAME not in dict(os.environ)
        child = subprocess.run([sys.executable, "-c", f"import os; print('{NAME}' in os.environ)"],
                               capture_output=True, text=True, check=True)
        assert child.stdout.strip() == "False"


def test_copying_the_environment_while_invocations_come_and_go_never_fails():
    stop = threading.Event()
    errors: list[BaseException] = []

    def invocations() -> None:
        while not stop.is_set():
            with function_environment({NAME: "aurax-monitor", "EXTRA": "1"}):
                pass

    def copies() -> None:
        try:
            for _ in range(3000):
                assert NAME not in dict(os.environ)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    churn = threading.Thread(target=invocations)
    churn.start()
    try:
        copies()
    finally:
        stop.set()
        churn.join()
    assert errors == []


def test_writes_and_deletions_in_an_invocation_stay_in_it(monkeypatch):
    monkeypatch.setenv("AURAX_SHARED", "process")
    with function_environment({NAME: "aurax-plan"}):
        os.environ["AURAX_SET_BY_HANDLER"] = "1"
        del os.environ["AURAX_SHARED"]
        assert "AURAX_SHARED" not in os.environ and os.environ["AURAX_SET_BY_HANDLER"] == "1"
        with pytest.raises(KeyError):
            del os.environ["AURAX_NEVER_SET"]
    assert os.environ["AURAX_SHARED"] == "process" and "AURAX_SET_BY_HANDLER" not in os.environ


def test_only_an_invocations_own_output_goes_to_its_log_file(tmp_path, capsys):
    log = (tmp_path / "aurax-cost-ledger.log").open("w")

    def handler() -> None:
        print("ledger: priced attempt 1")
        worker = threading.Thread(target=lambda: print("ledger worker: done"))
        worker.start()
        worker.join()

    with invocation_running(lambda: _LOG_ROUTER.to(log), handler):
        print('{"run_id": "stop-1"}')  # the operator's command prints while the function runs
    log.close()
    assert capsys.readouterr().out == '{"run_id": "stop-1"}\n'
    assert (tmp_path / "aurax-cost-ledger.log").read_text() == "ledger: priced attempt 1\nledger worker: done\n"
