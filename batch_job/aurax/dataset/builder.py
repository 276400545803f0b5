"""Building the prepared dataset: select clips, decode, encode with the model's EnCodec, write shards, the
selection report and, last, the manifest.

Safe to run again at any point: a complete dataset for the same config is left as it is. An attempt that was
interrupted (SIGTERM, spot notice) or died keeps the shards it wrote and its progress record
(`progress.PROGRESS_NAME`), and the next attempt resumes from them. Anything else of ours found under the
dataset URI (shards not in a usable progress record) is deleted before writing; a run that proves the config
cannot be met deletes what it wrote. The manifest's presence always means "complete".
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any
from zipfile import BadZipFile
from zlib import error as ZlibError

from aurax_contracts import DatasetManifest, RunConfig, ShardInfo
from aurax_contracts.config import DatasetSelection
from aurax_contracts.layout import join

from .. import storage
from ..errors import InputError
from ..version import code_version
from . import download, faults, stopping
from .audio import SKIP_CAUSES, Decoded, Skipped, decode_clip, encode_batch
from .download import RetryPolicy
from .plan import DatasetPlan, TargetUnreachable, make_plan
from .progress import PROGRESS_NAME, KeptClip, PrepareProgress, SkippedClip, load_progress, save_progress
from .selection import Candidate, Ranking, describe_floor, min_clips, rank, tag_histogram, wanted_clips
from .shards import MANIFEST_NAME, Clip, encode_shard, load_manifest, manifest_json, shard_intact, shard_name
from .source import AudioStore, MtatSource
from .stopping import StopCheck

log = logging.getLogger(__name__)

REPORT_NAME = "selection-report.json"
#: Clips per shard: ~1,460 frames x 4 codebooks x 2 bytes = ~12 kB per 29 s clip, so ~3 MB shards.
SHARD_CLIPS = 256
#: Names this job writes under a dataset URI; only these are ever deleted there.
_OWN_NAMES = re.compile(rf"^((train|validation)-\d{{5}}\.npz|{re.escape(REPORT_NAME)}|{re.escape(MANIFEST_NAME)}|"
                        rf"{re.escape(PROGRESS_NAME)})$")
#: Where web downloads are cached next to the datasets on S3 (not a fingerprint: has non-hex letters).
SOURCE_CACHE_NAME = "mtat-source"


@dataclass(frozen=True)
class PrepareOptions:
    device: str | None = None
    """torch device for EnCodec; default CUDA when present, else CPU."""
    batch_size: int | None = None
    """Clips per EnCodec batch; default 8 on a GPU (fits a T4 with the 32 kHz codec), 4 on CPU."""
    shard_clips: int = SHARD_CLIPS
    decode_workers: int = field(default_factory=lambda: min(4, os.cpu_count() or 1))
    retry: RetryPolicy = field(default_factory=lambda: download.DEFAULT_RETRY)
    stop: StopCheck = stopping.never
    """Asked between download chunks and encoded batches; when it says stop, the job keeps what it finished
    and raises `stopping.Interrupted`."""


@dataclass
class _State:
    """The clips and shards of this dataset so far (restored from a progress record on resume)."""

    fingerprint: str
    shard_clips: int
    kept: list[KeptClip] = field(default_factory=list)
    """Clips in written shards."""
    skipped: list[SkippedClip] = field(default_factory=list)
    shards: list[ShardInfo] = field(default_factory=list)
    resume_rank: int = 0

    @classmethod
    def resumed(cls, progress: PrepareProgress) -> _State:
        return cls(progress.fingerprint, progress.shard_clips, list(progress.kept), list(progress.skipped),
                   list(progress.shards), progress.resume_rank)

    def progress(self) -> PrepareProgress:
        skipped = [s for s in self.skipped if s.rank is not None and s.rank < self.resume_rank]
        return PrepareProgress(fingerprint=self.fingerprint, shard_clips=self.shard_clips,
                               resume_rank=self.resume_rank, shards=self.shards, kept=self.kept, skipped=skipped)

    def counts(self) -> dict[str, int]:
        split = Counter(k.split for k in self.kept)
        return {"train": split["train"], "validation": split["validation"]}

    def skipped_by_cause(self) -> dict[str, int]:
        causes = Counter(s.cause for s in self.skipped)
        return {cause: causes[cause] for cause in SKIP_CAUSES}

    def total_seconds(self) -> float:
        return sum(k.seconds for k in sorted(self.kept, key=lambda k: k.rank))


def default_cache_uri(dataset_uri: str) -> str | None:
    """On S3, web downloads are cached beside the datasets (`.../datasets/mtat-source`); locally the work
    folder is the cache."""
    if not dataset_uri.startswith("s3://"):
        return None
    parent = dataset_uri.rstrip("/").rsplit("/", 1)[0]
    return join(parent, SOURCE_CACHE_NAME)


def prepare_dataset(config: RunConfig, dataset_uri: str, work_dir: Path, source_uri: str | None = None,
                    options: PrepareOptions | None = None) -> DatasetManifest:
    """Build the dataset at `dataset_uri` (or return the complete one already there for this config).

    Raises `TargetUnreachable` (exit 64) before downloading any audio when the annotations cannot meet the
    config, `InputError` (65) for bad input or too few usable clips, `stopping.Interrupted` when
    `options.stop` asked to stop (the shards written so far are kept for the next attempt).
    """
    options = options or PrepareOptions()
    fingerprint = config.dataset_fingerprint()
    existing = _complete_manifest(dataset_uri, fingerprint)
    if existing is not None:
        log.info("%s already holds the complete dataset %s; nothing to do", dataset_uri, fingerprint[:16])
        return existing
    rules = config.dataset
    source = MtatSource(source_uri or rules.source_uri, work_dir, default_cache_uri(dataset_uri), options.retry,
                        options.stop)
    annotations, annotations_uri = source.annotations()
    ranking = rank(annotations, rules)
    plan = make_plan(annotations, rules, annotations_uri, ranking)
    report = _report_header(config, fingerprint, source.uri, plan, ranking)
    failure_report = source.work_dir / REPORT_NAME
    # Fail before downloading gigabytes when the rules cannot reach the target even if every clip decodes.
    _require_plan(plan, report, failure_report)
    progress = load_progress(dataset_uri, fingerprint, options.shard_clips)
    state = _State.resumed(progress) if progress else _State(fingerprint, options.shard_clips)
    if progress:
        log.info("resuming: %d clips in %d shards already written, from rank %d", len(state.kept),
                 len(state.shards), state.resume_rank)
    _delete_own_objects(dataset_uri, keep={s.name for s in state.shards} | ({PROGRESS_NAME} if progress else set()))
    try:
        codec = _encode_all(config, ranking, source, dataset_uri, options, state)
        kept = sorted(state.kept, key=lambda k: k.rank)
        report.update(_report_outcome(state, kept, codec, ranking))
        _check_outcome(state, rules, report, failure_report)
    except InputError:
        # Too few usable clips: a retry would fail the same way, so nothing is kept that looks like progress.
        _delete_own_objects(dataset_uri, keep=set())
        raise
    storage.write_text(join(dataset_uri, REPORT_NAME), json.dumps(report, indent=1), "application/json")
    manifest = DatasetManifest(
        fingerprint=fingerprint, codec_model_id=config.model.model_id, **codec, counts=state.counts(),
        skipped=state.skipped_by_cause(), total_seconds=round(state.total_seconds(), 3), shards=state.shards,
        selection_report=REPORT_NAME, code_version=code_version(), created_at=datetime.now(UTC))
    storage.write_text(join(dataset_uri, MANIFEST_NAME), manifest_json(manifest), "application/json")
    storage.delete(join(dataset_uri, PROGRESS_NAME))
    log.info("dataset %s complete: %s clips, %d skipped", dataset_uri, state.counts(), len(state.skipped))
    return manifest


def _complete_manifest(dataset_uri: str, fingerprint: str) -> DatasetManifest | None:
    if not storage.exists(join(dataset_uri, MANIFEST_NAME)):
        return None
    try:
        manifest, _ = load_manifest(dataset_uri)
    except InputError as exc:
        log.warning("rebuilding: %s", exc)
        return None
    if manifest.fingerprint != fingerprint:
        log.warning("rebuilding: %s holds dataset %s, not %s", dataset_uri, manifest.fingerprint[:16],
                    fingerprint[:16])
        return None
    # A shard deleted or damaged after the fact would otherwise fail every training run while this job,
    # asked to fix it, reported "nothing to do". Reading them all costs seconds (~100 MB for 8,000 clips).
    for shard in manifest.shards:
        if not shard_intact(dataset_uri, shard):
            log.warning("rebuilding: shard %s of %s is missing or does not match its manifest hash", shard.name,
                        dataset_uri)
            return None
    return manifest


def _delete_own_objects(dataset_uri: str, keep: set[str]) -> None:
    """Remove what earlier attempts wrote (only names this job writes, only directly under the dataset URI)
    except the names in `keep`; the manifest first, so that nothing is ever taken for complete."""
    root = storage.parse_uri(dataset_uri).uri.rstrip("/") + "/"
    own = [uri for uri in storage.list_uris(dataset_uri)
           if _OWN_NAMES.match(name := uri.removeprefix(root)) and name not in keep]
    own.sort(key=lambda uri: not uri.endswith("/" + MANIFEST_NAME))
    for uri in own:
        log.info("deleting %s from an earlier attempt", uri)
        storage.delete(uri)


def _encode_all(config: RunConfig, ranking: Ranking, source: MtatSource, dataset_uri: str,
                options: PrepareOptions, state: _State) -> dict[str, Any]:
    """Encode ranked candidates from `state.resume_rank` on until the target is reached or they run out,
    writing shards and progress as it goes; returns the codec's figures for the manifest. On a stop request,
    writes the clips encoded so far and raises `stopping.Interrupted`."""
    import torch

    from ..model import codec_info, load_musicgen

    rules = config.dataset
    device = torch.device(options.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    batch_size = options.batch_size or (8 if device.type == "cuda" else 4)
    model = load_musicgen(config.model.model_id)
    model.audio_encoder.to(device)
    info = codec_info(model)
    hop = round(info.sample_rate / info.frame_rate)
    wanted = wanted_clips(rules, len(ranking.candidates))
    state.skipped = [*(SkippedClip(rank=None, clip_id=c.clip_id, mp3_path=c.mp3_path, cause="known-broken",
                                   detail="listed as broken in MagnaTagATune") for c in ranking.known_broken),
                     *(s for s in state.skipped if s.rank is not None)]
    done = {k.clip_id for k in state.kept}
    todo = [(position, c) for position, c in enumerate(ranking.candidates)
            if position >= state.resume_rank and c.clip.clip_id not in done]
    log.info("encoding up to %d clips (%d already done) with %s's EnCodec on %s, %d per batch", wanted,
             len(state.kept), config.model.model_id, device, batch_size)
    shards = _Shards(dataset_uri, state)
    with closing(source.audio()) as audio, ThreadPoolExecutor(options.decode_workers) as pool:
        log.info("reading audio from %s", audio.description)
        for batch in _decoded_batches(pool, audio, todo, batch_size, info.sample_rate, rules.min_clip_seconds):
            usable: list[tuple[int, Candidate, Decoded]] = []
            for position, candidate, result in batch:
                if shards.count() + len(usable) >= wanted:
                    break
                shards.processed = position + 1
                if isinstance(result, Skipped):
                    state.skipped.append(SkippedClip(rank=position, clip_id=candidate.clip.clip_id,
                                                     mp3_path=candidate.clip.mp3_path, cause=result.cause,
                                                     detail=result.detail))
                else:
                    usable.append((position, candidate, result))
            if usable:
                codes = encode_batch(model, [d.waveform for _, _, d in usable], hop, device)
                for (position, candidate, decoded), clip_codes in zip(usable, codes, strict=True):
                    shards.add(_kept(position, candidate, decoded, clip_codes.shape[1]),
                               Clip(candidate.clip.clip_id, candidate.prompt, clip_codes))
            faults.after_batch()
            if shards.count() >= wanted:
                break
            if options.stop():
                shards.flush_all()
                raise stopping.Interrupted(f"stop requested after {shards.count()} of {wanted} clips; "
                                           f"{len(state.shards)} shards and the progress record are kept")
            if shards.count() % 512 < len(usable):
                log.info("%d of %d clips encoded, %d skipped", shards.count(), wanted, len(state.skipped))
    shards.flush_all()
    return {"sample_rate": info.sample_rate, "frame_rate": info.frame_rate, "num_codebooks": info.num_codebooks,
            "codebook_size": info.codebook_size}


def _decoded_batches(pool: ThreadPoolExecutor, audio: AudioStore, candidates: Sequence[tuple[int, Candidate]],
                     batch_size: int, sample_rate: int,
                     min_seconds: float) -> Iterator[list[tuple[int, Candidate, Decoded | Skipped]]]:
    """(rank, candidate) pairs in rank order, read and decoded on worker threads one batch ahead of the
    encoder."""

    def load(candidate: Candidate) -> Decoded | Skipped:
        try:
            data = audio.read(candidate.clip.mp3_path)
        except (BadZipFile, ZlibError, EOFError) as exc:  # CRC mismatch or damaged deflate stream
            return Skipped("corrupt", f"damaged in the archive: {exc}")
        if data is None:
            return Skipped("missing", f"not in {audio.description}")
        return decode_clip(data, sample_rate, min_seconds)

    def submit(batch: tuple[tuple[int, Candidate], ...]) -> list[tuple[int, Candidate, Future[Decoded | Skipped]]]:
        return [(position, c, pool.submit(load, c)) for position, c in batch]

    remaining = iter(candidates)
    batches = iter(lambda: tuple(islice(remaining, batch_size)), ())  # itertools.batched is Python 3.12+
    ahead = submit(next(batches, ()))
    try:
        while ahead:
            current = ahead
            ahead = submit(next(batches, ()))
            yield [(position, c, future.result()) for position, c, future in current]
    finally:
        for _, _, future in ahead:
            future.cancel()


class _Shards:
    """One buffer per split; a full buffer becomes a shard, then the progress record is rewritten."""

    def __init__(self, dataset_uri: str, state: _State) -> None:
        self._uri, self._state = dataset_uri, state
        self._buffers: dict[str, list[tuple[KeptClip, Clip]]] = {"train": [], "validation": []}
        self._next_index = {split: sum(s.split == split for s in state.shards) for split in self._buffers}
        self.processed = state.resume_rank
        """Rank after the last candidate looked at."""

    def count(self) -> int:
        """Clips written or waiting in a buffer."""
        return len(self._state.kept) + sum(len(b) for b in self._buffers.values())

    def add(self, kept: KeptClip, clip: Clip) -> None:
        buffer = self._buffers[kept.split]
        buffer.append((kept, clip))
        if len(buffer) >= self._state.shard_clips:
            self._write(kept.split)
            self._save_progress()

    def flush_all(self) -> None:
        """Write every buffered clip (the last shards may be short) and the progress record."""
        for split in self._buffers:
            self._write(split)
        self._save_progress()

    def _write(self, split: str) -> None:
        buffer = self._buffers[split]
        if not buffer:
            return
        clips = [clip for _, clip in buffer]
        data = encode_shard(clips)
        name = shard_name(split, self._next_index[split])
        storage.write_bytes(join(self._uri, name), data)
        self._state.shards.append(ShardInfo(name=name, split=split, clips=len(clips),  # type: ignore[arg-type]
                                            frames=sum(c.codes.shape[1] for c in clips),
                                            sha256=hashlib.sha256(data).hexdigest(), bytes=len(data)))
        self._state.kept.extend(kept for kept, _ in buffer)
        self._next_index[split] += 1
        buffer.clear()
        faults.after_shard(len(self._state.shards))

    def _save_progress(self) -> None:
        waiting = [kept.rank for buffer in self._buffers.values() for kept, _ in buffer]
        self._state.resume_rank = min(waiting, default=self.processed)
        save_progress(self._uri, self._state.progress())


def _kept(position: int, candidate: Candidate, decoded: Decoded, frames: int) -> KeptClip:
    return KeptClip(rank=position, clip_id=candidate.clip.clip_id, mp3_path=candidate.clip.mp3_path,
                    split=candidate.split, score=float(candidate.score), matched_tags=list(candidate.matched_tags),
                    prompt=candidate.prompt, seconds=decoded.seconds, frames=frames)


def _report_header(config: RunConfig, fingerprint: str, source_uri: str, plan: DatasetPlan,
                   ranking: Ranking) -> dict[str, Any]:
    return {
        "fingerprint": fingerprint, "source": source_uri, "rules": config.dataset.model_dump(mode="json"),
        "codec_model_id": config.model.model_id, "annotated_clips": plan.clips,
        "eligible_clips": len(ranking.candidates), "eligible_by_split": plan.eligible,
        "not_eligible": {**ranking.rejected, "known-broken": len(ranking.known_broken)},
        "tag_histogram_eligible": tag_histogram([c.clip for c in ranking.candidates]),
        "plan": plan.to_json(),
    }


def _report_outcome(state: _State, kept: list[KeptClip], codec: dict[str, Any], ranking: Ranking) -> dict[str, Any]:
    by_id = {c.clip.clip_id: c.clip for c in ranking.candidates}
    skipped = sorted(state.skipped, key=lambda s: -1 if s.rank is None else s.rank)
    return {
        "codec": codec, "counts": state.counts(), "skipped_by_cause": state.skipped_by_cause(),
        "total_seconds": round(state.total_seconds(), 3),
        "tag_histogram_selected": tag_histogram([by_id[k.clip_id] for k in kept]),
        "kept": [k.report_entry() for k in kept], "skipped": [s.report_entry() for s in skipped],
    }


def _write_failure_report(report: dict[str, Any], report_path: Path) -> None:
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(report, indent=1))


def _require_plan(plan: DatasetPlan, report: dict[str, Any], report_path: Path) -> None:
    try:
        plan.require_met()
    except TargetUnreachable as exc:
        _write_failure_report(report, report_path)
        raise TargetUnreachable(exc.what, [*exc.problems, f"nothing was downloaded or written to the dataset; "
                                           f"the full selection report is {report_path}"]) from None


def _check_outcome(state: _State, rules: DatasetSelection, report: dict[str, Any], report_path: Path) -> None:
    usable, floor = len(state.kept), min_clips(rules)
    if usable < floor:
        _write_failure_report(report, report_path)
        raise InputError(
            f"only {usable} usable clips, fewer than the {floor} needed ({describe_floor(rules)}); skipped: "
            f"{state.skipped_by_cause()}. Fix: check the source's audio (the report lists each skipped clip and "
            f"why), or lower the floor. Nothing was kept in the dataset; the full report is {report_path}")
    counts = state.counts()
    for split, folders in (("train", "every folder not in validation_folders or excluded_folders"),
                           ("validation", f"validation_folders {rules.validation_folders}")):
        if counts[split] == 0:
            _write_failure_report(report, report_path)
            raise InputError(f"no {split} clip was usable from {folders}; training needs both splits. Fix: "
                             f"change dataset.validation_folders or the tag rules. Full report: {report_path}")
