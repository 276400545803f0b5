"""One whole run of the pipeline on this machine: the same template, state machine, handlers and jobs as
on AWS, in the in-process emulation.

- `template.yaml` is deployed into moto (`stack.deploy`); the state machine runs under moto's interpreter.
- Lambda tasks, the S3-triggered monitor and the EventBridge-triggered ledger run the real handlers in this
  process; the schedules (cost ledger, idle watch) fire every few seconds instead of every 10-15 minutes.
- Batch jobs run as subprocesses started with the argv ECS would build from the Dockerfile's ENTRYPOINT and
  the job's command (`aurax job ...`), with their job role's credentials; they reach the emulated S3
  through `endpoint`.
- Every AWS request is authorised as its principal against the template's policies (`iam`): a denied
  request fails the run, even when its caller carried on.
- A synthetic MagnaTagATune is put in the data bucket; the run uses the tiny MusicGen, 2 epochs with the
  decision after the first, and one injected spot reclaim mid-epoch in the first training job.
- Alerts are read from an SQS queue subscribed to the alert topic, events from an SQS queue behind a rule
  on the event bus: what an operator's subscriptions would receive.

The run is started and watched through the same code as `aurax start` / `aurax status` / `aurax report`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from unittest import mock

import boto3

from aurax_contracts import TINY_MODEL_ID, RunConfig
from aurax_contracts.config import DEFAULT_PROMPTS, DEFAULT_TAG_PROMPTS

from ..ops.report import NoReport, fetch_reports
from ..ops.stack_outputs import StackOutputs
from ..ops.start import start_run
from ..ops.status import RunStatusView, UnknownRun, load_status
from .batch_runner import SubprocessRunner
from .endpoint import EmulatorEndpoint
from .image import ContainerImage
from .moto_patches import MOTO_CONFIG, BatchJobRun, LocalAwsPatches, patched_moto
from .stack import ACCOUNT_ID, REGION, LocalStack, deploy
from .synthetic_mtat import eligible, write_mtat

logger = logging.getLogger(__name__)

Variant = Literal["go", "no-go"]
REPO_ROOT = Path(__file__).resolve().parents[3]
MTAT_PREFIX = "mtat"


def default_template() -> Path:
    return REPO_ROOT / "template.yaml"


def local_config(run_id: str, variant: Variant, source_uri: str, clips: int) -> RunConfig:
    """The tiny run: 2 epochs, the decision after the first, a checkpoint every 2 steps. NO-GO demands a
    share of authentic clips no model reaches (1.0); GO accepts any measured authenticity. Both accept no gain
    over the base model (the tiny random model scores no clip authentic) and the tiny model's loss (its val
    loss starts near ln 64 = 4.2, above the real 3.5 threshold)."""
    decision = {"min_authenticity": 0.0 if variant == "go" else 1.0, "improvement_alpha": 1.0,
                "max_val_loss": 100.0}
    return RunConfig.model_validate({
        "run_id": run_id,
        "dataset": {"source_uri": source_uri, "target_clips": clips, "target_tolerance": 0.0,
                    "min_clip_seconds": 3.0},
        "model": {"model_id": TINY_MODEL_ID},
        "training": {"total_epochs": 2, "decision_epoch": 1, "batch_size": 2, "learning_rate": 1e-3,
                     "warmup_steps": 2, "segment_seconds": 2.0, "log_every_steps": 1},
        "checkpoint": {"interval_minutes": 60, "interval_steps": 2},
        "monitoring": {"idle_timeout_minutes": 10},
        "budget": {"budget_usd": 5.0},
        "evaluation": {"prompts": DEFAULT_PROMPTS[:2], "tag_prompts": DEFAULT_TAG_PROMPTS[:2], "clips_per_model": 4,
                       "clip_seconds": 1.0},
        "decision": decision,
    })


@dataclass
class SpotInterruption:
    """Reclaims the first training job's first attempt once it has committed a mid-epoch checkpoint. Its
    steps are slowed a little (the job's own fault hook) so the reclaim lands mid-epoch on any machine."""

    checkpoints_prefix: tuple[str, str]
    """(bucket, key prefix) of the run's checkpoints."""
    slow_step_seconds: float = 0.4
    fired: threading.Event = field(default_factory=threading.Event)
    target: tuple[str, int] | None = field(default=None, init=False)
    """(job id, attempt) of the attempt to reclaim, once it started."""
    _s3: Any = field(default=None, init=False, repr=False)

    @staticmethod
    def _is_train(run: BatchJobRun) -> bool:
        return run.command[:2] == ["job", "train"]

    def environment(self, run: BatchJobRun) -> dict[str, str]:
        if self._is_train(run) and not self.fired.is_set() and run.attempt == 1:
            self.target = (run.job_id, run.attempt)
            return {"AURAX_FAULT_SLOW_STEP_SECONDS": str(self.slow_step_seconds)}
        return {}

    def __call__(self, run: BatchJobRun) -> bool:
        if self.fired.is_set() or self.target != (run.job_id, run.attempt):
            return False
        bucket, prefix = self.checkpoints_prefix
        if self._s3 is None:  # made once, not on every poll
            self._s3 = boto3.client("s3", region_name=REGION)
        s3 = self._s3
        try:
            latest = s3.get_object(Bucket=bucket, Key=f"{prefix}/latest")["Body"].read().decode().strip()
        except s3.exceptions.NoSuchKey:
            return False
        if latest.endswith("-end"):  # only an epoch-end checkpoint so far: wait for a mid-epoch one
            return False
        self.fired.set()
        return True


@dataclass(frozen=True)
class Progress:
    """One look at the run, for the progress display."""

    elapsed_s: float
    state: str
    """The state machine's current state."""
    view: RunStatusView | None
    job: str | None
    """The Batch job running now, with its attempt."""
    new_alerts: list[dict[str, Any]]
    new_events: list[dict[str, Any]]


@dataclass
class LocalResult:
    run_id: str
    variant: Variant
    execution_status: str
    end_state: str
    error: str | None
    decisions: list[dict[str, Any]]
    """The `Decision`s made, in order: at the decision epoch, then (after GO) the final one."""
    reports: list[Path]
    alerts: list[dict[str, Any]]
    events: list[dict[str, Any]]
    batch_attempts: list[dict[str, Any]]
    handler_errors: list[str]
    """Every Lambda invocation that raised, as `function: ErrorType: message` (some are expected, e.g. a
    BadConfigError the state machine catches)."""
    iam_denials: list[str]
    """Every AWS request IAM denied, as AWS's AccessDenied message with the fix (any one fails the run)."""
    workdir: Path
    """Where the artefacts are: the --keep folder, or the folder the reports and logs were copied to."""
    logs: Path
    seconds: float
    deploy_seconds: float
    """Deploying the template into the emulation (translate, create the stack, the state machine)."""

    @property
    def outcome(self) -> str | None:
        """GO or NO-GO at the decision epoch (None when the run stopped before it)."""
        return self.decisions[0]["outcome"] if self.decisions else None

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "variant": self.variant, "execution_status": self.execution_status,
                "end_state": self.end_state, "error": self.error, "outcome": self.outcome,
                "decisions": self.decisions, "reports": [str(p) for p in self.reports], "alerts": self.alerts,
                "events": self.events, "batch_attempts": self.batch_attempts,
                "handler_errors": self.handler_errors, "iam_denials": self.iam_denials,
                "workdir": str(self.workdir),
                "logs": str(self.logs), "seconds": round(self.seconds, 1),
                "deploy_seconds": round(self.deploy_seconds, 1)}


