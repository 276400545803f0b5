"""The handlers end to end against moto: S3, DynamoDB, SNS -> SQS, EventBridge -> SQS, Batch, EC2."""

from __future__ import annotations

import hashlib
import json
import re
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.exceptions import ClientError

from aurax_contracts import (
    AbortReason,
    CheckpointManifest,
    CostLedger,
    DatasetManifest,
    RunConfig,
    StopRequest,
)
from aurax_control.runtime import runtime
from aurax_control.store import LEDGER, RunStore
from aurax_control.watch import watch_run

from .conftest import (
    BUCKET,
    ROOT,
    RUN_TABLE,
    FakeContext,
    load_handler,
    put_config,
    s3_event,
    scheduled_event,
)
from .evals import decision_for, eval_report
from .records import T0, heartbeat, train

CTX = FakeContext()
RUN = "run-a"
RUN_URI = f"s3://{BUCKET}/runs/{RUN}"


def put(key: str, body: bytes | str) -> None:
    boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=body)


def get(key: str) -> bytes:
    return boto3.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read()


def plan(run_id: str = RUN, **sections) -> dict:
    uri = put_config(run_id, **sections)
    return load_handler("plan_run").lambda_handler({"run_id": run_id, "config_uri": uri,
                                                    "execution_arn": f"arn:exec:{uuid.uuid4().hex}"}, CTX)


def state(run_id: str = RUN):
    return RunStore(RUN_TABLE).get_state(run_id)


def job(job_id: str) -> dict:
    return boto3.client("batch").describe_jobs(jobs=[job_id])["jobs"][0]


# --- plan_run / classify_failure -----------------------------------------------------------------------
def test_plan_run_records_the_run_and_finds_a_ready_dataset(account) -> None:
    config = RunConfig(run_id=RUN)
    dataset_key = f"datasets/{config.dataset_fingerprint()[:16]}/manifest.json"
    result = plan()
    assert result["dataset_ready"] is False and result["run_uri"] == RUN_URI
    assert result["dataset_uri"] == f"s3://{BUCKET}/datasets/{config.dataset_fingerprint()[:16]}"
    manifest = DatasetManifest(fingerprint=config.dataset_fingerprint(), codec_model_id="m", sample_rate=32000,
                               frame_rate=50, num_codebooks=4, codebook_size=2048, counts={"train": 1},
                               skipped={}, total_seconds=30, shards=[{"name": "s.bin", "split": "train", "clips": 1,
                                                                      "frames": 1500, "sha256": "c" * 64, "bytes": 9}],
                               selection_report="r.json", code_version="x", created_at=T0)
    put(dataset_key, manifest.model_dump_json())
    put(f"runs/{RUN}/control/stop.json", "{}")
    result = plan()
    assert result["dataset_ready"] is True and result["decision_epoch"] == 5 and result["total_epochs"] == 20
    s = state()
    assert s.status == "planned" and s.execution_arn.startswith("arn:exec:")
    with pytest.raises(ClientError, match="NoSuchKey"):
        get(f"runs/{RUN}/control/stop.json")  # a previous execution's stop request is cleared


@pytest.mark.parametrize("body", ["run_id: run-a\ntraining: {learning_rate: 5}\n", "run_id: other-run\n", None])
def test_plan_run_raises_bad_config_error(account, body: str | None) -> None:
    handler = load_handler("plan_run")
    if body is not None:
        put(f"runs/{RUN}/config.yaml", body)
    with pytest.raises(handler.BadConfigError) as err:
        handler.lambda_handler({"run_id": RUN, "config_uri": f"s3://{BUCKET}/runs/{RUN}/config.yaml"}, CTX)
    assert type(err.value).__name__ == "BadConfigError"
    assert "fix" in str(err.value)


def batch_cause(exit_code: int | None, reason: str) -> str:
    return json.dumps({"jobId": "j", "status": "FAILED", "statusReason": reason,
                       "container": {"exitCode": exit_code} if exit_code is not None else {},
                       "attempts": [{"container": {"exitCode": exit_code}, "statusReason": reason}]})


