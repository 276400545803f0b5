"""The narrow patches that make moto 5.2.5 run this pipeline in one process.

moto's Step Functions interpreter (`config={"stepfunctions": {"execute_state_machine": True}}`) runs the real
ASL, but on its own it cannot run this pipeline: (facts in shared/notes/local-aws.md)

1. `batch:submitJob.sync` fails with `States.Runtime 'JobName'` (moto issue 10076): the Batch task does not
   convert the ASL's PascalCase parameters to boto's names, nor the response back. Patched: the Batch task's
   `_normalise_parameters` / `_normalise_response` use the converters every other moto task uses, with the
   botocore operation model of the call.
2. The simple Lambda backend (`{"lambda": {"use_docker": False}}`) echoes the payload instead of running the
   function, and S3 notifications invoke functions through Docker. Patched: every invocation imports the
   function's deployed code (its zip, and its layers on `sys.path`) and calls the real handler in this process
   with the function's environment; an exception becomes an `Unhandled` function error whose `errorType` is the
   exception's class name, so `Catch` by error name works as on AWS.
3. The simple Batch backend (`{"batch": {"use_docker": False}}`) marks every job SUCCEEDED at once, and never
   retries. Patched: each job runs on its own thread through a pluggable `BatchRunner` (`aurax local` runs the
   job's command as a subprocess; tests pass fakes), attempt after attempt as the job definition's
   `retryStrategy.evaluateOnExit` says. `TerminateJob` reaches the runner, which stops the attempt.
4. moto's `Job.describe` appends the job definition's environment to the job's overrides on every call (the
   list grows with each `.sync` poll), and leaves out the container's `exitCode` and `reason`, which AWS
   reports and the failure classifier reads. Patched: the merge builds a new list; both fields are added.
5. moto's S3 event notification records lack fields AWS always sends (`userIdentity`, `requestParameters`,
   `responseElements`, the bucket's `ownerIdentity`, the object's `sequencer` and `versionId`), so a handler
   that parses them (Powertools' `S3Model`) rejects every event; and they URL-encode the key's `/`
   (`runs%2Fr1%2F...`), which AWS leaves as is. Patched: the records carry those fields, and keys are encoded
   as AWS does (`quote_plus` keeping `/`).
6. EventBridge rules cannot target Lambda functions in moto (`NotImplementedError`), and moto's Batch sends no
   "Batch Job State Change" events. Patched: a rule delivers a matching event to a Lambda target by invoking
   the function (asynchronously on AWS; here at once, in order), and each job status change (RUNNING per
   attempt, RUNNABLE before a retry, SUCCEEDED / FAILED) is put on the default bus as AWS Batch does.
7. Wait states and Retry intervals really sleep, and `.sync` tasks poll every 0.5 s. Patched: waits and retry
   backoff return at once; `.sync` polls every `sync_poll_seconds`.
8. moto checks no IAM policy. Unless `enforce_iam=False`, `iam.IamEnforcement` decides every request as the
   principal that makes it on AWS: each invocation runs as its function's role (`iam.acting_as`), and a job's
   thread starts as no principal (Batch's own machinery, not the submitter's).

Use `patched_moto(...)` (or `LocalAwsPatches` as a context manager) inside `mock_aws(config=MOTO_CONFIG)`;
leaving it removes every patch and stops the job threads, so tests can install it many times in one process.
"""

from __future__ import annotations

import base64
import copy
import importlib.util
import io
import json
import logging
import sys
import tempfile
import threading
import time
import traceback
import uuid
import zipfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext, redirect_stdout
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import IO, Any, Literal, NamedTuple, Self
from unittest import mock
from urllib.parse import quote_plus

from .environ import function_environment, isolated_environ
from .iam import IamEnforcement, Principal, acting_as

logger = logging.getLogger(__name__)

