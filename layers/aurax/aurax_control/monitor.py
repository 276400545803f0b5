"""Divergence watch: the rules the metrics monitor applies to each new chunk of metric records.

Plain functions and a small state machine over `MonitorState`, which is persisted between chunks so that
each invocation reads only the new object: the cost over an 8-week run stays linear in the records.

Rules (thresholds from `MonitoringConfig`):
- a NaN/Inf training or validation loss, or a `diverged` record -> stop the job now (critical, never
  rate-limited, once per run);
- a loss above `loss_warn`, a loss above `spike_factor` x its moving level (an EMA over
  `spike_window_records`), a moving level that has not improved by `plateau_min_delta` for
  `plateau_records` records, warnings the job wrote, and bad lines -> warnings;
- during the first `critical_window_hours` after the first training record (wall clock) every warning alerts
  at once (strict profile);
  afterwards each warning code alerts at most once per `warning_interval_minutes` (relaxed profile).
  Either way one chunk gives at most one alert per code, with the count and the first occurrence's values
  as evidence.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aurax_contracts import AlertDetail, Severity
from aurax_contracts.config import MonitoringConfig
from aurax_contracts.metrics import (
    CheckpointSaved,
    Diverged,
    Heartbeat,
    Interruption,
    JobWarning,
    MetricRecord,
    Progress,
    TrainStep,
    ValLoss,
    parse_metric_line,
)

MAX_BAD_EXAMPLES = 5
HIGH_LOSS_ACTION = ("Watch the next chunks; if it does not come down, lower training.learning_rate and resume "
                    "from the last checkpoint.")


class BadLineKind(StrEnum):
    BINARY = "binary"
    INVALID_JSON = "invalid-json"
    EMPTY_OBJECT = "empty-object"
    NAN_TEXT = "nan-text"
    ABSURD_VALUE = "absurd-value"
    WRONG_TYPE = "wrong-type"
    MISSING_FIELD = "missing-field"
    UNKNOWN_KIND = "unknown-kind"
    WRONG_RUN = "wrong-run"
    OTHER = "other"


_NON_FINITE_TEXT = {"nan", "-nan", "inf", "-inf", "+inf", "infinity", "-infinity", "+infinity"}
_RANGE_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "value_error",
                 "finite_number"}
_TYPE_ERRORS = {"float_type", "int_type", "string_type", "bool_type", "float_parsing", "int_parsing",
                "int_from_float", "model_type", "model_attributes_type", "datetime_type", "datetime_parsing",
                "datetime_from_date_parsing", "timezone_aware", "dict_type", "list_type", "literal_error",
                "string_pattern_mismatch", "string_too_long", "string_too_short", "extra_forbidden"}


def classify_bad_line(line: bytes, error: ValidationError | None) -> BadLineKind:
    """Why a line is not a metric record, most specific cause first."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return BadLineKind.BINARY
    if any(ord(c) < 32 and c not in "\t\r\n" for c in text):
        return BadLineKind.BINARY
    if error is None:
        return BadLineKind.OTHER
    items = error.errors(include_url=False)
    kinds = {item["type"] for item in items}
    if "json_invalid" in kinds or "json_type" in kinds:
        return BadLineKind.INVALID_JSON
    if text.strip() == "{}":
        return BadLineKind.EMPTY_OBJECT
    if any(isinstance(item.get("input"), str) and item["input"].strip().lower() in _NON_FINITE_TEXT
           for item in items):
        return BadLineKind.NAN_TEXT
    if kinds & _RANGE_ERRORS:
        return BadLineKind.ABSURD_VALUE
    if "union_tag_invalid" in kinds:
        return BadLineKind.UNKNOWN_KIND
    if "union_tag_not_found" in kinds or "missing" in kinds:
        return BadLineKind.MISSING_FIELD
    if kinds & _TYPE_ERRORS:
        return BadLineKind.WRONG_TYPE
    return BadLineKind.OTHER


class Host(BaseModel):
    instance_type: str | None = None
    availability_zone: str | None = None


