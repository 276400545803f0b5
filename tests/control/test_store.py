"""The run-state table layout: field-level updates, first abort reason wins, compare-and-swap documents."""

from __future__ import annotations

import math

import pytest

from aurax_contracts import AbortReason, RunState
from aurax_control.monitor import MonitorState
from aurax_control.store import MONITOR, ConcurrentUpdateError, RunStore, from_attribute, to_attribute

from .conftest import RUN_TABLE
from .records import T0


@pytest.mark.parametrize("value", [0, 7, -3, 1.5, 1e-9, "x", None, True, {"a": [1, 2.5]}, 10**12])
def test_attribute_round_trip(value) -> None:
    assert from_attribute(to_attribute(value)) == value


def test_non_finite_floats_are_stored_as_words() -> None:
    assert to_attribute(float("nan")) == {"S": "NaN"}
    assert to_attribute(float("-inf")) == {"S": "-Infinity"}


def test_state_fields_update_independently_and_the_first_abort_wins(account) -> None:
    store = RunStore(RUN_TABLE)
    store.plan(RunState(run_id="run-a", updated_at=T0), "s3://b/c.json", plan_id="p1")
    store.update_state("run-a", {"step": 10, "last_loss": float("nan")}, {"interruptions": 1})
    store.update_state("run-a", {"epoch": 2}, {"interruptions": 1})
    assert store.record_abort("run-a", AbortReason.DIVERGED, "nan at step 10")
    assert not store.record_abort("run-a", AbortReason.IDLE, "quiet")
    state = store.get_state("run-a")
    assert (state.step, state.epoch, state.interruptions) == (10, 2, 2) and math.isnan(state.last_loss)
    assert state.abort_reason == "diverged" and store.get_config_uri("run-a") == "s3://b/c.json"
    assert store.get_plan_id("run-a") == "p1"
    assert [s.run_id for s, _ in store.active_runs()] == ["run-a"]
    assert store.advance_status("run-a", "training") and store.get_state("run-a").status == "training"
    store.update_state("run-a", {"status": "aborted"})
    assert not store.advance_status("run-a", "evaluating")  # a finished run keeps its status
    assert store.get_state("run-a").status == "aborted"
    # A new execution clears the abort.
    store.plan(RunState(run_id="run-a", updated_at=T0), "s3://b/c.json", plan_id="p1")
    assert store.get_state("run-a").abort_reason is None


def test_documents_are_compare_and_swap(account) -> None:
    store = RunStore(RUN_TABLE)
    version = store.put_doc("run-a", MONITOR, MonitorState(records=1), expected_version=0)
    doc, seen = store.get_doc("run-a", MONITOR, MonitorState)
    assert doc.records == 1 and seen == version == 1
    store.put_doc("run-a", MONITOR, MonitorState(records=2), expected_version=seen)
    with pytest.raises(ConcurrentUpdateError):
        store.put_doc("run-a", MONITOR, MonitorState(records=3), expected_version=seen)  # a stale writer
    with pytest.raises(ConcurrentUpdateError):
        store.put_doc("run-b", MONITOR, MonitorState(), expected_version=3)