#: The moto configuration the pipeline needs: the executing Step Functions backend, and the simple Lambda and
#: Batch backends (no Docker) that these patches make run real code.
MOTO_CONFIG: dict[str, dict[str, bool]] = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
    "batch": {"use_docker": False},
}

#: `statusReason` of an attempt whose spot instance was reclaimed (the text AWS Batch gives).
SPOT_RECLAIM_REASON = "Host EC2 (instance i-0aurax0local0) terminated."
TIMEOUT_REASON = "Job attempt duration exceeded timeout"


# --------------------------------------------------------------------------------------------------------------
# Batch
# --------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BatchJobRun:
    """One attempt of one Batch job, as the container would see it."""

    job_id: str
    job_name: str
    job_queue: str
    job_definition: str
    """The job definition's name."""
    attempt: int
    """1 for the first attempt (`AWS_BATCH_JOB_ATTEMPT`)."""
    command: list[str]
    """The container command with every `Ref::name` replaced by its parameter."""
    environment: dict[str, str]
    """Job definition environment, then the submission's overrides, then `AWS_BATCH_JOB_ID` and
    `AWS_BATCH_JOB_ATTEMPT` (what Batch sets in the container)."""
    parameters: dict[str, str]
    timeout_seconds: int | None
    stop_reason: Callable[[], str | None] = field(compare=False, repr=False)
    """The `TerminateJob` reason once someone terminated the job, else None: a runner polls it and stops."""
    job_role_arn: str | None = None
    """The job definition's `jobRoleArn`: the role whose credentials the container gets."""


class BatchJobResult(NamedTuple):
    """How an attempt ended: the container's exit code (None when it was killed with no code), the job's
    `statusReason` (e.g. `SPOT_RECLAIM_REASON`) and the container's `reason`."""

    exit_code: int | None
    status_reason: str | None = None
    reason: str | None = None


BatchRunner = Callable[[BatchJobRun], BatchJobResult]


def always_succeed(run: BatchJobRun) -> BatchJobResult:
    """A runner for tests that only need jobs to finish."""
    return BatchJobResult(0)


def resolve_command(command: list[str], parameters: dict[str, str]) -> list[str]:
    """Batch's parameter substitution: a whole argument `Ref::name` becomes the parameter's value (an unknown
    name stays as written, as on AWS)."""
    return [str(parameters.get(arg[5:], arg)) if arg.startswith("Ref::") else arg for arg in command]


def _glob(pattern: str, value: str) -> bool:
    """evaluateOnExit patterns: an exact match, or a prefix match when the pattern ends with `*`."""
    return value.startswith(pattern[:-1]) if pattern.endswith("*") else value == pattern


def _lower_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k[:1].lower() + k[1:]: _lower_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_lower_keys(v) for v in value]
    return value


def batch_retry_action(strategy: dict[str, Any] | None, result: BatchJobResult) -> Literal["RETRY", "EXIT"]:
    """What Batch does after a failed attempt: an attempt that ran past its timeout is never retried, whatever
    its exit code (AWS Batch User Guide, "Job timeouts"); otherwise the first `evaluateOnExit` rule whose every
    condition matches decides, and with no matching rule (or no rules) Batch retries. Whether attempts remain
    is the caller's check."""
    if result.status_reason == TIMEOUT_REASON:
        return "EXIT"
    rules = _lower_keys(strategy or {}).get("evaluateOnExit") or []
    values = {"onExitCode": "" if result.exit_code is None else str(result.exit_code),
              "onStatusReason": result.status_reason or "", "onReason": result.reason or ""}
    for rule in rules:
        conditions = {k: v for k, v in rule.items() if k in values}
        if all(_glob(str(pattern), values[key]) for key, pattern in conditions.items()):
            return "RETRY" if str(rule.get("action", "")).upper() == "RETRY" else "EXIT"
    return "RETRY"


def batch_attempts(strategy: dict[str, Any] | None) -> int:
    return max(1, int(_lower_keys(strategy or {}).get("attempts") or 1))


