"""The arguments of `aurax job train`, resolved (defaults derived from the run URI)."""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from pathlib import Path

from aurax_contracts.layout import CHECKPOINTS_DIR, METRICS_DIR, join, stop_request_uri


@dataclass(frozen=True)
class TrainOptions:
    config_uri: str
    run_uri: str
    dataset_uri: str
    until_epoch: int
    checkpoint_uri: str
    metrics_uri: str
    work_dir: Path
    checkpoint_every_steps: int | None
    metrics_flush_seconds: float

    @property
    def stop_request_uri(self) -> str:
        return stop_request_uri(self.run_uri)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainOptions:
        run_uri = args.run_uri.rstrip("/")
        return cls(config_uri=args.config, run_uri=run_uri, dataset_uri=args.dataset_uri.rstrip("/"),
                   until_epoch=args.until_epoch,
                   checkpoint_uri=(args.checkpoint_uri or join(run_uri, CHECKPOINTS_DIR)).rstrip("/"),
                   metrics_uri=(args.metrics_uri or join(run_uri, METRICS_DIR)).rstrip("/"),
                   work_dir=Path(args.work_dir) if args.work_dir else Path(tempfile.gettempdir()) / "aurax-train",
                   checkpoint_every_steps=args.checkpoint_every_steps,
                   metrics_flush_seconds=args.metrics_flush_seconds)