def test_classify_failure_from_the_batch_cause_and_the_recorded_reason(account) -> None:
    handler = load_handler("classify_failure")
    plan()
    verdict = handler.lambda_handler({"run_id": RUN, "stage": "train", "failure": {
        "Error": "States.TaskFailed", "Cause": batch_cause(75, "Essential container in task exited")}}, CTX)
    assert verdict["reason"] == "retries-exhausted" and verdict["resumable"] is True
    verdict = handler.lambda_handler({"run_id": RUN, "stage": "train", "failure": {
        "Error": "States.TaskFailed", "Cause": batch_cause(76, "Essential container in task exited")}}, CTX)
    assert verdict["reason"] == "diverged" and verdict["resumable"] is False
    # Step Functions writes the job description with PascalCase keys
    pascal = json.dumps({"JobId": "j", "Status": "FAILED", "StatusReason": "Essential container in task exited",
                         "Container": {"ExitCode": 77}, "Attempts": [{"Container": {"ExitCode": 77}}]})
    verdict = handler.lambda_handler({"run_id": RUN, "stage": "train", "failure": {
        "Error": "States.TaskFailed", "Cause": pascal}}, CTX)
    assert verdict["reason"] == "over-budget" and "exit code 77" in verdict["detail"]
    verdict = handler.lambda_handler({"run_id": RUN, "stage": "prepare", "failure": {
        "Error": "States.Timeout", "Cause": "not json at all"}}, CTX)
    assert verdict["reason"] == "job-failed" and "not json" in verdict["detail"]
    # the idle watch terminated the job: the job only saw SIGTERM, the recorded reason says why
    RunStore(RUN_TABLE).record_abort(RUN, AbortReason.IDLE, "quiet for 2 h")
    verdict = handler.lambda_handler({"run_id": RUN, "stage": "train", "failure": {
        "Error": "States.TaskFailed", "Cause": batch_cause(None, "Host EC2 terminated")}}, CTX)
    assert verdict["reason"] == "idle" and "quiet for 2 h" in verdict["detail"]