class _Subscribers:
    """An SQS queue on the alert topic and one behind a catch-all rule on the event bus."""

    def __init__(self, outputs: StackOutputs) -> None:
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.alerts_url = self._queue("aurax-local-alerts")
        self.events_url = self._queue("aurax-local-events")
        boto3.client("sns", region_name=REGION).subscribe(
            TopicArn=outputs.alert_topic_arn, Protocol="sqs", Endpoint=self._arn(self.alerts_url))
        events = boto3.client("events", region_name=REGION)
        events.put_rule(Name="aurax-local-observer", EventBusName=outputs.event_bus_name,
                        EventPattern=json.dumps({"source": [{"prefix": ""}]}))
        events.put_targets(Rule="aurax-local-observer", EventBusName=outputs.event_bus_name,
                           Targets=[{"Id": "observer", "Arn": self._arn(self.events_url)}])

    def _queue(self, name: str) -> str:
        return str(self.sqs.create_queue(QueueName=name)["QueueUrl"])

    def _arn(self, url: str) -> str:
        return str(self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])

    def _drain(self, url: str) -> list[dict[str, Any]]:
        bodies = []
        while messages := self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            for message in messages:
                bodies.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return bodies

    def alerts(self) -> list[dict[str, Any]]:
        return [{"subject": b.get("Subject"), "message": b.get("Message")} for b in self._drain(self.alerts_url)]

    def events(self) -> list[dict[str, Any]]:
        return [{"detail_type": b.get("detail-type"), "source": b.get("source"), "detail": b.get("detail")}
                for b in self._drain(self.events_url)]