@dataclass(frozen=True)
class BatchAttemptRecord:
    job_name: str
    job_id: str
    attempt: int
    result: BatchJobResult
    seconds: float


class _BatchJobs:
    """Runs each submitted job on a thread, attempt by attempt, through the runner."""

    def __init__(self, runner: BatchRunner) -> None:
        self.runner = runner
        self.attempts: list[BatchAttemptRecord] = []
        self._backends: dict[str, Any] = {}
        self._threads: list[threading.Thread] = []
        self._jobs: list[Any] = []

    def start(self, backend: Any, job: Any) -> None:
        """Replaces `BatchSimpleBackend._mark_job_as_finished`: register the job, then run it in the background
        (`submitJob` returns at once, as on AWS; `.sync` polls `describeJobs`)."""
        backend._jobs[job.job_id] = job
        self._backends[job.job_id] = backend
        job.log_stream_name = job._stream_name
        # Snapshot what the container gets now: later describes must not change it.
        definition = job.job_definition
        container = _lower_keys(definition.container_properties or {})
        overrides = _lower_keys(dict(job.container_overrides or {}))
        environment = {e["name"]: str(e["value"]) for e in container.get("environment", [])}
        environment.update({e["name"]: str(e["value"]) for e in overrides.get("environment", [])})
        parameters = {k: str(v) for k, v in {**(definition.parameters or {}), **(job.parameters or {})}.items()}
        command = resolve_command(list(overrides.get("command") or container.get("command") or []), parameters)
        timeout = (job.timeout or definition.timeout or {}).get("attemptDurationSeconds")
        spec = {"environment": environment, "parameters": parameters, "command": command,
                "timeout_seconds": int(timeout) if timeout else None, "job_role_arn": container.get("jobRoleArn")}
        thread = threading.Thread(target=self._run, args=(job, spec), name=f"aurax-batch-{job.job_name}",
                                  daemon=True)
        self._jobs.append(job)
        self._threads.append(thread)
        with acting_as(None):  # the job is Batch's from here on, not the submitter's
            thread.start()

    def _run(self, job: Any, spec: dict[str, Any]) -> None:
        strategy = job.job_definition.retry_strategy
        attempts = batch_attempts(strategy)
        result = BatchJobResult(None, "never started")
        for attempt in range(1, attempts + 1):
            if job.stop:
                break
            job.job_started_at = datetime.now()
            job.status = "RUNNING"
            job._start_attempt()
            self._announce(job)
            run = BatchJobRun(
                job_id=job.job_id, job_name=job.job_name, job_queue=job.job_queue.name,
                job_definition=job.job_definition.name, attempt=attempt, command=spec["command"],
                environment={**spec["environment"], "AWS_BATCH_JOB_ID": job.job_id,
                             "AWS_BATCH_JOB_ATTEMPT": str(attempt), "AWS_BATCH_JQ_NAME": job.job_queue.name},
                parameters=spec["parameters"], timeout_seconds=spec["timeout_seconds"],
                stop_reason=lambda: job.job_stopped_reason if job.stop else None, job_role_arn=spec["job_role_arn"])
            attempt_started = time.monotonic()
            try:
                result = self.runner(run)
            except Exception as exc:  # a runner bug must fail the job, not hang the execution
                logger.exception("Batch runner failed on %s attempt %d", job.job_name, attempt)
                result = BatchJobResult(None, f"aurax local: the job runner failed: {exc}")
            if job.stop:  # TerminateJob: the job fails with the caller's reason and is not retried
                result = BatchJobResult(result.exit_code, job.job_stopped_reason, result.reason)
            self.attempts.append(BatchAttemptRecord(job.job_name, job.job_id, attempt, result,
                                                    time.monotonic() - attempt_started))
            self._record_attempt(job, result)
            if result.exit_code == 0 and not job.stop:
                job.exit_code = 0
                job._mark_stopped(success=True)
                self._announce(job)
                return
            if job.stop or attempt == attempts or batch_retry_action(strategy, result) == "EXIT":
                break
            logger.info("Batch retries %s (attempt %d failed: exit %s, %s)", job.job_name, attempt,
                        result.exit_code, result.status_reason)
            job.status = "RUNNABLE"
            self._announce(job)
        job.exit_code = result.exit_code
        job.aurax_container_reason = result.reason
        job.job_stopped_reason = result.status_reason or "Essential container in task exited"
        job._mark_stopped(success=False)
        self._announce(job)

    def _announce(self, job: Any) -> None:
        """Put a "Batch Job State Change" event on the default bus (its detail is the job's description)."""
        from moto.events.models import events_backends

        backend = self._backends[job.job_id]
        try:
            events_backends[backend.account_id][backend.region_name].put_events([{
                "Source": "aws.batch", "DetailType": "Batch Job State Change", "Resources": [job.arn],
                "Detail": json.dumps(job.describe(), default=str)}])
        except Exception:  # a consumer's failure must not change the job's outcome (delivery is async on AWS)
            logger.exception("delivering the state change of %s failed", job.job_name)

    @staticmethod
    def _record_attempt(job: Any, result: BatchJobResult) -> None:
        attempt = job.latest_attempt
        attempt["stoppedAt"] = int(time.time() * 1000)
        if result.status_reason:
            attempt["statusReason"] = result.status_reason
        if result.exit_code is not None:
            attempt["container"]["exitCode"] = result.exit_code
        if result.reason:
            attempt["container"]["reason"] = result.reason

    def stop_all(self, timeout_s: float = 30.0) -> None:
        for job in self._jobs:
            if not job.job_stopped:
                job.terminate("aurax local: the emulation is shutting down")
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def wait(self, timeout_s: float) -> bool:
        """Wait until every job submitted so far has finished; False on timeout."""
        deadline = time.monotonic() + timeout_s
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)


