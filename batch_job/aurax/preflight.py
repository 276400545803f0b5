"""`aurax preflight`: everything a run needs, checked before any GPU time is paid for.

Checks, each passed, failed or skipped with its reason (skipped is not failed: a laptop has no idle rule):
- detector: the log-drum validation suite (`aurax.audio.validation`) passes with the thresholds in use;
- gpu: CUDA visible, fp16 matrix maths agrees with fp32, enough free memory (required with --require-gpu;
  checked whenever a GPU is visible);
- config: the run config parses and validates;
- dataset: when the dataset URI holds a manifest, it is valid, every shard is present, the shards' clip counts
  add up to the manifest's, the training split is not empty, and it was built for this config;
- dataset-plan: before the dataset is prepared, the config's selection rules meet their target on the real
  annotations (`aurax.dataset.plan`, the check `aurax start` and the prepare job make);
- idle-rule: the EventBridge rule named by AURAX_IDLE_RULE_NAME (default bus) exists and is ENABLED;
- alert-topic: the SNS topic AURAX_ALERT_TOPIC_ARN exists.
Any failure: exit 78 (`JobExit.PREFLIGHT_FAILED`), and the state machine does not start training.
SIGTERM or a spot notice stops it within a poll interval (`run_interruptible`): exit 75, as every job does.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from aurax_contracts import ContractError, RunConfig, parse_run_config
from aurax_contracts.layout import join

from . import storage
from .audio.config import AnalysisConfig
from .errors import InputError

if TYPE_CHECKING:
    from .interrupts import InterruptWatch

IDLE_RULE_ENV = "AURAX_IDLE_RULE_NAME"
ALERT_TOPIC_ENV = "AURAX_ALERT_TOPIC_ARN"
#: musicgen-small full fine-tune: ~6.7 GB of weights and optimizer state plus activations (T4: ~14.5 free).
DEFAULT_MIN_GPU_MEMORY_GIB = 12.0
FP16_MATMUL_SIZE = 1024
FP16_MAX_RELATIVE_ERROR = 1e-2

#: How often the main thread looks for a stop cause while the checks run.
INTERRUPT_POLL_SECONDS = 0.2

Status = Literal["passed", "failed", "skipped"]
T = TypeVar("T")


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    detail: str


@dataclass(frozen=True)
class PreflightReport:
    checks: list[CheckResult]

    @property
    def passed(self) -> bool:
        return all(c.status != "failed" for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "checks": [asdict(c) for c in self.checks]}

    def render(self) -> str:
        width = max(len(c.name) for c in self.checks)
        lines = [f"{c.status.upper():7s} {c.name:{width}s}  {c.detail}" for c in self.checks]
        failed = sum(c.status == "failed" for c in self.checks)
        lines.append("preflight passed" if self.passed else f"preflight FAILED: {failed} check(s) failed")
        return "\n".join(lines)


def _guarded(name: str, check: Callable[[], CheckResult]) -> CheckResult:
    """A check that crashes fails, with the error as its detail, so the report still lists every check."""
    try:
        return check()
    except Exception as exc:  # noqa: BLE001 - the report must name it, whatever it is
        return CheckResult(name, "failed", f"{type(exc).__name__}: {exc}")


def check_detector(analysis: AnalysisConfig) -> CheckResult:
    from .audio.validation import run_validation_suite

    suite = run_validation_suite(analysis.detector)
    if suite.passed:
        return CheckResult("detector", "passed", suite.summary())
    return CheckResult("detector", "failed", suite.summary() + "; fix the detector thresholds "
                       "(--analysis-config) or the detector before training")


def fp16_relative_error(device: Any) -> float:
    """Relative error of a seeded fp16 matmul against fp32 on `device` (~1e-3 on healthy hardware; NaN or
    large on a faulty GPU or driver)."""
    import torch

    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(FP16_MATMUL_SIZE, FP16_MATMUL_SIZE, device=device, generator=generator)
    b = torch.randn(FP16_MATMUL_SIZE, FP16_MATMUL_SIZE, device=device, generator=generator)
    reference = a @ b
    return float((((a.half() @ b.half()).float() - reference).norm() / reference.norm()).item())


def judge_gpu(name: str, free_bytes: int, total_bytes: int, fp16_error: float,
              min_memory_gib: float) -> CheckResult:
    problems = []
    if not fp16_error <= FP16_MAX_RELATIVE_ERROR:  # also catches NaN
        problems.append(f"fp16 matmul is wrong (relative error {fp16_error:.2e} > "
                        f"{FP16_MAX_RELATIVE_ERROR:g}); the GPU or driver is faulty: use another instance")
    if free_bytes / 2**30 < min_memory_gib:
        problems.append(f"only {free_bytes / 2**30:.1f} GiB of GPU memory free, need {min_memory_gib:g}; "
                        "use a larger GPU or stop what else runs on it")
    detail = (f"{name}: {free_bytes / 2**30:.1f}/{total_bytes / 2**30:.1f} GiB free, "
              f"fp16 matmul relative error {fp16_error:.1e}")
    if problems:
        return CheckResult("gpu", "failed", detail + "; " + "; ".join(problems))
    return CheckResult("gpu", "passed", detail)


def check_gpu(require: bool, min_memory_gib: float) -> CheckResult:
    import torch

    if not torch.cuda.is_available():
        if require:
            return CheckResult("gpu", "failed", "no CUDA device is visible (torch.cuda.is_available() is "
                               "False); run on a GPU instance with the CUDA image, or drop --require-gpu "
                               "for a local run")
        return CheckResult("gpu", "skipped", "no CUDA device and --require-gpu not given (local run)")
    device = torch.device("cuda:0")
    free, total = torch.cuda.mem_get_info(device)
    return judge_gpu(torch.cuda.get_device_name(device), free, total, fp16_relative_error(device),
                     min_memory_gib)


def load_config(uri: str) -> RunConfig:
    return parse_run_config(storage.read_text(uri), uri)


def check_config(uri: str | None) -> CheckResult:
    if uri is None:
        return CheckResult("config", "skipped", "no --config given")
    try:
        config = load_config(uri)
    except (ContractError, storage.StorageError) as exc:
        return CheckResult("config", "failed", str(exc))
    return CheckResult("config", "passed", f"run {config.run_id}: model {config.model.model_id} "
                       f"({config.model.finetune}), {config.training.total_epochs} epochs")


def _config_or_none(uri: str | None) -> RunConfig | None:
    """The run config, or None when none is given or it is invalid (the config check reports that)."""
    if uri is None:
        return None
    try:
        return load_config(uri)
    except (ContractError, storage.StorageError):
        return None


def check_dataset(dataset_uri: str | None, config_uri: str | None) -> CheckResult:
    from .dataset.selection import describe_floor, min_clips
    from .dataset.shards import MANIFEST_NAME, load_manifest

    if dataset_uri is None:
        return CheckResult("dataset", "skipped", "no --dataset-uri given")
    if not storage.exists(join(dataset_uri, MANIFEST_NAME)):
        return CheckResult("dataset", "skipped",
                           f"no manifest at {dataset_uri} yet; `aurax job prepare` builds it")
    try:
        manifest, digest = load_manifest(dataset_uri)
    except InputError as exc:
        return CheckResult("dataset", "failed", str(exc))
    problems = []
    missing = [s.name for s in manifest.shards if not storage.exists(join(dataset_uri, s.name))]
    if missing:
        problems.append(f"shards missing: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    for split in ("train", "validation"):
        in_shards = sum(s.clips for s in manifest.shards if s.split == split)
        if in_shards != manifest.counts.get(split, 0):
            problems.append(f"{split}: shards hold {in_shards} clips, the manifest counts "
                            f"{manifest.counts.get(split, 0)}")
    for split in ("train", "validation"):
        if manifest.counts.get(split, 0) < 1:
            problems.append(f"the {split} split is empty")
    config = _config_or_none(config_uri)
    if config is not None:
        expected = config.dataset_fingerprint()
        if expected != manifest.fingerprint:
            problems.append(f"built for another dataset selection (fingerprint {manifest.fingerprint[:12]}, "
                            f"this config's is {expected[:12]})")
        total, floor = sum(manifest.counts.values()), min_clips(config.dataset)
        if total < floor:
            problems.append(f"{total} clips, fewer than the {floor} this config needs "
                            f"({describe_floor(config.dataset)})")
    counts = ", ".join(f"{k} {v}" for k, v in sorted(manifest.counts.items()))
    detail = f"{counts} clips in {len(manifest.shards)} shards, manifest sha256 {digest[:12]}"
    if problems:
        return CheckResult("dataset", "failed", detail + "; " + "; ".join(problems) +
                           "; fix: re-run `aurax job prepare` for this config")
    return CheckResult("dataset", "passed", detail)


def check_dataset_plan(config_uri: str | None, dataset_uri: str | None) -> CheckResult:
    """The dataset plan on the annotations at the config's `dataset.source_uri` (cached beside the datasets on
    S3, where the prepare job finds it), unless the dataset is already prepared."""
    from .dataset.builder import default_cache_uri
    from .dataset.download import RetryPolicy
    from .dataset.plan import make_plan
    from .dataset.shards import MANIFEST_NAME
    from .dataset.source import MtatSource

    config = _config_or_none(config_uri)
    if config is None:
        return CheckResult("dataset-plan", "skipped", "no valid --config (the config check says why)")
    if dataset_uri is not None and storage.exists(join(dataset_uri, MANIFEST_NAME)):
        return CheckResult("dataset-plan", "skipped", "the dataset is already prepared (the dataset check covers it)")
    work_dir = Path(os.environ.get("AURAX_WORK_DIR") or tempfile.gettempdir()) / "aurax-preflight"
    source = MtatSource(config.dataset.source_uri, work_dir, default_cache_uri(dataset_uri) if dataset_uri else None,
                        RetryPolicy(attempts=4))
    annotations, where = source.annotations()
    plan = make_plan(annotations, config.dataset, where)
    if not plan.met:
        fixes = [f"fix: set {fix.render()}" for fix in plan.fixes]
        return CheckResult("dataset-plan", "failed", "; ".join([*plan.problems, *fixes]) +
                           " (`aurax dataset plan --config ...` prints the figures)")
    return CheckResult("dataset-plan", "passed", f"{plan.selected_total:,} clips selected (train "
                       f"{plan.selected['train']:,}, validation {plan.selected['validation']:,}), at least "
                       f"{plan.fewest:,} needed, on {where}")


def _aws_error_code(exc: Exception) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)


def check_idle_rule(rule_name: str | None) -> CheckResult:
    if not rule_name:
        return CheckResult("idle-rule", "skipped", f"{IDLE_RULE_ENV} is not set (local run)")
    import boto3

    try:
        rule = boto3.client("events").describe_rule(Name=rule_name)
    except Exception as exc:  # noqa: BLE001 - botocore raises per-service classes
        code = _aws_error_code(exc)
        fix = "deploy the stack (template.yaml) that creates it" if code == "ResourceNotFoundException" else \
            "check the job role's events:DescribeRule permission"
        return CheckResult("idle-rule", "failed", f"EventBridge rule {rule_name}: {code}; {fix}")
    state = rule.get("State", "UNKNOWN")
    if state != "ENABLED":
        return CheckResult("idle-rule", "failed", f"EventBridge rule {rule_name} is {state}, so an idle job "
                           f"would not be stopped; enable it: aws events enable-rule --name {rule_name}")
    return CheckResult("idle-rule", "passed", f"EventBridge rule {rule_name} is ENABLED "
                       f"({rule.get('ScheduleExpression') or 'event pattern'})")


def check_alert_topic(topic_arn: str | None) -> CheckResult:
    if not topic_arn:
        return CheckResult("alert-topic", "skipped", f"{ALERT_TOPIC_ENV} is not set (local run)")
    import boto3

    try:
        attributes = boto3.client("sns").get_topic_attributes(TopicArn=topic_arn)["Attributes"]
    except Exception as exc:  # noqa: BLE001
        code = _aws_error_code(exc)
        fix = "deploy the stack (template.yaml) that creates it" if code == "NotFound" else \
            "check the ARN and the job role's sns:GetTopicAttributes permission"
        return CheckResult("alert-topic", "failed", f"SNS topic {topic_arn}: {code}; {fix}")
    confirmed = int(attributes.get("SubscriptionsConfirmed", "0"))
    note = "" if confirmed else " (alerts reach nobody until someone confirms a subscription)"
    return CheckResult("alert-topic", "passed", f"SNS topic {topic_arn} exists, {confirmed} confirmed "
                       f"subscription(s){note}")


def run_preflight(*, config_uri: str | None, dataset_uri: str | None, require_gpu: bool,
                  analysis: AnalysisConfig | None = None,
                  min_gpu_memory_gib: float = DEFAULT_MIN_GPU_MEMORY_GIB) -> PreflightReport:
    analysis = analysis or AnalysisConfig()
    checks = [
        _guarded("detector", lambda: check_detector(analysis)),
        _guarded("gpu", lambda: check_gpu(require_gpu, min_gpu_memory_gib)),
        _guarded("config", lambda: check_config(config_uri)),
        _guarded("dataset", lambda: check_dataset(dataset_uri, config_uri)),
        _guarded("dataset-plan", lambda: check_dataset_plan(config_uri, dataset_uri)),
        _guarded("idle-rule", lambda: check_idle_rule(os.environ.get(IDLE_RULE_ENV))),
        _guarded("alert-topic", lambda: check_alert_topic(os.environ.get(ALERT_TOPIC_ENV))),
    ]
    return PreflightReport(checks)


def run_interruptible(work: Callable[[], T], watch: InterruptWatch,
                      poll_seconds: float = INTERRUPT_POLL_SECONDS) -> T | None:
    """`work()` on a worker thread, or None as soon as `watch` has a stop cause (SIGTERM, a spot notice).

    A check can block for minutes (an S3 read retrying, CUDA initialising) and Python runs signal handlers only
    between the main thread's bytecodes, so the main thread only waits and polls. Preflight writes nothing, so
    on a stop the worker is left to end with the process (a daemon thread). Exceptions of `work` are re-raised.
    """
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=target, name="preflight-checks", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(poll_seconds)
        if watch.pending() is not None:
            return None
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]  # type: ignore[no-any-return]