def _scheduled_event(rule: str, at: datetime) -> str:
    return json.dumps({"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event",
                       "source": "aws.events", "account": ACCOUNT_ID,
                       "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"), "region": REGION,
                       "resources": [f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{rule}"], "detail": {}})


def _current_state(sfn: Any, execution_arn: str) -> str:
    """The last state the execution entered (the history is short: tens of events)."""
    entered = [event["stateEnteredEventDetails"]["name"]
               for page in sfn.get_paginator("get_execution_history").paginate(executionArn=execution_arn)
               for event in page["events"] if "stateEnteredEventDetails" in event]
    return str(entered[-1]) if entered else "starting"


def _running_job(batch: Any, outputs: LocalStack) -> str | None:
    queues = [v for k, v in outputs.outputs.items() if k.endswith("JobQueueArn")]
    for queue in queues:
        for job in batch.list_jobs(jobQueue=queue, jobStatus="RUNNING").get("jobSummaryList", []):
            described = batch.describe_jobs(jobs=[job["jobId"]])["jobs"][0]
            return f"{job['jobName']} (attempt {len(described.get('attempts', []))})"
    return None


@contextmanager
def _workdir(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep.resolve()
        return
    with tempfile.TemporaryDirectory(prefix="aurax-local-") as tmp:
        yield Path(tmp)


def _export_bucket(s3: Any, bucket: str, folder: Path) -> None:
    """Copy the emulated bucket (but the synthetic MTAT, already on disk) out before the emulation ends."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            if not item["Key"].startswith(f"{MTAT_PREFIX}/"):
                target = folder / item["Key"]
                target.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, item["Key"], str(target))


@dataclass
class _Emulation:
    """The deployed emulation of one local run."""

    workdir: Path
    stack: LocalStack
    outputs: StackOutputs
    patches: LocalAwsPatches
    runner: SubprocessRunner
    subscribers: _Subscribers
    deploy_seconds: float

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=REGION)


@contextmanager
def _emulation(workdir: Path, template: Path) -> Iterator[_Emulation]:
    """moto, the endpoint for the jobs, the patches, the deployed stack and the subscribers."""
    with _mock_aws(), EmulatorEndpoint() as endpoint:
        image = ContainerImage.from_dockerfile(template.resolve().parent / "Dockerfile")
        runner = SubprocessRunner(endpoint.url, workdir / "logs", image, scratch_dir=workdir / "scratch", extra_env={
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", "AURAX_DEVICE": "cpu",
            "AURAX_IMDS_ENDPOINT": "off"})  # a laptop has no instance metadata service
        with patched_moto(runner, lambda_log_dir=workdir / "logs" / "lambda") as patches:
            started = time.monotonic()
            stack = deploy(template)
            deploy_seconds = time.monotonic() - started
            outputs = StackOutputs.load(stack.name, boto3.client("cloudformation", region_name=REGION))
            yield _Emulation(workdir, stack, outputs, patches, runner, _Subscribers(outputs), deploy_seconds)


def _upload_mtat(em: _Emulation, folder: Path) -> str:
    s3 = em.client("s3")
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            s3.upload_file(str(path), em.outputs.data_bucket, f"{MTAT_PREFIX}/{path.relative_to(folder).as_posix()}")
    return f"s3://{em.outputs.data_bucket}/{MTAT_PREFIX}"


def _watch(em: _Emulation, run_id: str, execution_arn: str, deadline: float, schedule_every_s: float,
           progress: Callable[[Progress], None] | None, started: float,
           clock: Callable[[], datetime]) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """Poll the execution to its end, firing the schedules and reporting progress; returns the execution's
    description and every alert and event received."""
    sfn, ddb, lam, batch = em.client("stepfunctions"), em.client("dynamodb"), em.client("lambda"), em.client("batch")
    alerts: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    last_schedule = 0.0
    while True:
        described = sfn.describe_execution(executionArn=execution_arn)
        if time.monotonic() - last_schedule >= schedule_every_s:
            last_schedule = time.monotonic()
            for logical_id in em.stack.schedules:
                lam.invoke(FunctionName=em.stack.functions[logical_id], InvocationType="Event",
                           Payload=_scheduled_event(f"aurax-local-{logical_id}", clock()))
        new_alerts, new_events = em.subscribers.alerts(), em.subscribers.events()
        alerts += new_alerts
        events += new_events
        if progress is not None:
            try:
                view: RunStatusView | None = load_status(em.outputs, run_id, ddb=ddb, sfn=sfn)
            except UnknownRun:
                view = None
            progress(Progress(time.monotonic() - started, _current_state(sfn, execution_arn), view,
                              _running_job(batch, em.stack), new_alerts, new_events))
        if described["status"] != "RUNNING":
            em.patches.batch.wait(30)
            return described, alerts + em.subscribers.alerts(), events + em.subscribers.events()
        if time.monotonic() > deadline:
            sfn.stop_execution(executionArn=execution_arn, error="LocalTimeout",
                               cause="aurax local gave up waiting for the run; see the job logs")
            continue
        time.sleep(0.5)


def run_local(variant: Variant = "go", *, keep: Path | None = None, report_dir: Path | None = None,
              template: Path | None = None, interrupt: bool = True, timeout_s: float = 900.0,
              schedule_every_s: float = 5.0, progress: Callable[[Progress], None] | None = None,
              attempt_env: Callable[[BatchJobRun], dict[str, str]] | None = None,
              clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> LocalResult:
    """Deploy, run and watch one local run to its end; returns what happened.

    With `keep`, everything stays in that folder: logs, the synthetic MTAT, the job scratch space, the
    emulated bucket (`bucket/`: dataset, checkpoints, metrics, reports) and the fetched reports. Without it, the
    work happens in a temporary folder and only the HTML reports and the logs are kept, in `report_dir`
    (default `./aurax-<run id>`, e.g. `./aurax-local-go-20260101120000`).

    For tests: `attempt_env` adds variables to a Batch attempt (fault injection), and `clock` is the time the
    schedules fire at (the idle watch judges that moment)."""
    started = time.monotonic()
    run_id = f"local-{variant}-{datetime.now(UTC):%Y%m%d%H%M%S}"
    with _workdir(keep) as workdir:
        clips = write_mtat(workdir / "mtat")
        with _emulation(workdir, template or default_template()) as em:
            config = local_config(run_id, variant, _upload_mtat(em, workdir / "mtat"), eligible(clips))
            if interrupt:
                spot = SpotInterruption((em.outputs.data_bucket, f"runs/{run_id}/checkpoints"))
                em.runner.interrupt, em.runner.attempt_env = spot, spot.environment
            if attempt_env is not None:
                em.runner.attempt_env = _merged(em.runner.attempt_env, attempt_env)
            execution = start_run(em.outputs, config, s3=em.client("s3"), sfn=em.client("stepfunctions"))
            described, alerts, events = _watch(em, run_id, execution.execution_arn, started + timeout_s,
                                               schedule_every_s, progress, started, clock)
            s3 = em.client("s3")
            if keep is not None:
                _export_bucket(s3, em.outputs.data_bucket, workdir / "bucket")
            kept = workdir if keep is not None else (report_dir or Path.cwd() / f"aurax-{run_id}")
            try:
                reports = fetch_reports(em.outputs, run_id, kept / "reports", s3=s3).reports
            except NoReport:
                reports = []
            if keep is None and (workdir / "logs").is_dir():  # small, and they say why a job failed
                shutil.copytree(workdir / "logs", kept / "logs", dirs_exist_ok=True)
            return LocalResult(
                run_id=run_id, variant=variant, execution_status=described["status"],
                end_state=_current_state(em.client("stepfunctions"), execution.execution_arn),
                error=described.get("error"),
                decisions=[e["detail"]["decision"] for e in events if e["detail_type"] == "AURA-X Decision"],
                reports=reports, alerts=alerts, events=events,
                batch_attempts=[{"job": a.job_name, "attempt": a.attempt, "exit_code": a.result.exit_code,
                                 "status_reason": a.result.status_reason, "seconds": round(a.seconds, 1)}
                                for a in em.patches.batch_attempts],
                handler_errors=[f"{i.function_name}: {i.error_type}: {i.error_message}"
                                for i in em.patches.lambda_invocations if i.error_type],
                iam_denials=em.patches.iam_denials,
                workdir=kept, logs=kept / "logs", seconds=time.monotonic() - started,
                deploy_seconds=em.deploy_seconds)


def _merged(*sources: Callable[[BatchJobRun], dict[str, str]] | None) -> Callable[[BatchJobRun], dict[str, str]]:
    def environment(run: BatchJobRun) -> dict[str, str]:
        return {k: v for source in sources if source is not None for k, v in source(run).items()}

    return environment


#: The process environment of the emulation: its region, fake credentials, and nothing that could reach a
#: real account (a profile, an endpoint override).
EMULATION_ENV = {"AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION, "AWS_ACCESS_KEY_ID": "aurax-local",
                 "AWS_SECRET_ACCESS_KEY": "aurax-local"}
_REAL_ACCOUNT_ENV = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                     "AWS_ENDPOINT_URL")


@contextmanager
def _mock_aws() -> Iterator[None]:
    from moto import mock_aws

    from .. import storage

    with mock.patch.dict(os.environ, EMULATION_ENV):
        for name in _REAL_ACCOUNT_ENV:
            os.environ.pop(name, None)  # restored by patch.dict on exit
        with mock_aws(config=MOTO_CONFIG):  # type: ignore[arg-type]
            storage.reset_clients()
            try:
                yield
            finally:
                storage.reset_clients()