# --- metrics_monitor -----------------------------------------------------------------------------------
def test_nan_loss_stops_the_job_alerts_once_and_records_the_reason(account, jobs, capsys) -> None:
    plan()
    job_id = jobs(f"{RUN}-train", "RUNNING", started=datetime.now(UTC))
    key = f"runs/{RUN}/metrics/attempt-0001/chunk-00000001.jsonl"
    put(key, b"\n".join([heartbeat(1, T0, job_id=job_id), train(1, 2.0), train(2, float("nan"))]))
    event = s3_event(key)
    handler = load_handler("metrics_monitor")
    result = handler.lambda_handler(event, CTX)
    assert result["objects"][0]["stopped"] is True
    # a duplicate S3 event and a Lambda retry of the same event: no second alert
    handler.lambda_handler(event, CTX)
    handler.lambda_handler(json.loads(json.dumps(event)), CTX)
    messages = account.sns_messages()
    events = account.events()
    assert len(messages) == 1 and messages[0]["Subject"].startswith("[AURA-X CRITICAL] run-a")
    assert "What to do:" in messages[0]["Message"] and "step 2" in messages[0]["Message"]
    assert [e["detail-type"] for e in events] == ["AURA-X Alert"]
    assert events[0]["detail"]["code"] == "nan-loss" and events[0]["source"] == "aurax.train-control"
    request = StopRequest.model_validate_json(get(f"runs/{RUN}/control/stop.json"))
    assert request.reason == "diverged"
    assert job(job_id)["statusReason"].startswith("aurax:diverged")
    s = state()
    assert s.abort_reason == "diverged" and s.current_job_id == job_id and s.step == 2
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert len(emf) == 1 and emf[0]["RunId"] == RUN and emf[0]["SamplesPerSecond"] in (12.5, [12.5])
    assert "Loss" not in emf[0]  # the last loss was NaN: never published to CloudWatch
    assert emf[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "AuraX"


def test_nan_before_any_heartbeat_still_terminates_the_running_job(account, jobs) -> None:
    plan()
    job_id = jobs(f"{RUN}-train-to-decision", "RUNNING", started=datetime.now(UTC))
    key = f"runs/{RUN}/metrics/attempt-0001/chunk-00000001.jsonl"
    put(key, b"\n".join([train(1, 2.0), train(2, float("inf"))]))  # no heartbeat has named the job yet
    load_handler("metrics_monitor").lambda_handler(s3_event(key), CTX)
    assert job(job_id)["statusReason"].startswith("aurax:diverged")
    (message,) = account.sns_messages()
    assert f"terminated_jobs: {job_id}" in message["Message"]


def emf_documents(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if '"_aws"' in line]


def test_the_dashboard_finds_every_metric_the_handlers_publish(account, jobs, capsys) -> None:
    # The dashboard's SEARCH('{Namespace,Dims} MetricName="X"') matches only metrics with exactly those dimensions.
    searches = re.findall(r"SEARCH\('\{([^}]*)\} MetricName=\\\"(\w+)\\\"", (ROOT / "template.yaml").read_text())
    assert searches, "no SEARCH expressions found in the dashboard"
    plan()
    key = f"runs/{RUN}/metrics/attempt-0001/chunk-00000001.jsonl"
    interruption = json.dumps({"kind": "interruption", "run_id": RUN, "time": T0.isoformat(), "step": 2, "epoch": 0,
                               "cause": "spot-notice"}).encode()
    put(key, b"\n".join([heartbeat(1, T0), train(1, 2.0), b"{}", interruption,
                         json.dumps({"kind": "val", "run_id": RUN, "time": T0.isoformat(), "step": 2, "epoch": 0,
                                     "val_loss": 2.5}).encode()]))
    jobs(f"{RUN}-train", "RUNNING", started=datetime.now(UTC) - timedelta(hours=1))
    load_handler("metrics_monitor").lambda_handler(s3_event(key), CTX)
    load_handler("cost_ledger").lambda_handler(scheduled_event(), CTX)  # now with a step count to project from
    published: dict[str, set[tuple[str, ...]]] = {}
    for doc in emf_documents(capsys.readouterr().out):
        (directive,) = doc["_aws"]["CloudWatchMetrics"]
        for metric in directive["Metrics"]:
            published.setdefault(metric["Name"], set()).update(
                (directive["Namespace"], *sorted(dims)) for dims in directive["Dimensions"])
    for schema, name in searches:
        namespace, *dims = [part.strip() for part in schema.split(",")]
        assert (namespace, *sorted(dims)) in published.get(name, set()), \
            f"dashboard searches {name} in {{{schema}}}; published: {published.get(name)}"


def test_bad_lines_are_counted_into_the_run_state(account) -> None:
    plan()
    key = f"runs/{RUN}/metrics/attempt-0001/chunk-00000002.jsonl"
    put(key, b"\n".join([train(1, 2.0), b"{}", b"\x00\xff", b'{"kind": "tr', train(2, 2.0)]))
    result = load_handler("metrics_monitor").lambda_handler(s3_event(key), CTX)
    assert result["objects"][0]["bad_lines"] == 3 and result["objects"][0]["records"] == 2
    assert state().bad_lines == 3 and state().step == 2 and state().status == "training"
    assert [m["Subject"] for m in account.sns_messages()] == [
        "[AURA-X WARNING] run-a: 3 metric lines could not be read"]


def test_monitor_reads_the_narrower_event_moto_sends(account) -> None:
    plan()
    key = f"runs/{RUN}/metrics/attempt-0001/chunk-00000009.jsonl"
    put(key, train(1, 12.0))
    event = {"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                          "s3": {"bucket": {"name": BUCKET, "arn": f"arn:aws:s3:::{BUCKET}"},
                                 "object": {"key": key.replace("/", "%2F"), "size": 10, "eTag": "abc"}}}]}
    result = load_handler("metrics_monitor").lambda_handler(event, CTX)
    assert result["objects"][0]["alerts"] == ["high-loss"]


