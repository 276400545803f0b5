"""AURA-X Train Control contracts: the one definition of everything passed between the parts.

Pure Python (pydantic only) so that the Lambda layer and the job image share it.
"""

from .artifacts import CheckpointFile, CheckpointManifest, DatasetManifest, ShardInfo
from .base import Contract, ContractError, describe_validation_error
from .config import MUSICGEN_SMALL, TINY_MODEL_ID, RunConfig, load_run_config, parse_run_config
from .decision import Criterion, Decision
from .evaluation import ArmSummary, ClipScore, Comparison, EvalReport, Provenance
from .events import (
                     EVENT_SOURCE,
                     AlertDetail,
                     DecisionDetail,
                     DetailType,
                     ModelPromotedDetail,
                     RunAbortedDetail,
                     Severity,
)
from .exit_codes import AbortReason, JobExit, batch_retry_strategy, classify_failure
from .layout import RunLayout
from .metrics import METRIC_RECORD, MetricRecord, dump_metric_line, parse_metric_line
from .state import AttemptCost, CostLedger, RunState
from .workflow import ExecutionInput, FailureInput, FailureVerdict, RunPlan, StopRequest, TaskError

__all__ = [
    "EVENT_SOURCE", "METRIC_RECORD", "MUSICGEN_SMALL", "TINY_MODEL_ID", "AbortReason", "AlertDetail",
    "ArmSummary", "AttemptCost", "CheckpointFile", "CheckpointManifest", "ClipScore", "Comparison", "Contract",
    "ContractError", "CostLedger", "Criterion", "DatasetManifest", "Decision", "DecisionDetail", "DetailType",
    "EvalReport", "ExecutionInput", "FailureInput", "FailureVerdict", "JobExit", "MetricRecord",
    "ModelPromotedDetail", "Provenance", "RunAbortedDetail", "RunConfig", "RunLayout", "RunPlan", "RunState",
    "Severity", "ShardInfo", "StopRequest", "TaskError", "batch_retry_strategy", "classify_failure",
    "describe_validation_error", "dump_metric_line", "load_run_config", "parse_metric_line", "parse_run_config",
]
