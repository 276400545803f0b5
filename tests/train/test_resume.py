"""The resume guarantee, proven with real `aurax job train` processes: however a run is stopped (SIGKILL at
any step or mid-checkpoint, SIGTERM, a spot notice) and restarted with the same command, it ends with
bit-identical trainable weights and the same per-step losses as the uninterrupted run."""

from __future__ import annotations

import http.server
import json
import os
import random
import signal
import threading
import time
from pathlib import Path

import pytest

from aurax.cli import main
from aurax_contracts import JobExit
from aurax_contracts.metrics import CheckpointSaved, Heartbeat, Interruption

from .conftest import (
    assert_same_weights,
    latest_checkpoint,
    records,
    run_train,
    start_train,
    step_losses,
    train_argv,
    wait_for_line,
)

pytestmark = pytest.mark.slow
TOTAL_STEPS = 9  # 3 epochs of 3 steps (12 clips, 4 per step)


def assert_matches_baseline(paths: dict[str, Path], baseline: dict) -> None:
    assert step_losses(paths) == baseline["losses"]
    assert_same_weights(latest_checkpoint(paths).load_tensors(), baseline["weights"])


def test_sigkill_at_random_steps_and_mid_checkpoint_resumes_bit_identically(make_run, baseline) -> None:
    rng = random.Random(int(os.environ.get("AURAX_TEST_SEED", "2026")))
    kill_step = rng.randint(1, 4)
    # Checkpoints are written after steps 2, 4, 8 (every 2) and 3, 6 (epoch ends).
    in_checkpoint = rng.choice([s for s in (2, 3, 4, 6) if s > kill_step])
    external = rng.randint(in_checkpoint + 1, TOTAL_STEPS - 1)
    print(f"kills: after step {kill_step}, inside the checkpoint of step {in_checkpoint}, from outside during "
          f"step {external}")
    paths = make_run()
    for fault, step in (("AURAX_FAULT_KILL_AT_STEP", kill_step), ("AURAX_FAULT_KILL_IN_CHECKPOINT", in_checkpoint)):
        killed = run_train(paths, until=3, **{fault: str(step)})
        assert killed.returncode == -signal.SIGKILL, killed.stderr
    # A kill from outside at a random moment of a step (slowed down so that the moment is inside it).
    proc = start_train(paths, until=3, AURAX_FAULT_SLOW_STEP_SECONDS="0.3")
    wait_for_line(proc, f"step {external - 1} ")
    time.sleep(rng.uniform(0, 0.3))
    proc.kill()
    assert proc.wait() == -signal.SIGKILL
    resumed = run_train(paths, until=3)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr
    assert_matches_baseline(paths, baseline)


def test_sigterm_mid_epoch_saves_at_once_exits_75_and_resumes_without_losing_a_step(make_run, baseline) -> None:
    paths = make_run()
    proc = start_train(paths, until=3, every=None, AURAX_FAULT_SLOW_STEP_SECONDS="0.5")
    wait_for_line(proc, "step 4 ")  # mid-epoch 1
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == JobExit.INTERRUPTED
    trained = max(step_losses(paths))
    saved = latest_checkpoint(paths).manifest
    assert (saved.step, saved.trigger, saved.epoch_complete) == (trained, "interruption", False)
    stops = [r for r in records(paths) if isinstance(r, Interruption)]
    assert [(r.cause, r.step, r.steps_lost) for r in stops] == [("sigterm", trained, 0)]
    resumed = run_train(paths, until=3, every=None)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from {paths['run'] / 'checkpoints'}/step-{trained:09d}" in resumed.stderr
    assert_matches_baseline(paths, baseline)


class FakeImds(http.server.ThreadingHTTPServer):
    """IMDSv2 on 127.0.0.1: token, placement, and a spot notice once `notice` is set."""

    def __init__(self) -> None:
        self.notice = threading.Event()
        self.placement_fails = threading.Event()  # the service was not answering when the job started
        self.token = "test-token"
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _reply(self, code: int, body: str = "") -> None:
                self.send_response(code)
                self.end_headers()
                self.wfile.write(body.encode())

            def do_PUT(self) -> None:
                ok = self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
                self._reply(200, server.token) if ok else self._reply(400)

            def do_GET(self) -> None:
                if self.headers.get("X-aws-ec2-metadata-token") != server.token:
                    return self._reply(401)
                items = {"/latest/meta-data/instance-type": "g4dn.xlarge",
                         "/latest/meta-data/placement/availability-zone": "us-east-1a"}
                if server.placement_fails.is_set() and "spot" not in self.path:
                    return self._reply(500)
                if server.notice.is_set():
                    items["/latest/meta-data/spot/instance-action"] = json.dumps(
                        {"action": "terminate", "time": "2026-11-26T20:00:00Z"})
                self._reply(200, items[self.path]) if self.path in items else self._reply(404)

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.fixture
def fake_imds():
    server = FakeImds()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_spot_notice_from_instance_metadata_checkpoints_and_exits_75(make_run, baseline, fake_imds) -> None:
    paths = make_run()
    endpoint = f"http://127.0.0.1:{fake_imds.server_address[1]}"
    proc = start_train(paths, until=3, every=None, AURAX_FAULT_SLOW_STEP_SECONDS="0.5",
                       AURAX_IMDS_ENDPOINT=endpoint, AURAX_SPOT_POLL_SECONDS="0.1")
    wait_for_line(proc, "step 2 ")
    fake_imds.notice.set()
    assert proc.wait(timeout=120) == JobExit.INTERRUPTED
    written = records(paths)
    stops = [r for r in written if isinstance(r, Interruption)]
    assert [(r.cause, r.steps_lost) for r in stops] == [("spot-notice", 0)]
    saves = [r for r in written if isinstance(r, CheckpointSaved)]
    assert saves[-1].trigger == "interruption" and saves[-1].step == stops[0].step == max(step_losses(paths))
    beats = [r for r in written if isinstance(r, Heartbeat)]
    assert beats and all((b.instance_type, b.availability_zone, b.total_steps) == ("g4dn.xlarge", "us-east-1a",
                                                                                   TOTAL_STEPS) for b in beats)
    fake_imds.notice.clear()  # the replacement instance has no notice
    resumed = run_train(paths, until=3, every=None, AURAX_IMDS_ENDPOINT=endpoint)
    assert resumed.returncode == 0, resumed.stderr
    assert_matches_baseline(paths, baseline)


def test_under_batch_the_spot_notice_is_polled_even_if_metadata_did_not_answer_at_start(
        make_run, fake_imds, monkeypatch) -> None:
    paths = make_run()
    fake_imds.placement_fails.set()  # placement look-ups fail: before, this switched the poller off for good
    fake_imds.notice.set()
    for name, value in {"AWS_BATCH_JOB_ID": "job-1", "AURAX_SPOT_POLL_SECONDS": "0.05",
                        "AURAX_IMDS_ENDPOINT": f"http://127.0.0.1:{fake_imds.server_address[1]}",
                        "AURAX_FAULT_SLOW_STEP_SECONDS": "0.2"}.items():
        monkeypatch.setenv(name, value)
    assert main(train_argv(paths, 3)) == JobExit.INTERRUPTED
    stops = [r for r in records(paths) if isinstance(r, Interruption)]
    assert [(r.cause, r.steps_lost) for r in stops] == [("spot-notice", 0)]
    assert stops[0].step < TOTAL_STEPS