def test_monitor_ignores_keys_outside_the_metrics_prefix(account) -> None:
    put("runs/run-a/other/x.jsonl", b"{}")
    result = load_handler("metrics_monitor").lambda_handler(s3_event("runs/run-a/other/x.jsonl"), CTX)
    assert result["objects"][0]["ignored"] is True


def test_a_100k_record_chunk_through_the_handler(account) -> None:
    plan()
    key = f"runs/{RUN}/metrics/attempt-0001/chunk-00000003.jsonl"
    put(key, b"\n".join(train(i, 3.0 - i * 1e-5, at=T0 + timedelta(seconds=i)) for i in range(100_000)))
    handler = load_handler("metrics_monitor")
    tracemalloc.start()
    result = handler.lambda_handler(s3_event(key), CTX)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"\nmonitor handler peak traced memory, 100,000-record chunk: {peak / 1e6:.1f} MB")
    assert result["objects"][0]["records"] == 100_000
    assert state().step == 99_999
    assert peak < 128e6  # well within the recommended 512 MB function


# --- cost_ledger ---------------------------------------------------------------------------------------
def test_ledger_prices_attempts_and_stops_an_over_budget_run(account, jobs) -> None:
    plan(budget={"budget_usd": 1.0, "alert_fractions": [0.5, 0.8]})
    started = datetime.now(UTC) - timedelta(hours=3)
    job_id = jobs(f"{RUN}-train", "RUNNING", started=started)
    key = f"runs/{RUN}/metrics/attempt-0001/chunk-00000001.jsonl"
    put(key, heartbeat(10, datetime.now(UTC), job_id=job_id, attempt=2))  # no host for attempt 1
    load_handler("metrics_monitor").lambda_handler(s3_event(key), CTX)
    handler = load_handler("cost_ledger")
    handler.lambda_handler(scheduled_event(), CTX)
    ledger, _ = RunStore(RUN_TABLE).get_doc(RUN, LEDGER, CostLedger)
    (attempt,) = ledger.attempts
    # moto's spot history holds one price (0.00001) per offered type and zone: priced from it, not the fallback
    assert attempt.price_source == "spot-history" and attempt.instance_type == "g4dn.xlarge"
    assert attempt.usd_per_hour == pytest.approx(0.00001) and ledger.spend_usd < 0.5
    assert account.sns_messages() == []
    # the same run on the fallback price (no host known) crosses the budget
    boto3.client("dynamodb").delete_item(TableName=RUN_TABLE, Key={"pk": {"S": f"RUN#{RUN}"}, "sk": {"S": "MONITOR"}})
    boto3.client("dynamodb").delete_item(TableName=RUN_TABLE, Key={"pk": {"S": f"RUN#{RUN}"}, "sk": {"S": "LEDGER"}})
    handler.lambda_handler(scheduled_event(), CTX)
    handler.lambda_handler(scheduled_event(), CTX)  # the next run of the schedule: nothing new to say
    subjects = [m["Subject"] for m in account.sns_messages()]
    assert sum("50% of the budget" in s for s in subjects) == 1
    assert sum("80% of the budget" in s for s in subjects) == 1
    assert sum(s.startswith("[AURA-X CRITICAL]") for s in subjects) == 1
    assert state().abort_reason == "over-budget"
    assert job(job_id)["statusReason"].startswith("aurax:over-budget")
    assert StopRequest.model_validate_json(get(f"runs/{RUN}/control/stop.json")).reason == "over-budget"


