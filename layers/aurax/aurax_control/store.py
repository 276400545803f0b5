"""The run-state table: one partition per run, one item per concern.

Key schema `pk` (S) + `sk` (S). Items of run R (`pk = "RUN#R"`):

- `sk = "STATE"`: the `RunState` fields as plain attributes (numbers as numbers; a non-finite loss as the
  string "NaN"/"Infinity"), plus `config_uri` and `plan_id` (new for each execution's plan: the decide,
  abort and promote tasks include it in their idempotency keys, so a later execution of the same run is
  not mistaken for a retry). Writers update only the fields they own (UpdateItem SET/ADD),
  so the monitor, the ledger and the state machine's tasks never overwrite each other's fields.
- `sk = "LEDGER"`: the `CostLedger` as JSON in `doc`, with `spend_usd`/`projected_usd` copied out for people.
- `sk = "MONITOR"`: the metrics monitor's rolling state (`MonitorState`) as JSON in `doc`.
- `sk = "WATCH"`: the idle watch's dedupe memory (`WatchState`) as JSON in `doc`.

JSON documents carry a `version` attribute; `put_doc` with `expected_version` is a compare-and-swap, so two
concurrent monitor invocations cannot silently lose an update (the loser raises and Lambda retries it).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from botocore.exceptions import ClientError
from pydantic import BaseModel

from aurax_contracts import AbortReason, RunState

from .aws import client

STATE, LEDGER, MONITOR, WATCH = "STATE", "LEDGER", "MONITOR", "WATCH"
#: Runs the scheduled watches look after: anything not yet finished one way or another.
ACTIVE_STATUSES = ("planned", "preparing", "training", "evaluating", "decided")

M = TypeVar("M", bound=BaseModel)


class ConcurrentUpdateError(RuntimeError):
    """Another invocation changed the document first; retry the whole invocation."""


def run_pk(run_id: str) -> str:
    return f"RUN#{run_id}"


def to_attribute(value: Any) -> dict[str, Any]:
    """A Python value as a DynamoDB attribute value (floats by their exact repr; NaN/Inf as strings, which
    DynamoDB numbers cannot hold and the contracts parse back)."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int):
        return {"N": str(value)}
    if isinstance(value, float):
        if math.isfinite(value):
            return {"N": repr(value)}
        return {"S": "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, Mapping):
        return {"M": {str(k): to_attribute(v) for k, v in value.items()}}
    if isinstance(value, (list, tuple)):
        return {"L": [to_attribute(v) for v in value]}
    raise TypeError(f"cannot store {type(value).__name__} in DynamoDB")


def from_attribute(attr: Mapping[str, Any]) -> Any:
    (kind, value), = attr.items()
    if kind == "NULL":
        return None
    if kind == "N":
        # Written by to_attribute: integers without a point or exponent, floats as their repr.
        return int(value) if "." not in value and "e" not in value.lower() else float(value)
    if kind == "M":
        return {k: from_attribute(v) for k, v in value.items()}
    if kind == "L":
        return [from_attribute(v) for v in value]
    return value  # S, BOOL


def _now() -> datetime:
    return datetime.now(UTC)


class RunStore:
    """Typed access to the run-state table."""

    def __init__(self, table: str) -> None:
        self.table = table

    @property
    def _ddb(self) -> Any:
        return client("dynamodb")

    # --- STATE -----------------------------------------------------------------------------------
    def get_state(self, run_id: str) -> RunState | None:
        item = self._get(run_id, STATE)
        return None if item is None else _state_from_item(item)

    def get_config_uri(self, run_id: str) -> str | None:
        item = self._get(run_id, STATE)
        return None if item is None else from_attribute(item["config_uri"]) if "config_uri" in item else None

    def get_plan_id(self, run_id: str) -> str | None:
        item = self._get(run_id, STATE)
        return None if item is None or "plan_id" not in item else from_attribute(item["plan_id"])

    def plan(self, state: RunState, config_uri: str, plan_id: str) -> None:
        """(Re)start a run: the whole STATE item is written, clearing a previous execution's abort."""
        fields = state.model_dump(mode="python", exclude_none=False)
        item = {name: to_attribute(_plain(value)) for name, value in fields.items()}
        item.update(pk={"S": run_pk(state.run_id)}, sk={"S": STATE}, config_uri={"S": config_uri},
                    plan_id={"S": plan_id})
        self._ddb.put_item(TableName=self.table, Item=item)

    def update_state(self, run_id: str, set_fields: Mapping[str, Any] | None = None,
                     add_fields: Mapping[str, int] | None = None) -> None:
        """SET the given fields and ADD to the given counters (atomic; unknown runs get a fresh item)."""
        values = {"run_id": run_id, "updated_at": _now().isoformat(), **(set_fields or {})}
        names: dict[str, str] = {}
        attrs: dict[str, Any] = {}
        sets, adds = [], []
        for i, (name, value) in enumerate(values.items()):
            names[f"#s{i}"] = name
            attrs[f":s{i}"] = to_attribute(_plain(value))
            sets.append(f"#s{i} = :s{i}")
        for i, (name, amount) in enumerate((add_fields or {}).items()):
            names[f"#a{i}"] = name
            attrs[f":a{i}"] = to_attribute(int(amount))
            adds.append(f"#a{i} :a{i}")
        expression = "SET " + ", ".join(sets) + (" ADD " + ", ".join(adds) if adds else "")
        self._ddb.update_item(TableName=self.table, Key=_key(run_id, STATE), UpdateExpression=expression,
                              ExpressionAttributeNames=names, ExpressionAttributeValues=attrs)

    def advance_status(self, run_id: str, status: str) -> bool:
        """Set the status of a run still in progress; a finished run (aborted, promoted) keeps its status."""
        try:
            self._ddb.update_item(
                TableName=self.table, Key=_key(run_id, STATE),
                UpdateExpression="SET #st = :s, updated_at = :t",
                ConditionExpression="#st IN (" + ", ".join(f":a{i}" for i in range(len(ACTIVE_STATUSES))) + ")",
                ExpressionAttributeNames={"#st": "status"},
                ExpressionAttributeValues={":s": {"S": status}, ":t": {"S": _now().isoformat()},
                                           **{f":a{i}": {"S": s} for i, s in enumerate(ACTIVE_STATUSES)}})
            return True
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise

    def record_abort(self, run_id: str, reason: AbortReason, detail: str) -> bool:
        """Record why the control plane stopped the run; the first reason wins. True when this call won."""
        try:
            self._ddb.update_item(
                TableName=self.table, Key=_key(run_id, STATE),
                UpdateExpression="SET abort_reason = :r, abort_detail = :d, updated_at = :t, run_id = :id",
                ConditionExpression="attribute_not_exists(abort_reason) OR abort_reason = :null",
                ExpressionAttributeValues={":r": {"S": reason.value}, ":d": {"S": detail[:2000]},
                                           ":t": {"S": _now().isoformat()}, ":id": {"S": run_id},
                                           ":null": {"NULL": True}})
            return True
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise

    def active_runs(self) -> Iterator[tuple[RunState, str | None]]:
        """Every run the scheduled watches look after, with its config URI (a scan: runs are few)."""
        paginator = self._ddb.get_paginator("scan")
        for page in paginator.paginate(
                TableName=self.table, FilterExpression="sk = :state AND #st IN (" +
                ", ".join(f":a{i}" for i in range(len(ACTIVE_STATUSES))) + ")",
                ExpressionAttributeNames={"#st": "status"},
                ExpressionAttributeValues={":state": {"S": STATE},
                                           **{f":a{i}": {"S": s} for i, s in enumerate(ACTIVE_STATUSES)}}):
            for item in page.get("Items", []):
                uri = from_attribute(item["config_uri"]) if "config_uri" in item else None
                yield _state_from_item(item), uri

    # --- JSON documents ----------------------------------------------------------------------------
    def get_doc(self, run_id: str, sk: str, model: type[M]) -> tuple[M | None, int]:
        """The document and its version (0 when absent)."""
        item = self._get(run_id, sk)
        if item is None or "doc" not in item:
            return None, 0
        return model.model_validate_json(item["doc"]["S"]), int(item.get("version", {"N": "0"})["N"])

    def put_doc(self, run_id: str, sk: str, doc: BaseModel, expected_version: int | None = None,
                extra: Mapping[str, Any] | None = None) -> int:
        """Write a document; with `expected_version`, only if nobody wrote it since. Returns the new version."""
        version = (expected_version or 0) + 1
        item = {**_key(run_id, sk), "doc": {"S": doc.model_dump_json()}, "version": {"N": str(version)},
                **{k: to_attribute(_plain(v)) for k, v in (extra or {}).items()}}
        kwargs: dict[str, Any] = {}
        if expected_version is not None:
            if expected_version == 0:
                kwargs["ConditionExpression"] = "attribute_not_exists(pk)"
            else:
                kwargs.update(ConditionExpression="version = :v",
                              ExpressionAttributeValues={":v": {"N": str(expected_version)}})
        try:
            self._ddb.put_item(TableName=self.table, Item=item, **kwargs)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise ConcurrentUpdateError(f"{sk} of run {run_id} changed under us (expected version "
                                            f"{expected_version}); the invocation is retried") from exc
            raise
        return version

    def _get(self, run_id: str, sk: str) -> dict[str, Any] | None:
        return self._ddb.get_item(TableName=self.table, Key=_key(run_id, sk), ConsistentRead=True).get("Item")


def _key(run_id: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": run_pk(run_id)}, "sk": {"S": sk}}


def _plain(value: Any) -> Any:
    """Enums and datetimes as the strings the contracts parse back."""
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "value") and isinstance(value.value, str):
        return value.value
    return value


def _state_from_item(item: Mapping[str, Any]) -> RunState:
    fields = {name: from_attribute(attr) for name, attr in item.items() if name in RunState.model_fields}
    return RunState.model_validate(fields)