def _container_property_without_growth(job: Any, p: str, default: Any) -> Any:
    """moto's `Job._get_container_property`, except that the environment merge builds a new list (moto
    appends to the job's overrides on every describe)."""
    container = job.job_definition.container_properties
    if p == "environment":
        overrides = list(job.container_overrides.get("environment", default))
        names = {e["name"] for e in overrides}
        merged = overrides + [e for e in container.get("environment", default) if e["name"] not in names]
        return merged + [{"name": "AWS_BATCH_JOB_ID", "value": job.job_id}]
    if p in ("vcpus", "memory"):
        return job.container_overrides.get(p, job.job_definition._get_resource_requirement(p, default))
    return job.container_overrides.get(p, container.get(p, default))


def _describe_with_exit_code(original: Callable[[Any], dict[str, Any]]) -> Callable[[Any], dict[str, Any]]:
    """moto's `Job.describe` drops the container's `exitCode` (and has no `reason`) that AWS reports and that
    the failure classifier reads from a failed task's cause."""

    def describe(job: Any) -> dict[str, Any]:
        result = original(job)
        if job.job_stopped and "container" in result:
            if job.exit_code is not None:
                result["container"]["exitCode"] = job.exit_code
            if getattr(job, "aurax_container_reason", None):
                result["container"]["reason"] = job.aurax_container_reason
        return result

    return describe