def test_projection_counts_only_training_cost_per_step(account, jobs) -> None:
    # A 6-hour dataset preparation (no heartbeats: priced at the fallback rate) must not be spread over the
    # first 10 training steps: that would project $300+ for a 1000-step run and stop it as over budget.
    plan(budget={"budget_usd": 20.0})
    now = datetime.now(UTC)
    jobs(f"{RUN}-prepare", "SUCCEEDED", started=now - timedelta(hours=7), stopped=now - timedelta(hours=1))
    train_id = jobs(f"{RUN}-train-to-decision", "RUNNING", started=now - timedelta(minutes=30))
    key = f"runs/{RUN}/metrics/attempt-0001/chunk-00000001.jsonl"
    put(key, b"\n".join([train(10, 3.0, at=now), heartbeat(10, now, job_id=train_id, total_steps=1000)]))
    load_handler("metrics_monitor").lambda_handler(s3_event(key), CTX)
    load_handler("cost_ledger").lambda_handler(scheduled_event(), CTX)
    ledger, _ = RunStore(RUN_TABLE).get_doc(RUN, LEDGER, CostLedger)
    by_name = {a.job_name: a for a in ledger.attempts}
    assert set(by_name) == {f"{RUN}-prepare", f"{RUN}-train-to-decision"}
    assert by_name[f"{RUN}-prepare"].cost_usd == pytest.approx(6 * 0.526, rel=1e-3)  # in the spend ...
    assert ledger.spend_usd > by_name[f"{RUN}-prepare"].cost_usd
    # ... but not in the cost per step, which only the training attempt measures
    assert ledger.usd_per_step == pytest.approx(by_name[f"{RUN}-train-to-decision"].cost_usd / 10)
    assert ledger.projected_usd < 20.0 and state().abort_reason is None


def test_ledger_on_a_batch_state_change_event_only_touches_its_run(account, jobs) -> None:
    plan()
    plan("run-b")
    event = {**scheduled_event(), "source": "aws.batch", "detail-type": "Batch Job State Change",
             "detail": {"jobName": "run-b-train", "status": "RUNNING"}}
    assert load_handler("cost_ledger").lambda_handler(event, CTX) == {"updated": ["run-b"]}


# --- idle_watch ----------------------------------------------------------------------------------------
def test_idle_job_is_terminated_and_stuck_job_reported_once(account, jobs) -> None:
    plan(monitoring={"idle_timeout_minutes": 120, "stuck_runnable_minutes": 60})
    now = datetime.now(UTC)
    quiet = jobs(f"{RUN}-train", "RUNNING", started=now - timedelta(hours=3))
    waiting = jobs(f"{RUN}-eval", "RUNNABLE", created=now - timedelta(hours=2))
    handler = load_handler("idle_watch")
    handler.lambda_handler(scheduled_event(), CTX)
    handler.lambda_handler(scheduled_event(), CTX)
    subjects = sorted(m["Subject"] for m in account.sns_messages())
    assert len(subjects) == 2
    assert subjects[0].startswith("[AURA-X CRITICAL] run-a: Idle job terminated")
    assert subjects[1].startswith("[AURA-X WARNING] run-a: Job") and "spot capacity" in subjects[1]
    assert job(quiet)["statusReason"].startswith("aurax:idle")
    assert "statusReason" not in job(waiting)
    assert state().abort_reason == "idle"


def test_a_long_dataset_preparation_is_not_taken_for_an_idle_job(account, jobs) -> None:
    plan(monitoring={"idle_timeout_minutes": 120})
    preparing = jobs(f"{RUN}-prepare", "RUNNING", started=datetime.now(UTC) - timedelta(hours=5))  # sends no heartbeats
    load_handler("idle_watch").lambda_handler(scheduled_event(), CTX)
    assert "statusReason" not in job(preparing) and state().abort_reason is None
    assert account.sns_messages() == []


