"""Finding a run's Batch jobs: by job name prefix `<run_id>-` in the project's queues, plus any job ids
the monitor recorded (Batch forgets finished jobs after some days; the ledger keeps their attempts).

The state machine tags every job `aurax:run-id`; the tag settles whether a job whose name merely starts
with the prefix (run `a-1` vs run `a-1-retry`) belongs to the run."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from aurax_contracts import AbortReason
from aurax_contracts.exit_codes import terminate_reason

from .aws import client

RUN_ID_TAG = "aurax:run-id"
ACTIVE_JOB_STATUSES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")
_DESCRIBE_BATCH = 100  # describe_jobs accepts at most 100 ids


def job_name_prefix(run_id: str) -> str:
    return f"{run_id}-"


def belongs_to_run(job: Mapping[str, Any], run_id: str) -> bool:
    """A job description (or a Batch event's detail) is the run's by its tag, else by its name."""
    tags = job.get("tags") or {}
    if RUN_ID_TAG in tags:
        return tags[RUN_ID_TAG] == run_id
    return str(job.get("jobName", "")).startswith(job_name_prefix(run_id))


def find_jobs(run_id: str, queues: Iterable[str], known_ids: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Full descriptions of the run's jobs, each once."""
    batch = client("batch")
    ids: list[str] = [i for i in dict.fromkeys(known_ids) if i]
    prefix = job_name_prefix(run_id)
    for queue in queues:
        paginator = batch.get_paginator("list_jobs")
        # With filters Batch lists every status, so one listing finds running and finished jobs alike.
        for page in paginator.paginate(jobQueue=queue, filters=[{"name": "JOB_NAME", "values": [prefix + "*"]}]):
            for summary in page.get("jobSummaryList", []):
                if summary["jobName"].startswith(prefix) and summary["jobId"] not in ids:
                    ids.append(summary["jobId"])
    recorded = set(known_ids)
    described: list[dict[str, Any]] = []
    for i in range(0, len(ids), _DESCRIBE_BATCH):
        described.extend(job for job in batch.describe_jobs(jobs=ids[i:i + _DESCRIBE_BATCH]).get("jobs", [])
                         if job["jobId"] in recorded or belongs_to_run(job, run_id))
    return described


def terminate(job_ids: Iterable[str], reason: AbortReason, detail: str) -> list[str]:
    """Terminate jobs with a reason Batch's retry strategy recognises (never retried). Returns the ids."""
    text = terminate_reason(reason, detail)
    done = []
    for job_id in dict.fromkeys(job_ids):
        client("batch").terminate_job(jobId=job_id, reason=text)
        done.append(job_id)
    return done