# --------------------------------------------------------------------------------------------------------------
# Lambda
# --------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LambdaContext:
    """What a handler's `context` offers (the attributes Powertools reads)."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    timeout_s: int
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started: float = field(default_factory=time.monotonic)

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"local/{self.aws_request_id}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_s - (time.monotonic() - self.started)) * 1000))


@dataclass(frozen=True)
class LambdaInvocation:
    function_name: str
    event: Any
    error_type: str | None
    error_message: str | None
    seconds: float


class _LogRouter(io.TextIOBase):
    """The stdout a handler runs with when logs go to files: writes made in an invocation (its thread and the
    threads it starts) go to the invoked function's log file; writes from any other thread meanwhile go where
    stdout went before (the operator's terminal, a test's capture), not into the function's log. Powertools
    binds its logging handler to stdout once per service name, at the first import, and every function shares
    the service name: binding it to this one long-lived router sends each line to the right function's file
    (and to the real stdout outside any invocation)."""

    def __init__(self) -> None:
        super().__init__()
        self._target: ContextVar[IO[str] | None] = ContextVar("aurax_lambda_log", default=None)
        self._outside: IO[str] | None = None

    def _stream(self) -> IO[str]:
        return self._target.get() or self._outside or sys.__stdout__

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._stream().write(text)
        return len(text)

    def flush(self) -> None:
        self._stream().flush()

    @contextmanager
    def to(self, target: IO[str]) -> Iterator[None]:
        """Route this context's stdout to `target` (callers hold the invocation lock: one outermost invocation
        at a time; a nested one, started by a handler's own call, keeps the outer one's `_outside`)."""
        token = self._target.set(target)
        outermost = sys.stdout is not self
        if outermost:
            self._outside = sys.stdout
        try:
            with redirect_stdout(self):
                yield
        finally:
            self._target.reset(token)
            if outermost:
                self._outside = None


_LOG_ROUTER = _LogRouter()


class _InProcessLambda:
    """Runs the deployed code of a moto Lambda function in this process.

    Each invocation sees its function's environment variables and no other thread does (`aurax.local.environ`).
    Invocations are serialised (one lock) because the log router sends the process's one stdout to the file of
    the function running; the lock is re-entrant so a handler whose call triggers another function (an S3
    notification) does not deadlock.
    """

    def __init__(self, log_dir: Path | None = None) -> None:
        self.invocations: list[LambdaInvocation] = []
        self._lock = threading.RLock()
        self._workdir = tempfile.TemporaryDirectory(prefix="aurax-lambda-")
        self._handlers: dict[tuple[str, str], Callable[..., Any]] = {}
        self._log_dir = log_dir
        self._logs: dict[str, IO[str]] = {}

    def close(self) -> None:
        for name in [n for n in sys.modules if n.startswith("_aurax_lambda_")]:
            del sys.modules[name]
        self._handlers.clear()
        for log in self._logs.values():
            log.close()
        self._workdir.cleanup()

    def _log_file(self, function_name: str) -> IO[str] | None:
        """The function's log file (its CloudWatch log group, locally), when logs go to files."""
        if self._log_dir is None:
            return None
        if function_name not in self._logs:
            self._log_dir.mkdir(parents=True, exist_ok=True)
            self._logs[function_name] = (self._log_dir / f"{function_name}.log").open("a", buffering=1)
        return self._logs[function_name]

    def _extract(self, name: str, code: bytes) -> Path:
        target = Path(self._workdir.name) / name
        if not target.exists():
            with zipfile.ZipFile(io.BytesIO(code)) as archive:
                archive.extractall(target)
        return target

    def _layer_paths(self, fn: Any) -> list[Path]:
        from moto.awslambda.utils import get_backend

        backend = get_backend(fn.account_id, fn.region)
        paths = []
        for layer in fn.layers or []:
            version = backend._layers.get_layer_version_by_arn(layer["Arn"])
            if version is None or not version.code_bytes:
                raise RuntimeError(f"layer {layer['Arn']} of {fn.function_name} has no code in the emulation")
            root = self._extract(f"layer-{version.code_sha_256[:16].replace('/', '_')}", version.code_bytes)
            paths += [root / "python", root]  # Lambda puts /opt/python on the path; a flat zip works too
        return paths

    def _handler(self, fn: Any) -> Callable[..., Any]:
        key = (fn.function_name, fn.code_sha_256)
        if key in self._handlers:
            return self._handlers[key]
        if not fn.code_bytes or not fn.handler:
            raise RuntimeError(f"{fn.function_name} has no zip code or no handler; aurax local runs zip functions")
        safe = "".join(c if c.isalnum() else "_" for c in fn.function_name)
        code_dir = self._extract(f"fn-{safe}-{fn.code_sha_256[:12].replace('/', '_')}", fn.code_bytes)
        for path in self._layer_paths(fn):
            if path.is_dir() and str(path) not in sys.path:
                sys.path.append(str(path))
        module_path, _, attribute = fn.handler.rpartition(".")
        source = code_dir / (module_path.replace(".", "/") + ".py")
        if not source.is_file():
            raise RuntimeError(f"{fn.function_name}: handler module {source.name} is not in the deployed code")
        spec = importlib.util.spec_from_file_location(f"_aurax_lambda_{safe}", source)
        assert spec is not None and spec.loader is not None
        module: ModuleType = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        sys.path.insert(0, str(code_dir))  # the function's own modules import as siblings, as on Lambda
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[spec.name]
            raise
        finally:
            sys.path.remove(str(code_dir))
        handler = getattr(module, attribute)
        self._handlers[key] = handler
        return handler

    def invoke(self, fn: Any, body: Any, response_headers: dict[str, Any]) -> bytes:
        if isinstance(body, bytes):
            body = body.decode("utf-8")
        event = json.loads(body) if body else {}
        env = {**{k: str(v) for k, v in (fn.environment_vars or {}).items()},
               "AWS_LAMBDA_FUNCTION_NAME": fn.function_name, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory_size),
               "AWS_REGION": fn.region}
        started = time.monotonic()
        error: BaseException | None = None
        log_file = self._log_file(fn.function_name)
        role = Principal(fn.role, f"Lambda function {fn.function_name}")
        with self._lock, function_environment(env), _LOG_ROUTER.to(log_file) if log_file else nullcontext(), \
                acting_as(role):
            try:
                handler = self._handler(fn)
                context = LambdaContext(fn.function_name, fn.function_arn, int(fn.memory_size), int(fn.timeout))
                payload = json.dumps(handler(event, context)).encode("utf-8")
            except Exception as exc:  # noqa: BLE001 - any handler error is the function's error, as on Lambda
                error = exc
                logger.warning("Lambda %s raised %s: %s", fn.function_name, type(exc).__name__, exc)
                response_headers["x-amz-function-error"] = "Unhandled"
                payload = json.dumps({"errorMessage": str(exc), "errorType": type(exc).__name__,
                                      "stackTrace": traceback.format_tb(exc.__traceback__)}).encode("utf-8")
        self.invocations.append(LambdaInvocation(fn.function_name, event, type(error).__name__ if error else None,
                                                 str(error) if error else None, time.monotonic() - started))
        response_headers["x-amz-log-result"] = base64.b64encode(b"").decode()
        return payload


