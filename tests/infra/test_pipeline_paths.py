"""The real state machine, deployed from template.yaml into moto, with the real Lambda handlers, on every path.

Batch jobs are played by fakes that write what the real jobs would (an evaluation report, a checkpoint) and exit
with the codes the real jobs use, so each path is decided by the same contract as on AWS.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from aurax.local.moto_patches import MOTO_CONFIG, SPOT_RECLAIM_REASON, BatchJobResult, BatchJobRun, patched_moto
from aurax.local.stack import LocalStack, deploy
from aurax_contracts import (
    AbortReason,
    ArmSummary,
    CheckpointFile,
    CheckpointManifest,
    Comparison,
    EvalReport,
    JobExit,
    Provenance,
    RunConfig,
)
from aurax_contracts.evaluation import PromptSetSummary
from aurax_contracts.exit_codes import terminate_reason
from tests.infra.support import TEMPLATE

REGION = "us-east-1"
RUN_ID = "path-test"
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SHA = "b" * 64

JobBehaviour = Callable[[BatchJobRun], BatchJobResult]


def _s3_put(uri: str, body: bytes) -> None:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    boto3.client("s3", region_name=REGION).put_object(Bucket=bucket, Key=key, Body=body)


def _arm(n: int, authentic: int) -> ArmSummary:
    rate = authentic / n
    return ArmSummary(model="m", clips=n, authentic=authentic, rate=rate, wilson_low=max(0.0, rate - 0.1),
                      wilson_high=min(1.0, rate + 0.1), mean_score=60.0)


def fake_evaluate(treatment_authentic: int, val_loss: float = 2.5) -> JobBehaviour:
    """Writes the EvalReport the evaluation job would, with the given treatment result out of 20 clips, all of
    the Amapiano prompt set (the one the decision counts by default)."""

    def run(job: BatchJobRun) -> BatchJobResult:
        point = job.parameters["point"]
        treatment, control = _arm(20, treatment_authentic), _arm(20, 2)
        comparison = Comparison(pairs=20, both=2, treatment_only=treatment_authentic - 2, control_only=0,
                                difference=(treatment_authentic - 2) / 20, difference_low=0.0,
                                p_value=0.5 ** (treatment_authentic - 2))
        report = EvalReport(
            run_id=RUN_ID, point=point, epoch=1, step=10, score_threshold=80, clip_seconds=1, guidance_scale=3,
            treatment=treatment, control=control, comparison=comparison,
            prompt_sets=[PromptSetSummary(prompt_set="amapiano", prompts=["amapiano groove"], treatment=treatment,
                                          control=control, comparison=comparison)],
            val_loss=val_loss, baseline_val_loss=3.0,
            provenance=Provenance(checkpoint_uri=f"{job.parameters['run_uri']}/checkpoints/step-000000010-end",
                                  checkpoint_sha256=SHA, code_version="test", dataset_manifest_sha256=SHA),
            clips=[], created_at=NOW)
        _s3_put(f"{job.parameters['run_uri']}/eval/{point}/report.json", report.model_dump_json().encode())
        return BatchJobResult(0)

    return run


def fake_train(job: BatchJobRun) -> BatchJobResult:
    """Writes an epoch-end checkpoint the way the train job commits one: files, manifest, latest pointer."""
    config = RunConfig(run_id=RUN_ID)
    name = f"step-{int(job.parameters['until_epoch']) * 10:09d}-end"
    base = f"{job.parameters['run_uri']}/checkpoints/{name}"
    files = {"model.safetensors": b"weights", "trainer_state.pt": b"state", "run_config.json": b"{}"}
    for file_name, body in files.items():
        _s3_put(f"{base}/{file_name}", body)
    manifest = CheckpointManifest(
        run_id=RUN_ID, training_fingerprint=config.training_fingerprint(),
        dataset_fingerprint=config.dataset_fingerprint(), model_id=config.model.model_id, finetune="full",
        step=int(job.parameters["until_epoch"]) * 10, epoch=int(job.parameters["until_epoch"]), index_in_epoch=0,
        epoch_complete=True, val_loss=2.5, trigger="epoch", code_version="test", created_at=NOW,
        files={n: CheckpointFile(sha256=hashlib.sha256(b).hexdigest(), bytes=len(b)) for n, b in files.items()})
    _s3_put(f"{base}/manifest.json", manifest.model_dump_json().encode())
    _s3_put(f"{job.parameters['run_uri']}/checkpoints/latest", name.encode())
    return BatchJobResult(0)


def succeed(job: BatchJobRun) -> BatchJobResult:
    return BatchJobResult(0)


@dataclass
class FakeJobs:
    """Plays each Batch job by its command (`job train ...` -> "train"); attempts are counted per job."""

    behaviours: dict[str, JobBehaviour | list[JobBehaviour]]
    runs: list[tuple[str, int]] = field(default_factory=list)

    def __call__(self, job: BatchJobRun) -> BatchJobResult:
        stage = job.command[1] if job.command[0] == "job" else job.command[0]
        self.runs.append((stage, job.attempt))
        behaviour = self.behaviours.get(stage, succeed)
        if isinstance(behaviour, list):  # one behaviour per call, the last one repeating
            calls = sum(1 for s, _ in self.runs if s == stage)
            behaviour = behaviour[min(calls, len(behaviour)) - 1]
        return behaviour(job)

    def stages(self) -> list[str]:
        return [stage for stage, _ in self.runs]


@dataclass
class Observed:
    status: str
    final_state: str
    alerts: list[dict[str, Any]]
    events: list[dict[str, Any]]
    jobs: FakeJobs
    stack: LocalStack
    iam_denials: list[str]
    """What IAM denied during the run (AWS's AccessDenied messages); the fixture fails a run with any
    unless the test expects them."""


def _drain(queue_url: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs", region_name=REGION)
    bodies: list[dict[str, Any]] = []
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


@pytest.fixture
def run_pipeline() -> Iterator[Callable[..., Observed]]:
    with mock_aws(config=MOTO_CONFIG):
        def run(jobs: FakeJobs, config_text: str | None = None, template: dict[str, Any] | None = None,
                expect_denials: bool = False) -> Observed:
            with patched_moto(jobs) as local:
                stack = deploy(TEMPLATE, template=template)
                sqs = boto3.client("sqs", region_name=REGION)
                alerts_q = sqs.create_queue(QueueName="alerts")["QueueUrl"]
                events_q = sqs.create_queue(QueueName="events")["QueueUrl"]
                arn = lambda url: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[  # noqa: E731
                    "Attributes"]["QueueArn"]
                boto3.client("sns", region_name=REGION).subscribe(
                    TopicArn=stack.outputs["AlertTopicArn"], Protocol="sqs", Endpoint=arn(alerts_q))
                events = boto3.client("events", region_name=REGION)
                events.put_rule(Name="everything", EventBusName=stack.outputs["EventBusName"],
                                EventPattern=json.dumps({"source": ["aurax.train-control"]}))
                events.put_targets(Rule="everything", EventBusName=stack.outputs["EventBusName"],
                                   Targets=[{"Id": "q", "Arn": arn(events_q)}])
                config_uri = f"s3://{stack.bucket}/runs/{RUN_ID}/config.json"
                text = config_text if config_text is not None else RunConfig(
                    run_id=RUN_ID, training={"total_epochs": 2, "decision_epoch": 1}).model_dump_json()
                _s3_put(config_uri, text.encode())
                sfn = boto3.client("stepfunctions", region_name=REGION)
                execution = sfn.start_execution(stateMachineArn=stack.state_machine_arn,
                                                input=json.dumps({"run_id": RUN_ID, "config_uri": config_uri}))
                deadline = time.monotonic() + 120
                while (described := sfn.describe_execution(executionArn=execution["executionArn"]))[
                        "status"] == "RUNNING":
                    assert time.monotonic() < deadline, "execution did not finish"
                    time.sleep(0.05)
                history = sfn.get_execution_history(executionArn=execution["executionArn"])["events"]
                entered = [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]
                observed = Observed(status=described["status"], final_state=entered[-1],
                                    alerts=_drain(alerts_q), events=[b for b in _drain(events_q)], jobs=jobs,
                                    stack=stack, iam_denials=local.iam_denials)
                assert expect_denials or not observed.iam_denials, "AWS would deny:\n" + "\n".join(
                    observed.iam_denials)
                return observed

        yield run


def _detail_types(observed: Observed) -> list[str]:
    return [event["detail-type"] for event in observed.events]


def test_go_trains_to_the_end_and_promotes(run_pipeline: Callable[..., Observed]) -> None:
    observed = run_pipeline(FakeJobs({"train": fake_train, "evaluate": fake_evaluate(treatment_authentic=12)}))
    assert (observed.status, observed.final_state) == ("SUCCEEDED", "ModelPromoted")
    assert observed.jobs.stages() == ["preflight", "prepare", "train", "evaluate", "train", "evaluate"]
    assert _detail_types(observed).count("AURA-X Decision") == 2
    assert "AURA-X Model Promoted" in _detail_types(observed)
    s3 = boto3.client("s3", region_name=REGION)
    promoted = s3.list_objects_v2(Bucket=observed.stack.bucket, Prefix=f"models/{RUN_ID}/")["Contents"]
    assert any(item["Key"].endswith("model.safetensors") for item in promoted)


def test_no_go_writes_the_abort_report_and_stops(run_pipeline: Callable[..., Observed]) -> None:
    observed = run_pipeline(FakeJobs({"train": fake_train, "evaluate": fake_evaluate(treatment_authentic=3)}))
    assert (observed.status, observed.final_state) == ("SUCCEEDED", "StoppedNoGo")
    assert observed.jobs.stages() == ["preflight", "prepare", "train", "evaluate"]
    decisions = [e["detail"]["decision"] for e in observed.events if e["detail-type"] == "AURA-X Decision"]
    assert [d["outcome"] for d in decisions] == ["NO-GO"]
    assert {c["name"]: c["passed"] for c in decisions[0]["criteria"]}["authenticity"] is False
    aborted = [e["detail"] for e in observed.events if e["detail-type"] == "AURA-X Run Aborted"]
    assert aborted and aborted[0]["reason"] == AbortReason.NO_GO
    s3 = boto3.client("s3", region_name=REGION)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=observed.stack.bucket, Prefix=f"runs/{RUN_ID}/reports/")[
        "Contents"]}
    assert {f"runs/{RUN_ID}/reports/abort.md", f"runs/{RUN_ID}/reports/abort.html"} <= keys


def test_divergence_aborts(run_pipeline: Callable[..., Observed]) -> None:
    observed = run_pipeline(FakeJobs({"train": lambda job: BatchJobResult(JobExit.DIVERGED)}))
    assert (observed.status, observed.final_state) == ("FAILED", "AbortedDiverged")
    assert observed.jobs.runs.count(("train", 1)) == 1 and ("train", 2) not in observed.jobs.runs  # never retried
    assert "AURA-X Run Aborted" in _detail_types(observed)


def test_budget_termination_aborts_without_retry(run_pipeline: Callable[..., Observed]) -> None:
    # The cost ledger terminates the job with an `aurax:over-budget:` reason; the job's SIGTERM handler then
    # exits 75, which Batch must not retry because our own terminations always exit.
    stopped = BatchJobResult(JobExit.INTERRUPTED, terminate_reason(AbortReason.OVER_BUDGET, "spend 601 of 600"))
    observed = run_pipeline(FakeJobs({"train": lambda job: stopped}))
    assert (observed.status, observed.final_state) == ("FAILED", "AbortedOverBudget")
    assert [s for s in observed.jobs.stages() if s == "train"] == ["train"]


def test_idle_termination_aborts(run_pipeline: Callable[..., Observed]) -> None:
    hung = BatchJobResult(None, terminate_reason(AbortReason.IDLE, "no heartbeat for 120 min"))
    observed = run_pipeline(FakeJobs({"train": lambda job: hung}))
    assert (observed.status, observed.final_state) == ("FAILED", "AbortedIdle")


def test_spot_interruptions_are_retried_then_succeed(run_pipeline: Callable[..., Observed]) -> None:
    reclaimed = BatchJobResult(None, SPOT_RECLAIM_REASON)
    interrupted = BatchJobResult(JobExit.INTERRUPTED, "Essential container in task exited")
    jobs = FakeJobs({"train": [lambda job: reclaimed, lambda job: interrupted, fake_train],
                     "evaluate": fake_evaluate(treatment_authentic=12)})
    observed = run_pipeline(jobs)
    assert (observed.status, observed.final_state) == ("SUCCEEDED", "ModelPromoted")
    assert [attempt for stage, attempt in jobs.runs if stage == "train"][:3] == [1, 2, 3]


def test_exhausted_attempts_resubmit_the_training_job(run_pipeline: Callable[..., Observed]) -> None:
    interrupted = BatchJobResult(JobExit.INTERRUPTED, "Essential container in task exited")
    jobs = FakeJobs({"train": [*([lambda job: interrupted] * 10), fake_train],
                     "evaluate": fake_evaluate(treatment_authentic=3)})
    observed = run_pipeline(jobs)
    assert observed.final_state == "StoppedNoGo"
    train_attempts = [attempt for stage, attempt in jobs.runs if stage == "train"]
    assert train_attempts == [*range(1, 11), 1]  # ten attempts, then a new submission resumes


def test_bad_config_is_rejected_before_any_job(run_pipeline: Callable[..., Observed]) -> None:
    observed = run_pipeline(FakeJobs({}), config_text=f"run_id: {RUN_ID}\ntraining: {{totl_epochs: 3}}\n")
    assert (observed.status, observed.final_state) == ("FAILED", "RejectedBadConfig")
    assert observed.jobs.runs == []
    aborted = [e["detail"] for e in observed.events if e["detail-type"] == "AURA-X Run Aborted"]
    assert aborted and aborted[0]["reason"] == AbortReason.BAD_CONFIG


def test_preflight_failure_stops_before_training(run_pipeline: Callable[..., Observed]) -> None:
    observed = run_pipeline(FakeJobs({"preflight": lambda job: BatchJobResult(JobExit.PREFLIGHT_FAILED)}))
    assert (observed.status, observed.final_state) == ("FAILED", "AbortedPreflightFailed")
    assert observed.jobs.stages() == ["preflight"]


def test_a_timed_out_training_attempt_is_resubmitted(run_pipeline: Callable[..., Observed]) -> None:
    # Batch never retries an attempt that ran past its timeout, though the job exits 75 on the timeout's SIGTERM;
    # a run of weeks must not end there.
    timed_out = BatchJobResult(75, "Job attempt duration exceeded timeout")
    jobs = FakeJobs({"train": [lambda job: timed_out, fake_train], "evaluate": fake_evaluate(treatment_authentic=12)})
    observed = run_pipeline(jobs)
    assert (observed.status, observed.final_state) == ("SUCCEEDED", "ModelPromoted")
    assert [attempt for stage, attempt in jobs.runs if stage == "train"][:2] == [1, 1]  # a new submission


# --- transient infrastructure failures (shared/cases/batch-failure-causes.json) -------------------------------
PULL_THROTTLED = BatchJobResult(None, "Task failed to start", "CannotPullContainerError: pull image manifest has "
                                "been retried 5 time(s): failed to resolve ref: 429 Too Many Requests")
NOT_INSPECTED = BatchJobResult(None, "Essential container in task exited", "CannotInspectContainerError: Could "
                               "not transition to inspecting; timed out after waiting 30s")


def test_an_image_pull_failure_on_a_fresh_host_is_retried_by_batch(run_pipeline: Callable[..., Observed]) -> None:
    jobs = FakeJobs({"train": [lambda job: PULL_THROTTLED, fake_train],
                     "evaluate": fake_evaluate(treatment_authentic=12)})
    observed = run_pipeline(jobs)
    assert (observed.status, observed.final_state) == ("SUCCEEDED", "ModelPromoted")
    assert [attempt for stage, attempt in jobs.runs if stage == "train"][:2] == [1, 2]  # the same job, attempt 2


def test_an_agent_failure_after_the_container_ran_is_resubmitted(run_pipeline: Callable[..., Observed]) -> None:
    jobs = FakeJobs({"evaluate": [lambda job: NOT_INSPECTED, fake_evaluate(treatment_authentic=12)],
                     "train": fake_train})
    observed = run_pipeline(jobs)
    assert (observed.status, observed.final_state) == ("SUCCEEDED", "ModelPromoted")
    # Batch exits on it (its five rules cannot name every ECS error); the state machine submits the job again.
    assert observed.jobs.stages() == ["preflight", "prepare", "train", "evaluate", "evaluate", "train", "evaluate"]
    assert [attempt for stage, attempt in jobs.runs if stage == "evaluate"] == [1, 1, 1]


def test_a_flapping_infrastructure_fault_is_capped_and_alerted(run_pipeline: Callable[..., Observed]) -> None:
    from aurax_control.failures import MAX_RESUBMISSIONS

    observed = run_pipeline(FakeJobs({"preflight": lambda job: NOT_INSPECTED}))
    assert (observed.status, observed.final_state) == ("FAILED", "AbortedInfrastructure")
    assert observed.jobs.stages() == ["preflight"] * (MAX_RESUBMISSIONS + 1)
    aborted = [e["detail"] for e in observed.events if e["detail-type"] == "AURA-X Run Aborted"]
    assert [a["reason"] for a in aborted] == [AbortReason.INFRASTRUCTURE]
    assert "CannotInspectContainerError" in aborted[0]["summary"]
    # the alert: the abort message to the topic's subscribers, once
    assert [a["Subject"] for a in observed.alerts] == [f"[AURA-X ABORTED] {RUN_ID}: infrastructure"]
    assert f"after {MAX_RESUBMISSIONS} resubmissions" in observed.alerts[0]["Message"]


def test_a_stage_that_succeeds_resets_the_resubmission_count(run_pipeline: Callable[..., Observed]) -> None:
    from aurax_control.failures import MAX_RESUBMISSIONS

    # Each of the two evaluations fails MAX_RESUBMISSIONS times before it succeeds: the cap is per stretch of
    # failures, not per execution.
    flaky = [*([lambda job: NOT_INSPECTED] * MAX_RESUBMISSIONS), fake_evaluate(treatment_authentic=12)]
    jobs = FakeJobs({"evaluate": [*flaky, *flaky], "train": fake_train})
    observed = run_pipeline(jobs)
    assert (observed.status, observed.final_state) == ("SUCCEEDED", "ModelPromoted")
    assert observed.jobs.stages().count("evaluate") == 2 * (MAX_RESUBMISSIONS + 1)
