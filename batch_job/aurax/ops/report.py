"""Fetch a run's HTML reports: the evaluations' `eval/<point>/report.html` and the abort report
`reports/*.html`, with the files they link to (clips, plots) beside them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aurax_contracts import RunLayout
from aurax_contracts.layout import join

from ..errors import InputError
from .stack_outputs import StackOutputs

#: What a report links to, fetched with it (audio players and plots in the evaluation report).
_LINKED = (".html", ".png", ".svg", ".wav", ".mp3", ".json", ".md")


class NoReport(InputError):
    """The run does not exist or has no report yet."""


@dataclass(frozen=True)
class FetchedReports:
    run_id: str
    reports: list[Path]
    """The HTML reports, evaluation ones first."""
    folder: Path


def _keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [item["Key"] for item in page.get("Contents", [])]
    return keys


def fetch_reports(stack: StackOutputs, run_id: str, out_dir: Path, *, s3: Any) -> FetchedReports:
    layout = RunLayout(stack.root, run_id)
    run_prefix = layout.run_uri.removeprefix(f"s3://{stack.data_bucket}/") + "/"
    everything = _keys(s3, stack.data_bucket, run_prefix)
    if not everything:
        raise NoReport(f"no run {run_id!r} in s3://{stack.data_bucket}/{run_prefix}; check the run id "
                       "(`aurax status` lists the latest run)")
    report_dirs = sorted({k.rsplit("/", 1)[0] for k in everything if k.endswith(".html")
                          and k.startswith((run_prefix + "eval/", run_prefix + "reports/"))})
    if not report_dirs:
        raise NoReport(f"run {run_id!r} has no report yet: the evaluation at the decision epoch writes "
                       f"{join(layout.eval_uri('decision'), 'report.html')}, and an aborted run "
                       f"{layout.reports_uri}/abort.html; see `aurax status {run_id}`")
    folder = out_dir / run_id
    reports: list[Path] = []
    for key in everything:
        if any(key.startswith(d + "/") for d in report_dirs) and key.endswith(_LINKED):
            path = folder / key.removeprefix(run_prefix)
            path.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(stack.data_bucket, key, str(path))
            if key.endswith(".html"):
                reports.append(path)
    reports.sort(key=lambda p: (not p.is_relative_to(folder / "eval"), str(p)))
    return FetchedReports(run_id, reports, folder)