# --------------------------------------------------------------------------------------------------------------
# Step Functions
# --------------------------------------------------------------------------------------------------------------

def _batch_operation(action: str) -> Any:
    import botocore.session
    from botocore import xform_name

    model = botocore.session.get_session().get_service_model("batch")
    for name in model.operation_names:
        if xform_name(name) == action:
            return model.operation_model(name)
    raise ValueError(f"batch has no operation {action!r}")


def _batch_normalise_parameters(self: Any, parameters: dict[str, Any], boto_service_name: str | None = None,
                                service_action_name: str | None = None) -> None:
    operation = _batch_operation(self._get_boto_service_action(service_action_name))
    self._to_boto_request(parameters, operation.input_shape)


def _batch_normalise_response(self: Any, response: Any, boto_service_name: str | None = None,
                              service_action_name: str | None = None) -> None:
    operation = _batch_operation(self._get_boto_service_action(service_action_name))
    self._from_boto_response(response, operation.output_shape)


def _rule_with_lambda_targets(original: Callable[..., None]) -> Callable[..., None]:
    """`Rule.send_to_targets` that also invokes Lambda targets (moto raises for them)."""

    def send_to_targets(rule: Any, original_event: dict[str, Any], transform_input: bool = True) -> None:
        from moto.awslambda.utils import get_backend
        from moto.core.utils import iso_8601_datetime_without_milliseconds, utcfromtimestamp
        from moto.utilities.arns import parse_arn

        # A rule without a pattern is a schedule: it fires on its schedule, never on events (moto matches
        # every event against the empty pattern).
        if not rule.event_pattern.get_pattern() or not rule.event_pattern.matches_event(original_event):
            return
        functions = [t for t in rule.targets if parse_arn(t["Arn"]).service == "lambda"]
        if len(functions) < len(rule.targets):
            others = copy.copy(rule)
            others.targets = [t for t in rule.targets if t not in functions]
            original(others, original_event, transform_input)
        event = {k: v for k, v in original_event.items() if k != "ingestion-time"}
        if isinstance(event.get("time"), (int, float)):
            event["time"] = iso_8601_datetime_without_milliseconds(utcfromtimestamp(float(event["time"])))
        for target in functions:
            arn = parse_arn(target["Arn"])
            payload = target.get("Input") or json.dumps(event)
            get_backend(arn.account, arn.region).get_function(target["Arn"]).invoke(
                payload, {"x-amz-invocation-type": "Event"}, {})

    return send_to_targets


