"""The state machine's Lambda tasks, as plain functions over a `Runtime` (the handlers only parse and call)."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from aurax_contracts import (
    CheckpointManifest,
    ContractError,
    CostLedger,
    DatasetManifest,
    Decision,
    DecisionDetail,
    DetailType,
    EvalReport,
    ExecutionInput,
    FailureInput,
    FailureVerdict,
    ModelPromotedDetail,
    RunAbortedDetail,
    RunPlan,
    RunState,
    parse_run_config,
)
from aurax_contracts.layout import CHECKPOINTS_DIR, join

from . import objects, report
from .decision import decide, describe
from .failures import judge
from .inputs import AbortInput, DecideInput, PromoteInput
from .runtime import Runtime
from .store import LEDGER

MANIFEST = "manifest.json"
LATEST_POINTER = "latest"
#: Optimizer and RNG state are for resuming, not part of a promoted model.
NOT_PROMOTED = frozenset({"trainer_state.pt"})


class BadConfigError(Exception):
    """The run config is missing or invalid (the state machine catches this error name)."""


class EvalReportMissingError(Exception):
    """The evaluation report the decision needs does not exist."""


class NoVerifiedCheckpointError(Exception):
    """No checkpoint of the run has a manifest whose files are all present."""


# --- plan_run ------------------------------------------------------------------------------------------
def plan(rt: Runtime, request: ExecutionInput, execution_arn: str | None, now: datetime) -> RunPlan:
    plan_id = execution_arn or uuid.uuid4().hex
    # Recorded before the config is checked: the abort task's idempotency key includes it, so a rejected
    # execution must not share the plan id of an earlier (also rejected) one, or its abort would be skipped.
    rt.store.update_state(request.run_id, {"plan_id": plan_id})
    text = objects.read_text(request.config_uri)
    if text is None:
        raise BadConfigError(f"{request.config_uri}: the run config does not exist; fix: upload it or correct "
                             "config_uri")
    try:
        config = parse_run_config(text, request.config_uri)
    except ContractError as exc:
        raise BadConfigError(str(exc)) from exc
    if config.run_id != request.run_id:
        raise BadConfigError(f"{request.config_uri}: run_id {config.run_id!r} differs from the execution's "
                             f"run_id {request.run_id!r}; fix: start the execution with the config's run_id")
    layout = rt.layout(request.run_id)
    fingerprint = config.dataset_fingerprint()
    dataset_uri = layout.dataset_uri(fingerprint)
    rt.store.plan(RunState(run_id=request.run_id, status="planned", execution_arn=execution_arn, updated_at=now),
                  request.config_uri, plan_id=plan_id)
    # A stop request left by a previous execution would stop the new job at once.
    objects.delete(layout.stop_request_uri)
    return RunPlan(run_id=request.run_id, config_uri=request.config_uri, run_uri=layout.run_uri,
                   dataset_uri=dataset_uri, dataset_ready=_dataset_ready(dataset_uri, fingerprint),
                   decision_epoch=config.training.decision_epoch, total_epochs=config.training.total_epochs)


def _dataset_ready(dataset_uri: str, fingerprint: str) -> bool:
    raw = objects.read_bytes(join(dataset_uri, MANIFEST))
    if raw is None:
        return False
    try:
        return DatasetManifest.model_validate_json(raw).fingerprint == fingerprint
    except ValidationError:
        return False  # a corrupt manifest: prepare the dataset again


# --- classify_failure ----------------------------------------------------------------------------------
def classify(rt: Runtime, request: FailureInput) -> FailureVerdict:
    state = rt.store.get_state(request.run_id)
    recorded = state.abort_reason if state else None
    return judge(request, recorded, state.abort_detail if state else None)


# --- decide --------------------------------------------------------------------------------------------
def make_decision(rt: Runtime, request: DecideInput, now: datetime) -> Decision:
    config = rt.load_config(request.config_uri, request.run_id)
    report_uri = join(request.run_uri, "eval", request.point, "report.json")
    raw = objects.read_bytes(report_uri)
    if raw is None:
        raise EvalReportMissingError(f"{report_uri} does not exist; the evaluate job must write it first")
    evaluation = EvalReport.model_validate_json(raw)
    ledger, _ = rt.store.get_doc(request.run_id, LEDGER, CostLedger)
    decision = decide(evaluation, ledger.spend_usd if ledger else None, config, now)
    rt.store.update_state(request.run_id, {"status": "decided"})
    rt.notifier.message(f"[AURA-X DECISION] {request.run_id}: {decision.outcome} at {request.point}",
                        describe(decision))
    # The event last: a failure before it makes the retry start over (Idempotency drops the failed attempt's
    # record), so the bus sees exactly one decision event.
    rt.notifier.event(DetailType.DECISION, DecisionDetail(decision=decision, report_uri=report_uri))
    return decision


# --- abort_run -----------------------------------------------------------------------------------------
def readable_detail(detail: str) -> str:
    """A Lambda task's error Cause is JSON (`errorMessage`, `errorType`, `stackTrace`): keep the message."""
    try:
        cause = json.loads(detail)
    except (json.JSONDecodeError, TypeError):
        return detail
    if isinstance(cause, dict) and isinstance(cause.get("errorMessage"), str):
        return f"{cause.get('errorType', 'Error')}: {cause['errorMessage']}"
    return detail


