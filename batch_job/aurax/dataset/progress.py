"""What an unfinished `aurax job prepare` has done, so that the next attempt resumes instead of starting over.

`prepare-progress.json`, beside the shards under the dataset URI, is rewritten after every shard (after the
shard itself, so a shard it lists always exists) and when the job is interrupted. It records the shards
written, the clips in them and the clips skipped, and `resume_rank`: every ranked candidate before it is
either in a listed shard or skipped. A resumed job verifies each listed shard's sha256, then carries on from
`resume_rank`, passing over candidates already in a shard. Ranking and decoding are deterministic, so each
split's clips come out in the same order as in an uninterrupted run; only the shard boundaries may differ.
The manifest, written last, still means "complete"; the progress record is deleted after it.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import ValidationError

from aurax_contracts import ShardInfo
from aurax_contracts.base import Contract
from aurax_contracts.layout import join

from .. import storage
from .shards import shard_intact

log = logging.getLogger(__name__)

PROGRESS_NAME = "prepare-progress.json"


class KeptClip(Contract):
    rank: int
    """Position in the ranking (0 = best)."""
    clip_id: int
    mp3_path: str
    split: Literal["train", "validation"]
    score: float
    matched_tags: list[str]
    prompt: str
    seconds: float
    """Decoded duration, unrounded (summed in rank order for the manifest's total)."""
    frames: int

    def report_entry(self) -> dict[str, Any]:
        return {**self.model_dump(exclude={"rank"}), "seconds": round(self.seconds, 3)}


class SkippedClip(Contract):
    rank: int | None
    """Position in the ranking; None for a known-broken clip (never ranked)."""
    clip_id: int
    mp3_path: str
    cause: str
    detail: str

    def report_entry(self) -> dict[str, Any]:
        return self.model_dump(exclude={"rank"})


class PrepareProgress(Contract):
    fingerprint: str
    shard_clips: int
    resume_rank: int
    shards: list[ShardInfo]
    kept: list[KeptClip]
    """Clips in the listed shards."""
    skipped: list[SkippedClip]
    """Ranked clips before `resume_rank` that could not be used."""


def load_progress(dataset_uri: str, fingerprint: str, shard_clips: int) -> PrepareProgress | None:
    """The progress of an earlier attempt at this dataset, when it is usable: same fingerprint and shard size,
    and every shard it lists present with its recorded sha256. Otherwise None (the job starts over)."""
    uri = join(dataset_uri, PROGRESS_NAME)
    if not storage.exists(uri):
        return None
    try:
        progress = PrepareProgress.model_validate_json(storage.read_bytes(uri))
    except (ValidationError, storage.StorageError) as exc:
        log.warning("starting over: %s is unreadable (%s)", uri, exc)
        return None
    if (progress.fingerprint, progress.shard_clips) != (fingerprint, shard_clips):
        log.warning("starting over: %s is from dataset %s with %d clips per shard", uri, progress.fingerprint[:16],
                    progress.shard_clips)
        return None
    for shard in progress.shards:
        if not shard_intact(dataset_uri, shard):
            log.warning("starting over: shard %s listed in %s is missing or damaged", shard.name, uri)
            return None
    return progress


def save_progress(dataset_uri: str, progress: PrepareProgress) -> None:
    storage.write_text(join(dataset_uri, PROGRESS_NAME), progress.model_dump_json(), "application/json")
