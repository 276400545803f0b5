"""Building the prepared dataset: select clips, decode, encode with the model's EnCodec, write shards, the
selection report and, last, the manifest.

Safe to run again at any point: a complete dataset for the same config is left as it is; anything else found
under the dataset URI (shards of a failed run) is deleted before writing, and a failing run deletes what it
wrote, so the manifest's presence always means "complete".
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
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
from . import download
from .annotations import parse_annotations
from .audio import SKIP_CAUSES, Decoded, Skipped, decode_clip, encode_batch
from .download import RetryPolicy
from .selection import Candidate, Ranking, min_clips, rank, tag_histogram
from .shards import MANIFEST_NAME, Clip, encode_shard, load_manifest, manifest_json, shard_name
from .source import AudioStore, MtatSource

log = logging.getLogger(__name__)

REPORT_NAME = "selection-report.json"
#: Clips per shard: ~1,460 frames x 4 codebooks x 2 bytes = ~12 kB per 29 s clip, so ~3 MB shards.
SHARD_CLIPS = 256
#: Names this job writes under a dataset URI; only these are ever deleted there.
_OWN_NAMES = re.compile(rf"^((train|validation)-\d{{5}}\.npz|{re.escape(REPORT_NAME)}|{re.escape(MANIFEST_NAME)})$")
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


@dataclass
class _Outcome:
    kept: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    shards: list[ShardInfo] = field(default_factory=list)
    seconds: float = 0.0
    codec: dict[str, Any] = field(default_factory=dict)
    """The codec's sample rate, frame rate, codebooks (what the manifest records)."""

    def counts(self) -> dict[str, int]:
        split = Counter(k["split"] for k in self.kept)
        return {"train": split["train"], "validation": split["validation"]}

    def skipped_by_cause(self) -> dict[str, int]:
        causes = Counter(s["cause"] for s in self.skipped)
        return {cause: causes[cause] for cause in SKIP_CAUSES}


def default_cache_uri(dataset_uri: str) -> str | None:
    """On S3, web downloads are cached beside the datasets (`.../datasets/mtat-source`); locally the work
    folder is the cache."""
    if not dataset_uri.startswith("s3://"):
        return None
    parent = dataset_uri.rstrip("/").rsplit("/", 1)[0]
    return join(parent, SOURCE_CACHE_NAME)


def prepare_dataset(config: RunConfig, dataset_uri: str, work_dir: Path, source_uri: str | None = None,
                    options: PrepareOptions | None = None) -> DatasetManifest:
    """Build the dataset at `dataset_uri` (or return the complete one already there for this config)."""
    options = options or PrepareOptions()
    fingerprint = config.dataset_fingerprint()
    existing = _complete_manifest(dataset_uri, fingerprint)
    if existing is not None:
        log.info("%s already holds the complete dataset %s; nothing to do", dataset_uri, fingerprint[:16])
        return existing
    rules = config.dataset
    source = MtatSource(source_uri or rules.source_uri, work_dir, default_cache_uri(dataset_uri), options.retry)
    raw, annotations_uri = source.annotations()
    annotations = parse_annotations(raw, annotations_uri)
    ranking = rank(annotations, rules)
    report = _report_header(config, fingerprint, source.uri, len(annotations.clips), ranking)
    failure_report = source.work_dir / REPORT_NAME
    # Fail before downloading gigabytes when the rules cannot reach the target even if every clip decodes.
    _check_count(len(ranking.candidates), rules, "eligible", report, failure_report)
    _delete_own_objects(dataset_uri)
    written: list[str] = []
    try:
        outcome = _encode_all(config, ranking, source, dataset_uri, options, written.append)
        report.update(_report_outcome(outcome, ranking))
        _check_outcome(outcome, rules, report, failure_report)
        report_uri = join(dataset_uri, REPORT_NAME)
        written.append(report_uri)
        storage.write_text(report_uri, json.dumps(report, indent=1), "application/json")
        manifest = DatasetManifest(
            fingerprint=fingerprint, codec_model_id=config.model.model_id, **outcome.codec, counts=outcome.counts(),
            skipped=outcome.skipped_by_cause(), total_seconds=round(outcome.seconds, 3), shards=outcome.shards,
            selection_report=REPORT_NAME, code_version=code_version(), created_at=datetime.now(UTC))
        storage.write_text(join(dataset_uri, MANIFEST_NAME), manifest_json(manifest), "application/json")
    except BaseException:
        for uri in written:
            try:
                storage.delete(uri)
            except storage.StorageError as exc:  # cleaning up must not hide the real error
                log.warning("could not delete partial output %s: %s", uri, exc)
        raise
    log.info("dataset %s complete: %s clips, %d skipped", dataset_uri, outcome.counts(), len(outcome.skipped))
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
        try:
            intact = hashlib.sha256(storage.read_bytes(join(dataset_uri, shard.name))).hexdigest() == shard.sha256
        except storage.StorageError:
            intact = False
        if not intact:
            log.warning("rebuilding: shard %s of %s is missing or does not match its manifest hash", shard.name,
                        dataset_uri)
            return None
    return manifest


