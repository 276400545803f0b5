"""Where everything lives under the data bucket (or a local folder): the contract between the job, the
Lambdas and the CLI. URIs are `s3://bucket/prefix` or `file:///abs/path`."""

from __future__ import annotations

from dataclasses import dataclass

RUNS_PREFIX = "runs"
DATASETS_PREFIX = "datasets"
MODELS_PREFIX = "models"
METRICS_DIR = "metrics"
CHECKPOINTS_DIR = "checkpoints"


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts if p)])


@dataclass(frozen=True)
class RunLayout:
    """Every path of one run under `root` (the bucket URI, e.g. `s3://aurax-data-123`)."""

    root: str
    run_id: str

    @property
    def run_uri(self) -> str:
        return join(self.root, RUNS_PREFIX, self.run_id)

    @property
    def config_uri(self) -> str:
        return join(self.run_uri, "config.json")

    @property
    def checkpoints_uri(self) -> str:
        return join(self.run_uri, CHECKPOINTS_DIR)

    @property
    def metrics_uri(self) -> str:
        return join(self.run_uri, METRICS_DIR)

    def eval_uri(self, point: str) -> str:
        return join(self.run_uri, "eval", point)

    def eval_report_uri(self, point: str) -> str:
        return join(self.eval_uri(point), "report.json")

    @property
    def stop_request_uri(self) -> str:
        """Written by the control plane to ask a running job to checkpoint and stop (`StopRequest`)."""
        return join(self.run_uri, "control", "stop.json")

    @property
    def reports_uri(self) -> str:
        return join(self.run_uri, "reports")

    @property
    def model_uri(self) -> str:
        return join(self.root, MODELS_PREFIX, self.run_id)

    def dataset_uri(self, fingerprint: str) -> str:
        return join(self.root, DATASETS_PREFIX, fingerprint[:16])


def metrics_chunk_name(attempt: int, sequence: int) -> str:
    """Chunk names sort by attempt then sequence, so a listing reads in write order."""
    return f"attempt-{attempt:04d}/chunk-{sequence:08d}.jsonl"


def run_id_from_metrics_key(key: str) -> str | None:
    """`runs/<run_id>/metrics/...` -> run_id (None for any other key)."""
    parts = key.split("/")
    if len(parts) >= 4 and parts[0] == RUNS_PREFIX and parts[2] == METRICS_DIR:
        return parts[1]
    return None
