"""The evaluation's clips on storage, written as they finish, so that an interrupted evaluation resumes.

Per clip, under `{eval_uri}/clips/`: `{arm}-{index:04d}.wav` and then `{arm}-{index:04d}.json` (a `ClipRecord`:
its score and the key of what generated it). The record is written last, so its presence means the clip is
complete. On resume a record counts only when its key matches what this evaluation would generate (same
model, prompt, seed, sampling settings, precision and scoring settings): a clip left by another configuration,
checkpoint or precision is generated again, never mixed in.
"""

from __future__ import annotations

import hashlib
import json
import logging

from pydantic import ValidationError

from aurax_contracts.base import Contract
from aurax_contracts.evaluation import Arm, ClipScore

from .. import storage
from ..audio.config import AnalysisConfig
from ..audio.io import encode_wav
from ..audio.scorer import COMPONENTS, score
from .generate import ClipSpec, GeneratedClip, SamplingSettings

log = logging.getLogger(__name__)

CLIPS_DIR = "clips"


class ClipRecord(Contract):
    key: str
    """sha256 of everything the clip's audio and score depend on (`clip_key`)."""
    clip: ClipScore


def clip_name(arm: Arm, index: int) -> str:
    return f"{CLIPS_DIR}/{arm}-{index:04d}"


def clip_key(arm: Arm, model_identity: str, spec: ClipSpec, settings: SamplingSettings, precision: str,
             score_threshold: float, analysis: AnalysisConfig) -> str:
    """What a clip depends on: the model (checkpoint manifest sha256, or model id and revision), its prompt and
    seed, the sampling settings, the precision it is generated in (resolved: fp32, fp16 or bf16), and how it is
    scored."""
    key = {"arm": arm, "model": model_identity, "index": spec.index, "prompt": spec.prompt, "seed": spec.seed,
           "seconds": settings.seconds, "guidance": settings.guidance_scale, "top_k": settings.top_k,
           "temperature": settings.temperature, "precision": precision, "threshold": score_threshold,
           "analysis": analysis.model_dump(mode="json")}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


class ClipStore:
    def __init__(self, eval_uri: str) -> None:
        # Normalised (a plain path becomes file://...) as storage.list_uris names what it finds.
        self.eval_uri = storage.parse_uri(eval_uri).uri.rstrip("/")

    def finished(self, expected: dict[str, tuple[Arm, int]]) -> dict[tuple[Arm, int], ClipScore]:
        """The clips already written whose key is in `expected` (key -> (arm, index)), with their audio."""
        names = {uri.removeprefix(self.eval_uri + "/") for uri in storage.list_uris(f"{self.eval_uri}/{CLIPS_DIR}")}
        done: dict[tuple[Arm, int], ClipScore] = {}
        stale = 0
        for name in sorted(n for n in names if n.endswith(".json")):
            try:
                record = ClipRecord.model_validate_json(storage.read_bytes(f"{self.eval_uri}/{name}"))
            except ValidationError as exc:
                log.warning("ignoring unreadable clip record %s (%s); the clip is generated again", name,
                            exc.errors()[0]["msg"])
                continue
            where = expected.get(record.key)
            if where is None or (record.clip.arm, record.clip.index) != where or record.clip.audio not in names:
                stale += 1
                continue
            done[where] = record.clip
        if stale:
            log.warning("%d clip record(s) under %s belong to another configuration or checkpoint: not counted",
                        stale, self.eval_uri)
        return done

    def write(self, arm: Arm, clip: GeneratedClip, key: str, threshold: float, analysis: AnalysisConfig,
              attempt: int) -> ClipScore:
        """Score `clip`, write its audio and then its record; returns the score."""
        name = clip_name(arm, clip.spec.index)
        if clip.finite:
            result = score(clip.samples, clip.sample_rate, analysis, threshold=threshold)
            total, authentic, components = result.score, result.authentic, result.components
            tempo, events = result.tempo_bpm, len(result.detection.events)
        else:  # NaN/Inf generation: nothing meaningful to score; counted as not authentic and flagged
            total, authentic, components, tempo, events = 0.0, False, dict.fromkeys(COMPONENTS, 0.0), None, 0
        scored = ClipScore(arm=arm, index=clip.spec.index, prompt=clip.spec.prompt,
                           prompt_set=clip.spec.prompt_set, seed=clip.spec.seed, audio=f"{name}.wav",
                           finite=clip.finite, score=total, authentic=authentic, components=components,
                           tempo_bpm=tempo, log_drum_events=events, attempt=attempt)
        storage.write_bytes(f"{self.eval_uri}/{name}.wav", encode_wav(clip.samples, clip.sample_rate), "audio/wav")
        storage.write_text(f"{self.eval_uri}/{name}.json", ClipRecord(key=key, clip=scored).model_dump_json(),
                           "application/json")
        return scored
