"""Finding a run's Batch jobs: by job name prefix `<run_id>-` in the project's queues, plus any job ids
the monitor recorded (Batch forgets finished jobs after some days; the ledger keeps their attempts).

The state machine tags every job `aurax:run-id`; the tag settles whether a job whose name merely starts
with the prefix (run `a-1` vs run `a-1-retry`) belongs to the run."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from aurax_contracts import AbortReason
from aurax_contracts.exit_codes import terminate_reason

from .aws import client

logger = logging.getLogger(__name__)

RUN_ID_TAG = "aurax:run-id"
ACTIVE_JOB_STATUSES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")
#: The stage of the jobs whose cost per step the ledger projects from (`job_stage`).
TRAINING_STAGE = "train"
#: Stages whose jobs send heartbeats while they run (the state machine names jobs `<run_id>-<stage>[-...]`).
#: Preflight and prepare send none; their job definitions' timeouts bound them instead.
HEARTBEAT_STAGES = frozenset({TRAINING_STAGE, "evaluate"})
_DESCRIBE_BATCH = 100  # describe_jobs accepts at most 100 ids


def job_name_prefix(run_id: str) -> str:
    return f"{run_id}-"


def job_stage(job_name: str | None, run_id: str) -> str | None:
    """`train` for `<run_id>-train-to-decision`; None for a name without the run's prefix."""
    prefix = job_name_prefix(run_id)
    if not job_name or not job_name.startswith(prefix):
        return None
    return job_name[len(prefix):].split("-", 1)[0] or None


def batch_time(milliseconds: Any) -> datetime | None:
    """A Batch timestamp (milliseconds since the epoch, absent or 0 when unset) as an aware datetime."""
    return datetime.fromtimestamp(int(milliseconds) / 1000.0, UTC) if milliseconds else None


def belongs_to_run(job: Mapping[str, Any], run_id: str) -> bool:
    """A job description (or a Batch event's detail) is the run's by its tag, else by its name."""
    tags = job.get("tags") or {}
    if RUN_ID_TAG in tags:
        return tags[RUN_ID_TAG] == run_id
    return str(job.get("jobName", "")).startswith(job_name_prefix(run_id))


def find_jobs(run_id: str, queues: Iterable[str], known_ids: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Full descriptions of the run's jobs, each once."""
    batch = client("batch")
    recorded = [i for i in dict.fromkeys(known_ids) if i]  # once: known_ids may be a one-pass iterator
    ids = list(recorded)
    prefix = job_name_prefix(run_id)
    for queue in queues:
        paginator = batch.get_paginator("list_jobs")
        # With filters Batch lists every status, so one listing finds running and finished jobs alike.
        for page in paginator.paginate(jobQueue=queue, filters=[{"name": "JOB_NAME", "values": [prefix + "*"]}]):
            for summary in page.get("jobSummaryList", []):
                if summary["jobName"].startswith(prefix) and summary["jobId"] not in ids:
                    ids.append(summary["jobId"])
    described: list[dict[str, Any]] = []
    for i in range(0, len(ids), _DESCRIBE_BATCH):
        described.extend(job for job in batch.describe_jobs(jobs=ids[i:i + _DESCRIBE_BATCH]).get("jobs", [])
                         if job["jobId"] in recorded or belongs_to_run(job, run_id))
    return described


@dataclass(frozen=True)
class Terminated:
    done: list[str]
    failed: dict[str, str]
    """Job id -> why Batch refused (an id Batch no longer knows, a missing permission)."""


def terminate(job_ids: Iterable[str], reason: AbortReason, detail: str) -> Terminated:
    """Terminate jobs with a reason Batch's retry strategy recognises (never retried).

    One refused id (e.g. a stale id from an old heartbeat, which Batch answers with ClientException) must not
    keep the others running or stop the caller from alerting, so refusals are collected, not raised.
    """
    text = terminate_reason(reason, detail)
    done: list[str] = []
    failed: dict[str, str] = {}
    for job_id in dict.fromkeys(j for j in job_ids if j):
        try:
            client("batch").terminate_job(jobId=job_id, reason=text)
            done.append(job_id)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            failed[job_id] = f"{error.get('Code', 'error')}: {error.get('Message', '')}".strip()
            logger.error("cannot terminate Batch job %s: %s", job_id, failed[job_id])
    return Terminated(done, failed)