class MonitorState(BaseModel):
    """What the monitor remembers between chunks (the `MONITOR` item of the run-state table)."""

    model_config = ConfigDict(ser_json_inf_nan="constants", extra="ignore")

    records: int = 0
    level: float | None = None
    """Exponential moving level of the finite training loss."""
    level_count: int = 0
    best_level: float | None = None
    since_best: int = 0
    """Records since the moving level last improved by plateau_min_delta."""
    last_alert: dict[str, datetime] = Field(default_factory=dict)
    training_started_at: datetime | None = None
    last_record_at: datetime | None = None
    last_progress_at: datetime | None = None
    """Latest record of finished work: a training, validation or checkpoint record, or a heartbeat whose
    progress counters grew (see `aurax_contracts.metrics.Progress`)."""
    progress_of: str | None = None
    """`<job id>#<attempt>` whose counters `progress` holds (counters restart with each attempt)."""
    progress: Progress | None = None
    step: int = 0
    epoch: int = 0
    total_steps: int | None = None
    last_loss: float | None = None
    last_val_loss: float | None = None
    job_id: str | None = None
    hosts: dict[str, Host] = Field(default_factory=dict)
    """`<job id>#<attempt>` -> where that attempt ran (from heartbeats; the cost ledger prices it)."""
    last_checkpoint_uri: str | None = None
    interruptions: int = 0
    bad_lines: int = 0
    diverged: bool = False


@dataclass
class StopOrder:
    """Stop the job: what the handler turns into a StopRequest, a terminate and a critical alert."""

    detail: str
    alert: AlertDetail


@dataclass
class _Warning:
    code: str
    what: str
    action: str
    at: datetime
    step: int | None
    epoch: int | None
    evidence: dict[str, float | int | str | None]
    count: int = 1


@dataclass
class ChunkSummary:
    records: int = 0
    bad: Counter[BadLineKind] = field(default_factory=Counter)
    bad_examples: list[str] = field(default_factory=list)
    losses: int = 0
    samples_per_s_total: float = 0.0
    last_loss: float | None = None
    last_val_loss: float | None = None
    interruptions: int = 0
    phase: str | None = None
    """The job phase of the chunk's latest heartbeat or training record (prepare, train, evaluate)."""

    @property
    def bad_total(self) -> int:
        return sum(self.bad.values())

    @property
    def mean_samples_per_s(self) -> float | None:
        return self.samples_per_s_total / self.losses if self.losses else None


@dataclass
class ChunkResult:
    state: MonitorState
    alerts: list[AlertDetail]
    stop: StopOrder | None
    summary: ChunkSummary


def _shown(value: float) -> float | str:
    """Evidence values travel as JSON: non-finite floats become words."""
    return value if math.isfinite(value) else str(value).lower()


def in_critical_window(started: datetime | None, at: datetime, hours: float) -> bool:
    """The strict profile applies from the first training record until `hours` later (wall clock: hours spent
    waiting for spot capacity count)."""
    return started is None or at - started < timedelta(hours=hours)


def should_alert(last: datetime | None, at: datetime, strict: bool, interval_minutes: float) -> bool:
    """Strict profile: always. Relaxed: at most once per interval for the same code."""
    return strict or last is None or at - last >= timedelta(minutes=interval_minutes)