def write_abort_report(rt: Runtime, request: AbortInput, now: datetime) -> dict[str, str]:
    run_id = request.run_id
    state = rt.store.get_state(run_id)
    ledger, _ = rt.store.get_doc(run_id, LEDGER, CostLedger)
    evaluation = None
    for point in ("final", "decision"):
        raw = objects.read_bytes(join(request.run_uri, "eval", point, "report.json"))
        if raw is not None:
            try:
                evaluation = EvalReport.model_validate_json(raw)
                break
            except ValidationError:
                continue
    detail = readable_detail(request.detail) or (state.abort_detail if state and state.abort_detail else "")
    sections = report.build_sections(run_id, request.reason, detail, state, ledger, evaluation, request.decision, now)
    base = join(request.run_uri, "reports")
    markdown = report.to_markdown(run_id, sections)
    objects.write(join(base, "abort.md"), markdown, "text/markdown; charset=utf-8")
    objects.write(join(base, "abort.html"), report.to_html(run_id, sections), "text/html; charset=utf-8")
    report_uri = join(base, "abort.md")
    rt.store.record_abort(run_id, request.reason, detail or request.reason.value)
    rt.store.update_state(run_id, {"status": "aborted"})
    summary = f"Run {run_id} aborted: {request.reason.value}. {detail}".strip()[:1000]
    rt.notifier.message(f"[AURA-X ABORTED] {run_id}: {request.reason.value}",
                        f"{summary}\n\nReport: {report_uri} (HTML beside it)\n\n{markdown}")
    # The event last (see make_decision).
    rt.notifier.event(DetailType.RUN_ABORTED, RunAbortedDetail(run_id=run_id, reason=request.reason,
                                                               summary=summary, report_uri=report_uri, time=now))
    return {"reason": request.reason.value, "report_uri": report_uri}


# --- promote_model -------------------------------------------------------------------------------------
def _verified(checkpoint_uri: str, run_id: str) -> tuple[CheckpointManifest, bytes] | None:
    """The manifest when it parses, names this run, and every file it lists exists with its size."""
    raw = objects.read_bytes(join(checkpoint_uri, MANIFEST))
    if raw is None:
        return None
    try:
        manifest = CheckpointManifest.model_validate_json(raw)
    except ValidationError:
        return None
    if manifest.run_id != run_id:
        return None
    for name, expected in manifest.files.items():
        head = objects.head(join(checkpoint_uri, name))
        if head is None or int(head["ContentLength"]) != expected.bytes:
            return None
    return manifest, raw


def find_final_checkpoint(run_uri: str, run_id: str) -> tuple[str, CheckpointManifest, bytes]:
    """The checkpoint `latest` names if it verifies, else the newest one that does (names sort by step)."""
    checkpoints = join(run_uri, CHECKPOINTS_DIR)
    pointer = (objects.read_text(join(checkpoints, LATEST_POINTER)) or "").strip()
    names = sorted({key.split("/")[-2] for key in objects.list_keys(checkpoints) if key.endswith("/" + MANIFEST)},
                   reverse=True)
    for name in ([pointer] if pointer else []) + [n for n in names if n != pointer]:
        uri = join(checkpoints, name)
        found = _verified(uri, run_id)
        if found is not None:
            return uri, *found
    raise NoVerifiedCheckpointError(f"no checkpoint under {checkpoints} has a manifest whose files are all "
                                    "present; nothing was promoted")


def promote(rt: Runtime, request: PromoteInput, now: datetime) -> dict[str, Any]:
    run_id = request.run_id
    source, manifest, raw = find_final_checkpoint(request.run_uri, run_id)
    model_uri = rt.layout(run_id).model_uri
    for name in sorted(manifest.files):
        if name not in NOT_PROMOTED:
            objects.copy(join(source, name), join(model_uri, name))
    objects.write(join(model_uri, MANIFEST), raw)
    config = rt.load_config(request.config_uri, run_id)
    dataset_raw = objects.read_bytes(join(rt.layout(run_id).dataset_uri(config.dataset_fingerprint()), MANIFEST))
    checkpoint_sha = hashlib.sha256(raw).hexdigest()
    provenance = {
        "run_id": run_id, "model_uri": model_uri, "source_checkpoint_uri": source,
        "checkpoint_sha256": checkpoint_sha, "step": manifest.step, "epoch": manifest.epoch,
        "code_version": manifest.code_version,
        "dataset_manifest_sha256": hashlib.sha256(dataset_raw).hexdigest() if dataset_raw is not None
        else request.decision.provenance.dataset_manifest_sha256,
        "evaluated_checkpoint_sha256": request.decision.provenance.checkpoint_sha256,
        "evaluated_is_promoted": request.decision.provenance.checkpoint_sha256 == checkpoint_sha,
        "files": sorted(n for n in manifest.files if n not in NOT_PROMOTED),
        "decision": request.decision.model_dump(mode="json"), "promoted_at": now.isoformat()}
    objects.write(join(model_uri, "provenance.json"), json.dumps(provenance, indent=2))
    rt.store.update_state(run_id, {"status": "promoted"})
    rt.notifier.event(DetailType.MODEL_PROMOTED, ModelPromotedDetail(run_id=run_id, model_uri=model_uri,
                                                                     decision=request.decision, time=now))
    return {"model_uri": model_uri}
