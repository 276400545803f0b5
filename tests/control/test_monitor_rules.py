"""The divergence watch's rules on crafted metric streams (no AWS)."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from aurax_contracts.config import MonitoringConfig
from aurax_control.monitor import BadLineKind, ChunkMonitor, MonitorState, in_critical_window, should_alert

from .records import T0, heartbeat, line, train

CFG = MonitoringConfig(spike_window_records=5, plateau_records=20, plateau_min_delta=0.01,
                       warning_interval_minutes=60, critical_window_hours=48)


def run(lines: list[bytes], state: MonitorState | None = None, cfg: MonitoringConfig = CFG, stopped: bool = False):
    monitor = ChunkMonitor("run-a", cfg, state or MonitorState(), already_stopped=stopped)
    for item in lines:
        monitor.feed_line(item)
    return monitor.finish(T0)


def codes(result) -> list[str]:
    return [a.code for a in result.alerts]


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_loss_stops_the_job_with_one_critical_alert(value: float) -> None:
    saved = line("checkpoint", step=1, epoch=0, uri="s3://b/runs/run-a/checkpoints/step-000000001", sha256="c" * 64,
                 seconds=1.0, bytes=10, trigger="steps")
    result = run([train(1, 2.0), saved, train(2, value), train(3, value)])
    assert result.stop is not None and "step 2" in result.stop.detail
    assert codes(result) == ["nan-loss"]
    alert = result.alerts[0]
    assert alert.severity == "critical" and alert.step == 2 and alert.action
    assert alert.evidence["loss"] in ("nan", "inf")
    assert alert.evidence["last_checkpoint"].endswith("step-000000001")  # where to resume from


def test_non_finite_validation_loss_and_diverged_record_stop_the_job() -> None:
    val = line("val", step=5, epoch=0, val_loss=float("nan"))
    assert run([val]).stop is not None
    div = line("diverged", step=7, epoch=1, cause="overflow-collapse", last_good_checkpoint="s3://b/ck")
    result = run([div])
    assert result.stop is not None and codes(result) == ["diverged"]
    assert result.alerts[0].evidence["last_good_checkpoint"] == "s3://b/ck"


def test_a_run_already_stopped_is_not_stopped_or_alerted_again() -> None:
    result = run([train(1, float("nan"))], stopped=True)
    assert result.stop is None and result.alerts == []
    assert result.state.diverged


def test_finite_stream_does_not_stop() -> None:
    result = run([train(i, 3.0 - i * 0.01) for i in range(1, 30)])
    assert result.stop is None and result.alerts == []
    assert result.state.step == 29 and math.isclose(result.state.last_loss, 3.0 - 0.29)


def test_high_loss_warns_once_per_chunk_with_the_count() -> None:
    result = run([train(1, 12.0), train(2, 15.0), train(3, 2.0)])
    assert codes(result) == ["high-loss"]
    assert result.alerts[0].evidence["occurrences_in_chunk"] == 2
    assert result.alerts[0].step == 1


def test_spike_above_the_moving_level_warns() -> None:
    steady = [train(i, 2.0) for i in range(1, 11)]
    assert codes(run(steady)) == []
    result = run(steady + [train(11, 7.0)])
    assert codes(result) == ["loss-spike"]
    assert result.alerts[0].evidence["moving_level"] == pytest.approx(2.0)


def test_no_spike_during_warm_up() -> None:
    assert codes(run([train(1, 2.0), train(2, 9.0)])) == []


def test_plateau_warns_after_plateau_records_without_improvement() -> None:
    improving = [train(i, 5.0 - 0.1 * i) for i in range(1, 26)]
    assert "loss-plateau" not in codes(run(improving))
    flat = [train(i, 2.0) for i in range(1, 40)]
    assert codes(run(flat)) == ["loss-plateau"]


def test_state_carries_across_chunks() -> None:
    first = run([train(i, 2.0) for i in range(1, 11)])
    second = run([train(11, 7.0)], state=first.state)
    assert codes(second) == ["loss-spike"]
    assert second.state.records == 11


def test_strict_profile_alerts_every_chunk_within_the_critical_window() -> None:
    first = run([train(1, 12.0, at=T0)])
    second = run([train(2, 12.0, at=T0 + timedelta(minutes=5))], state=first.state)
    assert codes(first) == codes(second) == ["high-loss"]
    assert second.alerts[0].evidence["profile"].startswith("strict")


def test_relaxed_profile_rate_limits_after_the_critical_window() -> None:
    start = run([train(1, 2.0, at=T0)]).state
    late = T0 + timedelta(hours=49)
    first = run([train(2, 12.0, at=late)], state=start)
    repeat = run([train(3, 12.0, at=late + timedelta(minutes=30))], state=first.state)
    after_interval = run([train(4, 12.0, at=late + timedelta(minutes=61))], state=repeat.state)
    assert codes(first) == ["high-loss"] and first.alerts[0].evidence["profile"] == "relaxed"
    assert codes(repeat) == []
    assert codes(after_interval) == ["high-loss"]


def test_profile_functions() -> None:
    assert in_critical_window(None, T0, 48)
    assert in_critical_window(T0, T0 + timedelta(hours=47), 48)
    assert not in_critical_window(T0, T0 + timedelta(hours=48), 48)
    assert should_alert(T0, T0, strict=True, interval_minutes=60)
    assert not should_alert(T0, T0 + timedelta(minutes=59), strict=False, interval_minutes=60)
    assert should_alert(None, T0, strict=False, interval_minutes=60)


def test_heartbeat_records_job_host_and_total_steps() -> None:
    result = run([heartbeat(10, T0, job_id="job-9", attempt=2)])
    state = result.state
    assert state.job_id == "job-9" and state.total_steps == 1000
    assert state.hosts["job-9#2"].instance_type == "g4dn.xlarge"
    assert state.hosts["job-9#2"].availability_zone == "us-east-1a"
    assert state.last_record_at == T0


def test_interruptions_are_counted() -> None:
    result = run([line("interruption", step=3, epoch=0, cause="spot-notice")] * 2)
    assert result.state.interruptions == 2 and result.summary.interruptions == 2


BAD_LINES = {
    BadLineKind.INVALID_JSON: b'{"kind": "train", "run_id": "run-a", "ti',
    BadLineKind.WRONG_TYPE: line("train", step="seven", epoch=0, loss=2.0, lr=1e-5, samples_per_s=1.0),
    BadLineKind.NAN_TEXT: line("train", step=1, epoch=0, loss="NaN", lr=1e-5, samples_per_s=1.0),
    BadLineKind.ABSURD_VALUE: line("train", step=1, epoch=0, loss=1e12, lr=1e-5, samples_per_s=1.0),
    BadLineKind.BINARY: b"\x00\xff\xfe\x89PNG\x1a",
    BadLineKind.EMPTY_OBJECT: b"{}",
    BadLineKind.UNKNOWN_KIND: line("gradient", step=1),
    BadLineKind.WRONG_RUN: train(1, 2.0, run_id="other-run"),
}


@pytest.mark.parametrize("kind", list(BAD_LINES))
def test_each_bad_line_kind_is_counted_and_the_good_lines_around_it_kept(kind: BadLineKind) -> None:
    result = run([train(1, 2.5), BAD_LINES[kind], train(2, 2.4)])
    assert result.summary.bad == {kind: 1}
    assert result.summary.records == 2 and result.state.step == 2
    assert result.summary.bad_examples and kind.value in result.summary.bad_examples[0]
    assert codes(result) == ["bad-metric-lines"]
    assert result.alerts[0].evidence[kind.value] == 1
    assert (result.alerts[0].step, result.alerts[0].epoch) == (2, 0)  # when: where the run had got to


def test_blank_lines_are_not_bad() -> None:
    result = run([train(1, 2.0), b"", b"   ", train(2, 2.0)])
    assert result.summary.bad_total == 0 and result.summary.records == 2


def test_a_high_loss_the_job_saw_and_one_the_monitor_saw_are_one_alert() -> None:
    job_saw = line("warning", code="high-loss", message="training loss 12.500 above 10.0", step=3)
    result = run([train(2, 11.0), job_saw, train(4, 12.0)])
    assert codes(result) == ["high-loss"]
    only_job = run([job_saw])
    assert codes(only_job) == ["high-loss"] and "12.500" in only_job.alerts[0].what


def test_warnings_the_job_wrote_are_passed_on() -> None:
    warning = line("warning", code="checkpoint-corrupt", message="step-000000200 skipped: sha256 mismatch", step=200)
    result = run([warning])
    assert codes(result) == ["job-checkpoint-corrupt"]
    assert "sha256 mismatch" in result.alerts[0].what and result.alerts[0].step == 200