def _complete_s3_event(original: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """moto's `_get_s3_event` with the fields AWS sends in every record."""
    sequence = iter(range(1, 1 << 62))
    lock = threading.Lock()

    def get_s3_event(event_name: str, bucket: Any, key: Any, notification_id: str) -> dict[str, Any]:
        event = original(event_name, bucket, key, notification_id)
        with lock:
            sequencer = f"{int(time.time() * 1000):012X}{next(sequence):08X}"
        for record in event["Records"]:
            record.setdefault("userIdentity", {"principalId": "AWS:AURAXLOCAL"})
            record.setdefault("requestParameters", {"sourceIPAddress": "127.0.0.1"})
            record.setdefault("responseElements", {"x-amz-request-id": uuid.uuid4().hex[:16].upper(),
                                                   "x-amz-id-2": uuid.uuid4().hex})
            record["s3"]["bucket"].setdefault("ownerIdentity", {"principalId": "AURAXLOCAL"})
            record["s3"]["object"].setdefault("sequencer", sequencer)
            version = getattr(key, "version_id", None)
            if version and version != "null":
                record["s3"]["object"].setdefault("versionId", str(version))
        return event

    return get_s3_event


def _no_wait(self: Any, env: Any, wait_seconds: int) -> None:
    """Wait states end at once (the interpreter's own wait honours a stop, which nothing needs here)."""


# --------------------------------------------------------------------------------------------------------------
# Installing
# --------------------------------------------------------------------------------------------------------------

class LocalAwsPatches:
    """Installs every patch on enter and removes them on exit (see the module docstring)."""

    def __init__(self, batch_runner: BatchRunner = always_succeed, *, instant_waits: bool = True,
                 sync_poll_seconds: float = 0.05, lambda_log_dir: Path | None = None,
                 enforce_iam: bool = True) -> None:
        self.batch = _BatchJobs(batch_runner)
        self.lambdas = _InProcessLambda(lambda_log_dir)
        self.iam = IamEnforcement() if enforce_iam else None
        self.instant_waits = instant_waits
        self.sync_poll_seconds = sync_poll_seconds
        self._stack = ExitStack()

    @property
    def lambda_invocations(self) -> list[LambdaInvocation]:
        return self.lambdas.invocations

    @property
    def batch_attempts(self) -> list[BatchAttemptRecord]:
        return self.batch.attempts

    @property
    def iam_denials(self) -> list[str]:
        """Every request IAM denied so far, as AWS's AccessDenied message, and every request the emulation could
        not decide (empty without enforcement)."""
        if self.iam is None:
            return []
        return [d.message for d in self.iam.denials] + [f"undecided: {u}" for u in self.iam.undecided]

    def __enter__(self) -> Self:
        from moto.awslambda.models import LambdaFunction
        from moto.awslambda_simple.models import LambdaSimpleBackend
        from moto.batch.models import Job
        from moto.batch_simple.models import BatchSimpleBackend
        from moto.events.models import Rule
        from moto.s3 import notifications
        from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
        from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
            state_task_service_batch,
            state_task_service_callback,
        )
        from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import (
            WaitFunction,
        )

        batch, lambdas = self.batch, self.lambdas

        def mark_job_as_finished(backend: Any, include_start_attempt: bool, job: Any) -> None:
            batch.start(backend, job)

        def simple_invoke(backend: Any, function_name: str, qualifier: str | None, body: Any, headers: Any,
                          response_headers: dict[str, Any]) -> bytes:
            payload = lambdas.invoke(backend.get_function(function_name, qualifier), body, response_headers)
            response_headers["Content-Length"] = str(len(payload))
            return payload

        def function_invoke(fn: Any, body: Any, request_headers: Any, response_headers: dict[str, Any]) -> bytes:
            return lambdas.invoke(fn, body, response_headers)

        task = state_task_service_batch.StateTaskServiceBatch
        patches = [
            mock.patch.object(task, "_normalise_parameters", _batch_normalise_parameters),
            mock.patch.object(task, "_normalise_response", _batch_normalise_response),
            mock.patch.object(LambdaSimpleBackend, "invoke", simple_invoke),
            mock.patch.object(LambdaFunction, "invoke", function_invoke),
            mock.patch.object(BatchSimpleBackend, "_mark_job_as_finished", mark_job_as_finished),
            mock.patch.object(Job, "_get_container_property", _container_property_without_growth),
            mock.patch.object(Job, "describe", _describe_with_exit_code(Job.describe)),
            mock.patch.object(Rule, "send_to_targets", _rule_with_lambda_targets(Rule.send_to_targets)),
            mock.patch.object(notifications, "quote_plus", lambda key: quote_plus(key, safe="/")),
            mock.patch.object(notifications, "_get_s3_event", _complete_s3_event(notifications._get_s3_event)),
            mock.patch.object(state_task_service_callback, "_DELAY_SECONDS_SYNC_CONDITION_CHECK",
                              self.sync_poll_seconds),
        ]
        if self.instant_waits:
            patches += [mock.patch.object(WaitFunction, "_wait_interval", _no_wait),
                        mock.patch.object(retrier_decl, "time", SimpleNamespace(sleep=lambda seconds: None))]
        for patch in patches:
            self._stack.enter_context(patch)
        self._stack.enter_context(isolated_environ())
        if self.iam is not None:
            self._stack.enter_context(self.iam)
        self._stack.callback(self.lambdas.close)
        self._stack.callback(self.batch.stop_all)  # runs first: stop the jobs while the patches still hold
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()


@contextmanager
def patched_moto(batch_runner: BatchRunner = always_succeed, *, instant_waits: bool = True,
                 sync_poll_seconds: float = 0.05, lambda_log_dir: Path | None = None,
                 enforce_iam: bool = True) -> Iterator[LocalAwsPatches]:
    """`with mock_aws(config=MOTO_CONFIG), patched_moto(runner) as local: ...`

    `lambda_log_dir`: write each function's stdout (its Powertools logs and metrics) to `<function>.log`
    there instead of this process's stdout. `enforce_iam`: authorise every request as its principal (see
    `iam`); only the tests of the patches themselves turn it off."""
    with LocalAwsPatches(batch_runner, instant_waits=instant_waits, sync_poll_seconds=sync_poll_seconds,
                         lambda_log_dir=lambda_log_dir, enforce_iam=enforce_iam) as p:
        yield p