def test_terminate_goes_on_past_a_job_batch_refuses(account, jobs, monkeypatch) -> None:
    from aurax_control import jobs as batch_jobs

    running = jobs(f"{RUN}-train", "RUNNING", started=datetime.now(UTC))
    real = batch_jobs.client("batch").terminate_job

    def refuse_stale(jobId: str, reason: str) -> dict:
        if jobId == "stale-id":
            raise ClientError({"Error": {"Code": "ClientException", "Message": "Job stale-id not found"}},
                              "TerminateJob")
        return real(jobId=jobId, reason=reason)

    monkeypatch.setattr(batch_jobs.client("batch"), "terminate_job", refuse_stale)
    outcome = batch_jobs.terminate(["stale-id", running], AbortReason.IDLE, "quiet")
    assert outcome.done == [running] and "not found" in outcome.failed["stale-id"]
    assert job(running)["statusReason"].startswith("aurax:idle")


def test_a_record_stamped_in_the_future_does_not_blind_the_idle_watch(account, jobs) -> None:
    plan(monitoring={"idle_timeout_minutes": 120})
    job_id = jobs(f"{RUN}-train", "RUNNING", started=datetime.now(UTC) - timedelta(hours=5))
    key = f"runs/{RUN}/metrics/attempt-0001/chunk-00000001.jsonl"
    put(key, heartbeat(1, datetime(2099, 1, 1, tzinfo=UTC), job_id=job_id))
    load_handler("metrics_monitor").lambda_handler(s3_event(key), CTX)
    assert state().last_heartbeat_at <= datetime.now(UTC)
    # three hours pass without another chunk: the job is idle
    later = datetime.now(UTC) + timedelta(hours=3)
    rt = runtime()
    watch_run(rt, state(), rt.load_config(None, RUN), later)
    assert job(job_id)["statusReason"].startswith("aurax:idle")


def test_jobs_of_a_run_with_a_longer_id_sharing_the_prefix_are_not_touched(account, jobs, monkeypatch) -> None:
    plan(monitoring={"idle_timeout_minutes": 120})
    other = jobs("run-a-2-train", "RUNNING", started=datetime.now(UTC) - timedelta(hours=5),
                 tags={"aurax:run-id": "run-a-2"})
    load_handler("idle_watch").lambda_handler(scheduled_event(), CTX)
    assert "statusReason" not in job(other) and state().abort_reason is None


def test_a_job_whose_heartbeats_show_progress_is_left_alone(account, jobs) -> None:
    plan()
    job_id = jobs(f"{RUN}-train", "RUNNING", started=datetime.now(UTC) - timedelta(hours=5))
    key = f"runs/{RUN}/metrics/attempt-0001/chunk-00000001.jsonl"
    put(key, heartbeat(1, datetime.now(UTC) - timedelta(minutes=10), job_id=job_id,
                       progress={"optimizer_steps": 1}))
    load_handler("metrics_monitor").lambda_handler(s3_event(key), CTX)
    load_handler("idle_watch").lambda_handler(scheduled_event(), CTX)
    assert "statusReason" not in job(job_id) and state().abort_reason is None


# --- decide / abort_run / promote_model ----------------------------------------------------------------
def test_decide_emits_one_decision_event_even_when_invoked_twice(account) -> None:
    plan()
    put(f"runs/{RUN}/eval/decision/report.json", eval_report(authentic=40).model_dump_json())
    request = {"run_id": RUN, "config_uri": f"{RUN_URI}/config.json", "run_uri": RUN_URI, "point": "decision"}
    handler = load_handler("decide")
    first = handler.lambda_handler(request, CTX)
    second = handler.lambda_handler(dict(request), CTX)
    assert first == second and first["outcome"] == "NO-GO"  # no ledger yet: the cost criterion fails
    events = account.events()
    assert [e["detail-type"] for e in events] == ["AURA-X Decision"]
    assert events[0]["detail"]["decision"]["provenance"]["checkpoint_sha256"] == "a" * 64
    assert len(account.sns_messages()) == 1
    assert state().status == "decided"
    # a later execution of the same run (a new plan) decides again: it is not a retry
    plan()
    handler.lambda_handler(dict(request), CTX)
    assert [e["detail-type"] for e in account.events()] == ["AURA-X Decision"]