def _delete_own_objects(dataset_uri: str) -> None:
    """Remove a previous attempt's output (only names this job writes, only directly under the dataset URI),
    manifest first so that nothing is ever taken for complete."""
    root = storage.parse_uri(dataset_uri).uri.rstrip("/") + "/"
    own = [uri for uri in storage.list_uris(dataset_uri) if _OWN_NAMES.match(uri.removeprefix(root))]
    own.sort(key=lambda uri: not uri.endswith("/" + MANIFEST_NAME))
    for uri in own:
        log.info("deleting %s from an earlier attempt", uri)
        storage.delete(uri)


def _encode_all(config: RunConfig, ranking: Ranking, source: MtatSource, dataset_uri: str,
                options: PrepareOptions, on_write: Callable[[str], None]) -> _Outcome:
    import torch

    from ..model import codec_info, load_musicgen

    rules = config.dataset
    device = torch.device(options.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    batch_size = options.batch_size or (8 if device.type == "cuda" else 4)
    model = load_musicgen(config.model.model_id)
    model.audio_encoder.to(device)
    info = codec_info(model)
    hop = round(info.sample_rate / info.frame_rate)
    log.info("encoding up to %d clips with %s's EnCodec on %s, %d per batch", rules.target_clips,
             config.model.model_id, device, batch_size)
    outcome = _Outcome(skipped=[{"clip_id": c.clip_id, "mp3_path": c.mp3_path, "cause": "known-broken",
                                 "detail": "listed as broken in MagnaTagATune"} for c in ranking.known_broken])
    writers = {split: _ShardWriter(dataset_uri, split, options.shard_clips, outcome.shards, on_write)
               for split in ("train", "validation")}
    with closing(source.audio()) as audio, ThreadPoolExecutor(options.decode_workers) as pool:
        log.info("reading audio from %s", audio.description)
        for batch in _decoded_batches(pool, audio, ranking.candidates, batch_size, info.sample_rate,
                                      rules.min_clip_seconds):
            usable: list[tuple[Candidate, Decoded]] = []
            for candidate, result in batch:
                if len(outcome.kept) + len(usable) >= rules.target_clips:
                    break
                if isinstance(result, Skipped):
                    outcome.skipped.append({"clip_id": candidate.clip.clip_id, "mp3_path": candidate.clip.mp3_path,
                                            "cause": result.cause, "detail": result.detail})
                else:
                    usable.append((candidate, result))
            if usable:
                codes = encode_batch(model, [d.waveform for _, d in usable], hop, device)
                for (candidate, decoded), clip_codes in zip(usable, codes, strict=True):
                    writers[candidate.split].add(Clip(candidate.clip.clip_id, candidate.prompt, clip_codes))
                    outcome.seconds += decoded.seconds
                    outcome.kept.append(_kept_entry(candidate, decoded, clip_codes.shape[1]))
            if len(outcome.kept) >= rules.target_clips:
                break
            if len(outcome.kept) % 512 < len(usable):
                log.info("%d of %d clips encoded, %d skipped", len(outcome.kept), rules.target_clips,
                         len(outcome.skipped))
    for writer in writers.values():
        writer.flush()
    outcome.codec = {"sample_rate": info.sample_rate, "frame_rate": info.frame_rate,
                     "num_codebooks": info.num_codebooks, "codebook_size": info.codebook_size}
    return outcome


def _decoded_batches(pool: ThreadPoolExecutor, audio: AudioStore, candidates: Sequence[Candidate], batch_size: int,
                     sample_rate: int, min_seconds: float) -> Iterator[list[tuple[Candidate, Decoded | Skipped]]]:
    """Candidates in rank order, read and decoded on worker threads one batch ahead of the encoder."""

    def load(candidate: Candidate) -> Decoded | Skipped:
        try:
            data = audio.read(candidate.clip.mp3_path)
        except (BadZipFile, ZlibError, EOFError) as exc:  # CRC mismatch or damaged deflate stream
            return Skipped("corrupt", f"damaged in the archive: {exc}")
        if data is None:
            return Skipped("missing", f"not in {audio.description}")
        return decode_clip(data, sample_rate, min_seconds)

    def submit(batch: tuple[Candidate, ...]) -> list[tuple[Candidate, Future[Decoded | Skipped]]]:
        return [(c, pool.submit(load, c)) for c in batch]

    remaining = iter(candidates)
    batches = iter(lambda: tuple(islice(remaining, batch_size)), ())  # itertools.batched is Python 3.12+
    ahead = submit(next(batches, ()))
    try:
        while ahead:
            current = ahead
            ahead = submit(next(batches, ()))
            yield [(c, future.result()) for c, future in current]
    finally:
        for _, future in ahead:
            future.cancel()


class _ShardWriter:
    def __init__(self, dataset_uri: str, split: str, shard_clips: int, shards: list[ShardInfo],
                 on_write: Callable[[str], None]) -> None:
        self._uri, self._split, self._size = dataset_uri, split, shard_clips
        self._shards, self._on_write = shards, on_write
        self._clips: list[Clip] = []
        self._index = 0

    def add(self, clip: Clip) -> None:
        self._clips.append(clip)
        if len(self._clips) >= self._size:
            self.flush()

    def flush(self) -> None:
        if not self._clips:
            return
        data = encode_shard(self._clips)
        name = shard_name(self._split, self._index)
        uri = join(self._uri, name)
        self._on_write(uri)
        storage.write_bytes(uri, data)
        self._shards.append(ShardInfo(name=name, split=self._split, clips=len(self._clips),  # type: ignore[arg-type]
                                      frames=sum(c.codes.shape[1] for c in self._clips),
                                      sha256=hashlib.sha256(data).hexdigest(), bytes=len(data)))
        self._clips = []
        self._index += 1


def _kept_entry(candidate: Candidate, decoded: Decoded, frames: int) -> dict[str, Any]:
    return {"clip_id": candidate.clip.clip_id, "mp3_path": candidate.clip.mp3_path, "split": candidate.split,
            "score": candidate.score, "matched_tags": list(candidate.matched_tags), "prompt": candidate.prompt,
            "seconds": round(decoded.seconds, 3), "frames": frames}


def _report_header(config: RunConfig, fingerprint: str, source_uri: str, annotated: int,
                   ranking: Ranking) -> dict[str, Any]:
    return {
        "fingerprint": fingerprint, "source": source_uri, "rules": config.dataset.model_dump(mode="json"),
        "codec_model_id": config.model.model_id, "annotated_clips": annotated,
        "eligible_clips": len(ranking.candidates),
        "eligible_by_split": dict(Counter(c.split for c in ranking.candidates)),
        "not_eligible": {**ranking.rejected, "known-broken": len(ranking.known_broken)},
        "tag_histogram_eligible": tag_histogram([c.clip for c in ranking.candidates]),
    }


def _report_outcome(outcome: _Outcome, ranking: Ranking) -> dict[str, Any]:
    by_id = {c.clip.clip_id: c.clip for c in ranking.candidates}
    return {
        "codec": outcome.codec, "counts": outcome.counts(), "skipped_by_cause": outcome.skipped_by_cause(),
        "total_seconds": round(outcome.seconds, 3),
        "tag_histogram_selected": tag_histogram([by_id[k["clip_id"]] for k in outcome.kept]),
        "kept": outcome.kept, "skipped": outcome.skipped,
    }


def _check_count(count: int, rules: DatasetSelection, what: str, report: dict[str, Any], report_path: Path) -> None:
    floor = min_clips(rules)
    if count >= floor:
        return
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(report, indent=1))
    raise InputError(
        f"only {count} {what} clips for a target of {rules.target_clips} (tolerance {rules.target_tolerance:.0%}, "
        f"so at least {floor} needed); not eligible: {report['not_eligible']}; "
        f"skipped: {report.get('skipped_by_cause', {})}. Fix: lower dataset.target_clips or dataset.min_score, "
        f"or widen dataset.include_tags. Nothing was written to the dataset; the full report is {report_path}")


def _check_outcome(outcome: _Outcome, rules: DatasetSelection, report: dict[str, Any], report_path: Path) -> None:
    _check_count(len(outcome.kept), rules, "usable", report, report_path)
    counts = outcome.counts()
    for split, folders in (("train", "every folder not in validation_folders or excluded_folders"),
                           ("validation", f"validation_folders {rules.validation_folders}")):
        if counts[split] == 0:
            report_path.parent.mkdir(parents=True, exist_ok=True)
            report_path.write_text(json.dumps(report, indent=1))
            raise InputError(f"no {split} clip was selected from {folders}; training needs both splits. Fix: "
                             f"change dataset.validation_folders or the tag rules. Full report: {report_path}")