class ChunkMonitor:
    """Feeds one chunk's lines through the rules; `finish()` says what to alert and whether to stop."""

    def __init__(self, run_id: str, config: MonitoringConfig, state: MonitorState, *,
                 already_stopped: bool = False) -> None:
        self.run_id = run_id
        self.config = config
        self.state = state.model_copy(deep=True)
        self.already_stopped = already_stopped
        self.summary = ChunkSummary()
        self._alpha = 2.0 / (config.spike_window_records + 1)
        self._warnings: dict[str, _Warning] = {}
        self._stop: StopOrder | None = None
        self._lineno = 0

    # --- input -----------------------------------------------------------------------------------
    def feed_line(self, line: bytes) -> None:
        self._lineno += 1
        if not line.strip():
            return
        try:
            record = parse_metric_line(line)
        except ValidationError as exc:
            self._bad(line, classify_bad_line(line, exc), str(exc.errors(include_url=False)[0]["msg"]))
            return
        if record.run_id != self.run_id:
            self._bad(line, BadLineKind.WRONG_RUN, f"run_id {record.run_id!r} in the metrics of {self.run_id!r}")
            return
        self.feed_record(record)

    def feed_record(self, record: MetricRecord) -> None:
        state = self.state
        self.summary.records += 1
        state.records += 1
        if state.last_record_at is None or record.time > state.last_record_at:
            state.last_record_at = record.time
        if isinstance(record, TrainStep | ValLoss | CheckpointSaved):
            self._worked(record.time)
        if isinstance(record, TrainStep):
            self._train(record)
        elif isinstance(record, ValLoss):
            self._progress(record.step, record.epoch)
            state.last_val_loss = self.summary.last_val_loss = record.val_loss
            if not math.isfinite(record.val_loss):
                self._diverge(record, "non-finite validation loss", {"val_loss": _shown(record.val_loss)})
        elif isinstance(record, Diverged):
            self._progress(record.step, record.epoch)
            self._diverge(record, f"the job reported divergence ({record.cause})",
                          {"cause": record.cause, "last_good_checkpoint": record.last_good_checkpoint})
        elif isinstance(record, Heartbeat):
            self.summary.phase = record.phase
            self._progress(record.step, record.epoch)
            if record.progress is not None:
                self._heartbeat_progress(f"{record.batch_job_id}#{record.attempt}", record.progress, record.time)
            if record.batch_job_id:
                state.job_id = record.batch_job_id
                if record.instance_type or record.availability_zone:
                    state.hosts[f"{record.batch_job_id}#{record.attempt}"] = Host(
                        instance_type=record.instance_type, availability_zone=record.availability_zone)
            if record.total_steps is not None:
                state.total_steps = record.total_steps
            if record.phase == "train" and state.training_started_at is None:
                state.training_started_at = record.time
        elif isinstance(record, Interruption):
            state.interruptions += 1
            self.summary.interruptions += 1
        elif isinstance(record, JobWarning) and record.code == "high-loss":
            # The job checks every step, this monitor only the logged ones: the same condition, one alert.
            self._warn("high-loss", f"the job saw {record.message[:300]}", record,
                       {"message": record.message[:300], "loss_warn": self.config.loss_warn}, HIGH_LOSS_ACTION)
        elif isinstance(record, JobWarning):
            self._warn(f"job-{record.code}", f"the job warned: {record.code}: {record.message[:300]}", record,
                       {"message": record.message[:300]},
                       "Read the job log around this step; the job carried on, so no action is needed "
                       "unless the warning repeats.")
        elif isinstance(record, CheckpointSaved):
            self._progress(record.step, record.epoch)
            state.last_checkpoint_uri = record.uri

    # --- rules -----------------------------------------------------------------------------------
    def _worked(self, at: datetime) -> None:
        if self.state.last_progress_at is None or at > self.state.last_progress_at:
            self.state.last_progress_at = at

    def _heartbeat_progress(self, attempt_key: str, progress: Progress, at: datetime) -> None:
        """A heartbeat is progress when its attempt's counters grew since the last one seen (or it is the first
        of a new attempt); a late chunk with older, smaller counters is not."""
        state = self.state
        old = state.progress if state.progress_of == attempt_key else None
        counters = progress.model_dump()
        if old is None or any(value > getattr(old, name) for name, value in counters.items()):
            self._worked(at)
        if old is None or all(value >= getattr(old, name) for name, value in counters.items()):
            state.progress_of, state.progress = attempt_key, progress

    def _progress(self, step: int, epoch: int) -> None:
        self.state.step = max(self.state.step, step)
        self.state.epoch = max(self.state.epoch, epoch)

    def _train(self, record: TrainStep) -> None:
        state, cfg = self.state, self.config
        self._progress(record.step, record.epoch)
        self.summary.phase = "train"
        if state.training_started_at is None:
            state.training_started_at = record.time
        state.last_loss = self.summary.last_loss = record.loss
        self.summary.losses += 1
        self.summary.samples_per_s_total += record.samples_per_s
        loss = record.loss
        if not math.isfinite(loss):
            self._diverge(record, f"training loss is {_shown(loss)}", {"loss": _shown(loss),
                                                                       "lr": record.lr,
                                                                       "loss_scale": record.loss_scale})
            return
        if loss > cfg.loss_warn:
            self._warn("high-loss", f"training loss {loss:.3g} is above {cfg.loss_warn:g}", record,
                       {"loss": loss, "loss_warn": cfg.loss_warn, "lr": record.lr}, HIGH_LOSS_ACTION)
        if state.level is not None and state.level_count >= cfg.spike_window_records \
                and loss > cfg.spike_factor * state.level:
            self._warn("loss-spike", f"loss spiked to {loss:.3g}, {loss / state.level:.1f}x its moving level",
                       record, {"loss": loss, "moving_level": round(state.level, 6),
                                           "spike_factor": cfg.spike_factor},
                       "Check for a bad batch or a learning-rate jump; a spike that repeats usually precedes "
                       "divergence: lower the learning rate or grad_clip_norm.")
        state.level = loss if state.level is None else state.level + self._alpha * (loss - state.level)
        state.level_count += 1
        if state.level_count < cfg.spike_window_records:
            return
        if state.best_level is None or state.level < state.best_level - cfg.plateau_min_delta:
            state.best_level, state.since_best = state.level, 0
            return
        state.since_best += 1
        if state.since_best >= cfg.plateau_records:
            state.since_best = 0  # re-armed: a plateau that lasts alerts again after as many records
            self._warn("loss-plateau",
                       f"loss has not improved by {cfg.plateau_min_delta:g} for {cfg.plateau_records} records",
                       record,
                       {"moving_level": round(state.level, 6), "best_level": round(state.best_level, 6),
                        "records": cfg.plateau_records},
                       "If validation loss is flat too, stop early to save budget (`aurax stop`), or raise "
                       "the learning rate; compare with the decision criteria first.")

    def _diverge(self, record: MetricRecord, why: str, evidence: dict[str, float | int | str | None]) -> None:
        self.state.diverged = True
        if self.already_stopped or self._stop is not None:
            return
        step = getattr(record, "step", None)
        epoch = getattr(record, "epoch", None)
        alert = AlertDetail(
            run_id=self.run_id, severity=Severity.CRITICAL,
            code="diverged" if isinstance(record, Diverged) else "nan-loss",
            what=f"Training diverged: {why}; the job is being stopped", step=step, epoch=epoch,
            evidence={"last_checkpoint": self.state.last_checkpoint_uri, **evidence, "record_kind": record.kind,
                      "attempt": record.attempt}, time=record.time,
            action="The job saves nothing newer than its last good checkpoint. Lower training.learning_rate "
                   "(or use model.precision fp32/bf16), then start a new execution to resume from it.")
        self._stop = StopOrder(detail=f"{why} at step {step}, epoch {epoch}", alert=alert)

    def _warn(self, code: str, what: str, record: MetricRecord,
              evidence: dict[str, float | int | str | None], action: str) -> None:
        if code in self._warnings:
            self._warnings[code].count += 1
            return
        self._warnings[code] = _Warning(code, what, action, record.time, getattr(record, "step", None),
                                        getattr(record, "epoch", None), evidence)

    def _bad(self, line: bytes, kind: BadLineKind, why: str) -> None:
        self.summary.bad[kind] += 1
        self.state.bad_lines += 1
        if len(self.summary.bad_examples) < MAX_BAD_EXAMPLES:
            self.summary.bad_examples.append(f"line {self._lineno}: {kind.value}: {why} ({line[:80]!r})")

    # --- output ----------------------------------------------------------------------------------
    def finish(self, now: datetime) -> ChunkResult:
        """Apply the alert profile to this chunk's warnings; returns the new state and what to send."""
        if self.summary.bad_total:
            at = self.state.last_record_at or now
            self._warnings["bad-metric-lines"] = _Warning(
                code="bad-metric-lines", what=f"{self.summary.bad_total} metric lines could not be read",
                action="The good lines around them were processed. Check the job's metric writer; examples "
                       "are in the monitor's log.", at=at, step=self.state.step, epoch=self.state.epoch,
                evidence={kind.value: n for kind, n in sorted(self.summary.bad.items())},
                count=self.summary.bad_total)
        alerts: list[AlertDetail] = []
        for warning in self._warnings.values():
            strict = in_critical_window(self.state.training_started_at, warning.at,
                                        self.config.critical_window_hours)
            if not should_alert(self.state.last_alert.get(warning.code), warning.at, strict,
                                self.config.warning_interval_minutes):
                continue
            self.state.last_alert[warning.code] = warning.at
            alerts.append(AlertDetail(
                run_id=self.run_id, severity=Severity.WARNING, code=warning.code, what=warning.what[:500],
                step=warning.step, epoch=warning.epoch,
                evidence={**warning.evidence, "occurrences_in_chunk": warning.count,
                          "profile": "strict (critical window)" if strict else "relaxed"},
                action=warning.action, time=warning.at))
        if self._stop is not None:
            alerts.insert(0, self._stop.alert)
        return ChunkResult(self.state, alerts, self._stop, self.summary)