def test_decide_retried_after_a_failure_emits_one_decision_event(account, monkeypatch) -> None:
    from aurax_control.notify import Notifier

    plan()
    put(f"runs/{RUN}/eval/decision/report.json", eval_report(authentic=40).model_dump_json())
    request = {"run_id": RUN, "config_uri": f"{RUN_URI}/config.json", "run_uri": RUN_URI, "point": "decision"}
    send = Notifier.message
    failures = iter([True])

    def flaky(self: Notifier, subject: str, text: str) -> None:
        if next(failures, False):
            raise RuntimeError("SNS throttled")
        send(self, subject, text)

    monkeypatch.setattr(Notifier, "message", flaky)
    handler = load_handler("decide")
    with pytest.raises(RuntimeError, match="throttled"):
        handler.lambda_handler(request, CTX)
    handler.lambda_handler(dict(request), CTX)  # the state machine's retry
    assert [e["detail-type"] for e in account.events()] == ["AURA-X Decision"]
    assert len(account.sns_messages()) == 1


def test_decide_goes_when_every_criterion_passes(account) -> None:
    plan()
    RunStore(RUN_TABLE).put_doc(RUN, LEDGER, CostLedger(run_id=RUN, spend_usd=120, budget_usd=600, updated_at=T0))
    put(f"runs/{RUN}/eval/final/report.json", eval_report(point="final", authentic=40).model_dump_json())
    out = load_handler("decide").lambda_handler({"run_id": RUN, "config_uri": f"{RUN_URI}/config.json",
                                                 "run_uri": RUN_URI, "point": "final"}, CTX)
    assert out["outcome"] == "GO" and all(c["passed"] for c in out["criteria"])


def test_abort_after_a_rejected_config_shows_the_error_message(account) -> None:
    cause = json.dumps({"errorType": "BadConfigError", "errorMessage": "training.learning_rate: too high",
                        "stackTrace": ["..."]})
    load_handler("abort_run").lambda_handler({"run_id": "run-z", "config_uri": f"s3://{BUCKET}/runs/run-z/config.json",
                                              "run_uri": f"s3://{BUCKET}/runs/run-z", "reason": "bad-config",
                                              "detail": cause}, CTX)
    md = get("runs/run-z/reports/abort.md").decode()
    assert "BadConfigError: training.learning_rate: too high" in md and "stackTrace" not in md
    assert state("run-z").status == "aborted" and state("run-z").abort_reason == "bad-config"


def test_each_rejected_execution_gets_its_own_abort_report(account) -> None:
    plan_run, abort_run = load_handler("plan_run"), load_handler("abort_run")
    uri = f"s3://{BUCKET}/runs/{RUN}/config.yaml"
    for attempt, body in enumerate(["run_id: run-a\ntraining: {learning_rate: 5}\n",
                                    "run_id: run-a\ntraining: {totl_epochs: 3}\n"]):
        put(f"runs/{RUN}/config.yaml", body)
        execution = {"run_id": RUN, "config_uri": uri, "execution_arn": f"arn:exec:{attempt}"}
        with pytest.raises(plan_run.BadConfigError) as err:
            plan_run.lambda_handler(execution, CTX)
        abort_run.lambda_handler({"run_id": RUN, "config_uri": uri, "run_uri": RUN_URI, "reason": "bad-config",
                                  "detail": str(err.value)}, CTX)
    assert [e["detail"]["reason"] for e in account.events()] == ["bad-config", "bad-config"]
    assert "totl_epochs" in get(f"runs/{RUN}/reports/abort.md").decode()  # the second execution's error


def test_abort_writes_both_reports_and_announces_once(account) -> None:
    plan()
    put(f"runs/{RUN}/eval/decision/report.json", eval_report(authentic=20).model_dump_json())
    decision = decision_for(eval_report(authentic=20), "NO-GO")
    request = {"run_id": RUN, "config_uri": f"{RUN_URI}/config.json", "run_uri": RUN_URI, "reason": "no-go",
               "detail": "authenticity below 35%", "decision": decision.model_dump(mode="json")}
    handler = load_handler("abort_run")
    out = handler.lambda_handler(request, CTX)
    handler.lambda_handler(request, CTX)
    assert out == {"reason": "no-go", "report_uri": f"{RUN_URI}/reports/abort.md"}
    md, page = get(f"runs/{RUN}/reports/abort.md").decode(), get(f"runs/{RUN}/reports/abort.html").decode()
    assert "authenticity below 35%" in md and "20.0%" in md and "<table>" in page
    assert [e["detail-type"] for e in account.events()] == ["AURA-X Run Aborted"]
    assert len(account.sns_messages()) == 1
    assert state().status == "aborted" and state().abort_reason == "no-go"


def write_checkpoint(name: str, run_id: str = RUN, step: int = 100, corrupt: bool = False) -> str:
    """A checkpoint as the train job commits it (files, manifest); `corrupt` truncates the weights."""
    base = f"runs/{RUN}/checkpoints/{name}"
    files = {"model.safetensors": b"weights" * 10, "trainer_state.pt": b"optim", "run_config.json": b"{}"}
    for fname, body in files.items():
        put(f"{base}/{fname}", body[:-1] if corrupt and fname == "model.safetensors" else body)
    manifest = CheckpointManifest(run_id=run_id, training_fingerprint="d" * 64, dataset_fingerprint="e" * 64,
                                  model_id="m", finetune="full", step=step, epoch=1, index_in_epoch=0,
                                  files={k: {"sha256": hashlib.sha256(v).hexdigest(), "bytes": len(v)}
                                         for k, v in files.items()},
                                  trigger="final", code_version="git-abc", created_at=T0)
    raw = manifest.model_dump_json().encode()
    put(f"{base}/manifest.json", raw)
    return hashlib.sha256(raw).hexdigest()


def test_promote_copies_the_latest_verified_checkpoint_with_provenance(account) -> None:
    plan()
    good_sha = write_checkpoint("step-000000100")
    write_checkpoint("step-000000200-end", step=200, corrupt=True)  # truncated upload: not promoted
    put(f"runs/{RUN}/checkpoints/latest", "step-000000200-end\n")
    decision = decision_for(eval_report(point="final", authentic=40, checkpoint_sha=good_sha), "GO")
    request = {"run_id": RUN, "config_uri": f"{RUN_URI}/config.json", "run_uri": RUN_URI,
               "decision": decision.model_dump(mode="json")}
    handler = load_handler("promote_model")
    out = handler.lambda_handler(request, CTX)
    handler.lambda_handler(request, CTX)
    assert out == {"model_uri": f"s3://{BUCKET}/models/{RUN}"}
    assert get(f"models/{RUN}/model.safetensors") == b"weights" * 10
    with pytest.raises(ClientError, match="NoSuchKey"):
        get(f"models/{RUN}/trainer_state.pt")
    provenance = json.loads(get(f"models/{RUN}/provenance.json"))
    assert provenance["checkpoint_sha256"] == good_sha and provenance["evaluated_is_promoted"] is True
    assert provenance["source_checkpoint_uri"].endswith("step-000000100")
    assert provenance["decision"]["outcome"] == "GO" and provenance["code_version"] == "git-abc"
    assert [e["detail-type"] for e in account.events()] == ["AURA-X Model Promoted"]
    assert state().status == "promoted"


def test_promote_without_a_verified_checkpoint_fails_clearly(account) -> None:
    plan()
    handler = load_handler("promote_model")
    decision = decision_for(eval_report(point="final", authentic=40), "GO")
    with pytest.raises(handler.NoVerifiedCheckpointError, match="nothing was promoted"):
        handler.lambda_handler({"run_id": RUN, "config_uri": f"{RUN_URI}/config.json", "run_uri": RUN_URI,
                                "decision": decision.model_dump(mode="json")}, CTX)
