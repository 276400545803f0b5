"""Atomic, verified checkpoints on S3 or a local folder, and resuming from the newest good one.

Layout under the checkpoint URI:

    step-000001234/           mid-epoch checkpoint after 1234 optimizer steps
        model.safetensors     trainable tensors only (the frozen text encoder and codec come from the hub)
        trainer_state.pt      optimizer, loss scaler, overflow counter (the data position, the schedule and the
                              plan are in the manifest; dropout draws from generators seeded by data position)
        run_config.json       the config that trained it (to name what differs on a mismatch)
        manifest.json         `CheckpointManifest`, written after the files: its sha256s make them a unit
    step-000001250-end/       the epoch-end checkpoint (validation loss in the manifest)
    latest                    name of the newest committed checkpoint (for people and tools)

Commit order: files, then the manifest, then `latest`; a save killed at any point leaves either a directory
without a manifest (ignored) or one whose files do not match it (skipped with a warning). Resume trusts
manifests, not the pointer, so a kill between the manifest and the pointer loses nothing. The newest
`keep_last` committed checkpoints are kept.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from safetensors.torch import load_file, save_file
from transformers import MusicgenForConditionalGeneration

from aurax_contracts import CheckpointFile, CheckpointManifest, ContractError, RunConfig
from aurax_contracts.artifacts import LrSchedule, TrainingPlan
from aurax_contracts.config import RESUMABLE_CHANGES
from aurax_contracts.layout import join

from .. import storage
from ..errors import InputError
from ..model import load_configured_musicgen
from ..version import code_version
from . import faults
from .trainable import load_trainable_state, make_trainable, merge_lora

log = logging.getLogger(__name__)

MODEL_FILE = "model.safetensors"
STATE_FILE = "trainer_state.pt"
CONFIG_FILE = "run_config.json"
MANIFEST_FILE = "manifest.json"
LATEST_POINTER = "latest"
NAME_PREFIX = "step-"
RESTORE_DIR = "restore"
_HASH_CHUNK = 8 << 20


@dataclass(frozen=True)
class Position:
    """Where training stands: `step` optimizer steps done; `index_in_epoch` examples of epoch `epoch`'s
    permutation consumed; `epoch_complete` once that epoch's validation is done too."""

    step: int = 0
    epoch: int = 0
    index_in_epoch: int = 0
    epoch_complete: bool = False

    @property
    def next_epoch(self) -> int:
        """The epoch training continues in."""
        return self.epoch + 1 if self.epoch_complete else self.epoch


def checkpoint_name(position: Position) -> str:
    """Names sort in training order (zero-padded step; the epoch-end save sorts after a save at the same step)."""
    return f"{NAME_PREFIX}{position.step:09d}{'-end' if position.epoch_complete else ''}"


@dataclass
class CheckpointContent:
    """What one checkpoint holds, in memory."""

    tensors: dict[str, torch.Tensor]
    trainer_state: dict[str, Any]
    """optimizer, scaler (or None), overflow_run."""
    config: RunConfig


@dataclass(frozen=True)
class RunRecord:
    """What every checkpoint of the run states besides its position (the manifest's provenance fields)."""

    schedule: LrSchedule | None = None
    plan: TrainingPlan | None = None
    baseline_val_loss: float | None = None
    model_revision: str | None = None


@dataclass(frozen=True)
class SavedCheckpoint:
    name: str
    uri: str
    manifest: CheckpointManifest
    manifest_sha256: str
    bytes: int
    seconds: float


@dataclass(frozen=True)
class VerifiedCheckpoint:
    name: str
    uri: str
    manifest: CheckpointManifest
    manifest_sha256: str
    local_files: dict[str, Path]

    @property
    def position(self) -> Position:
        m = self.manifest
        return Position(m.step, m.epoch, m.index_in_epoch, m.epoch_complete)

    def load_tensors(self) -> dict[str, torch.Tensor]:
        return load_file(str(self.local_files[MODEL_FILE]))

    def load_trainer_state(self) -> dict[str, Any]:
        return torch.load(self.local_files[STATE_FILE], map_location="cpu", weights_only=True)

    def load_config(self) -> RunConfig:
        return RunConfig.model_validate_json(self.local_files[CONFIG_FILE].read_bytes())


@dataclass(frozen=True)
class SkippedCheckpoint:
    name: str
    reason: str
    had_manifest: bool
    """False for a save that was interrupted before its manifest (expected after a kill, not an alert)."""


@dataclass
class ResumeSearch:
    found: VerifiedCheckpoint | None
    skipped: list[SkippedCheckpoint] = field(default_factory=list)


class CheckpointCorrupt(Exception):
    pass


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class CheckpointStore:
    """Checkpoints of one run under `checkpoint_uri`; `work_dir` holds staging and downloaded copies."""

    def __init__(self, checkpoint_uri: str, work_dir: Path, keep_last: int = 3) -> None:
        self.uri = checkpoint_uri.rstrip("/")
        self.work_dir = work_dir
        self.keep_last = keep_last
        self._local = storage.parse_uri(self.uri).scheme == "file"

    # ---- listing -------------------------------------------------------------------------------------
    def _names(self) -> dict[str, set[str]]:
        """Checkpoint directory name -> file names in it."""
        prefix = storage.parse_uri(self.uri).uri.rstrip("/") + "/"
        found: dict[str, set[str]] = {}
        for uri in storage.list_uris(self.uri):
            rel = uri[len(prefix):] if uri.startswith(prefix) else ""
            parts = rel.split("/")
            if len(parts) == 2 and parts[0].startswith(NAME_PREFIX):
                found.setdefault(parts[0], set()).add(parts[1])
        return found

    # ---- saving --------------------------------------------------------------------------------------
    def save(self, content: CheckpointContent, position: Position, *, run_id: str, trigger: str,
             world_size: int, val_loss: float | None = None, record: RunRecord | None = None,
             progress: Callable[[int], None] | None = None) -> SavedCheckpoint:
        """Commit one checkpoint (files, manifest, pointer); `progress(n)` hears of each n bytes written or
        uploaded."""
        record = record or RunRecord()
        started = time.monotonic()
        name = checkpoint_name(position)
        target = join(self.uri, name)
        manifest_uri = join(target, MANIFEST_FILE)
        if storage.exists(manifest_uri):  # an older save of this position is being redone: un-commit it first
            storage.delete(manifest_uri)
        staging = Path(storage.parse_uri(target).key) if self._local else self.work_dir / "staging" / name
        staging.mkdir(parents=True, exist_ok=True)
        writers = {
            MODEL_FILE: lambda path: save_file(content.tensors, str(path)),
            STATE_FILE: lambda path: torch.save(content.trainer_state, path),
            CONFIG_FILE: lambda path: path.write_text(content.config.model_dump_json(indent=2)),
        }
        files: dict[str, CheckpointFile] = {}
        for file_name, write in writers.items():
            files[file_name] = self._publish(staging, target, file_name, write, progress)
            faults.checkpoint_file_written(position.step)
        manifest = CheckpointManifest(
            run_id=run_id, training_fingerprint=content.config.training_fingerprint(),
            dataset_fingerprint=content.config.dataset_fingerprint(), model_id=content.config.model.model_id,
            finetune=content.config.model.finetune, step=position.step, epoch=position.epoch,
            index_in_epoch=position.index_in_epoch, epoch_complete=position.epoch_complete,
            world_size=world_size, val_loss=val_loss, files=files, trigger=trigger,  # type: ignore[arg-type]
            baseline_val_loss=record.baseline_val_loss, model_revision=record.model_revision, plan=record.plan,
            schedule=record.schedule, code_version=code_version(), created_at=datetime.now(UTC))
        raw = manifest.model_dump_json(indent=2).encode()
        storage.write_bytes(manifest_uri, raw, "application/json")
        storage.write_text(join(self.uri, LATEST_POINTER), name + "\n")
        if not self._local:
            shutil.rmtree(staging, ignore_errors=True)
        self._prune(newest=name)
        return SavedCheckpoint(name=name, uri=target, manifest=manifest,
                               manifest_sha256=hashlib.sha256(raw).hexdigest(),
                               bytes=sum(f.bytes for f in files.values()) + len(raw),
                               seconds=time.monotonic() - started)

    def _publish(self, staging: Path, target: str, file_name: str, write: Any,
                 progress: Callable[[int], None] | None) -> CheckpointFile:
        """Write one file to a temporary name, hash it, then move (local) or upload (S3) it into place."""
        tmp = staging / f".{file_name}.tmp"
        write(tmp)
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        entry = CheckpointFile(sha256=_sha256_file(tmp), bytes=tmp.stat().st_size)
        if self._local:
            os.replace(tmp, staging / file_name)
            if progress is not None:
                progress(entry.bytes)
        else:
            storage.upload_file(tmp, join(target, file_name), progress)
            tmp.unlink()
        return entry

    def _prune(self, newest: str) -> None:
        names = self._names()
        committed = sorted(n for n, files in names.items() if MANIFEST_FILE in files and n <= newest)
        keep = set(committed[-self.keep_last:])
        for name in sorted(names):
            if name < newest and name not in keep:
                self._delete(name, names[name])

    def _delete(self, name: str, files: set[str]) -> None:
        # The manifest goes first, so that a delete cut short leaves an ignored directory, not a corrupt one.
        for file_name in sorted(files, key=lambda f: f != MANIFEST_FILE):
            storage.delete(join(self.uri, name, file_name))
        if self._local:
            shutil.rmtree(storage.parse_uri(join(self.uri, name)).key, ignore_errors=True)
        log.info("deleted old checkpoint %s", join(self.uri, name))

    # ---- resuming ------------------------------------------------------------------------------------
    def find_latest(self, files: tuple[str, ...] = (MODEL_FILE, STATE_FILE, CONFIG_FILE)) -> ResumeSearch:
        """The newest checkpoint whose manifest and `files` verify; the newer ones skipped, and why."""
        search = ResumeSearch(found=None)
        if not self._local:  # copies an earlier attempt on this host downloaded (GBs each) are stale now
            shutil.rmtree(self.work_dir / RESTORE_DIR, ignore_errors=True)
        for name, present in sorted(self._names().items(), reverse=True):
            if MANIFEST_FILE not in present:
                search.skipped.append(SkippedCheckpoint(name, "no manifest (its save was interrupted)", False))
                continue
            try:
                search.found = self.verify(name, files)
                return search
            except CheckpointCorrupt as exc:
                search.skipped.append(SkippedCheckpoint(name, str(exc), True))
        return search

    def verify(self, name: str, files: tuple[str, ...]) -> VerifiedCheckpoint:
        uri = join(self.uri, name)
        try:
            raw = storage.read_bytes(join(uri, MANIFEST_FILE))
            manifest = CheckpointManifest.model_validate_json(raw)
        except (storage.StorageError, ValidationError) as exc:
            raise CheckpointCorrupt(f"manifest unreadable or invalid: {str(exc).splitlines()[0]}") from exc
        local: dict[str, Path] = {}
        for file_name in files:
            expected = manifest.files.get(file_name)
            if expected is None:
                raise CheckpointCorrupt(f"manifest lists no {file_name}")
            path = self._local_copy(name, file_name)
            if path is None or not path.is_file():
                raise CheckpointCorrupt(f"{file_name} is missing")
            size = path.stat().st_size
            if size != expected.bytes:
                raise CheckpointCorrupt(f"{file_name} has {size} bytes, its manifest says {expected.bytes} "
                                        "(truncated or overwritten)")
            if _sha256_file(path) != expected.sha256:
                raise CheckpointCorrupt(f"{file_name} does not match its manifest sha256")
            local[file_name] = path
        return VerifiedCheckpoint(name=name, uri=uri, manifest=manifest,
                                  manifest_sha256=hashlib.sha256(raw).hexdigest(), local_files=local)

    def _local_copy(self, name: str, file_name: str) -> Path | None:
        uri = join(self.uri, name, file_name)
        if self._local:
            return Path(storage.parse_uri(uri).key)
        path = self.work_dir / RESTORE_DIR / name / file_name
        try:
            storage.download_file(uri, path)
        except storage.StorageError:
            return None
        return path


def check_same_training(found: VerifiedCheckpoint, config: RunConfig) -> None:
    """Refuse (exit 64) a checkpoint trained with another model, data or recipe, naming each difference. The hub
    revision is compared as loaded (the manifest's `model_revision`): a config that leaves `model.revision` unset
    follows the code's pin, which a newer job image may move under the same training fingerprint."""
    saved_revision, revision = found.manifest.model_revision, config.model.resolved_revision()
    if saved_revision is not None and saved_revision != revision:
        raise ContractError(
            f"checkpoint {found.uri} was trained on another hub revision of {config.model.model_id} than this job "
            "loads: the frozen weights (and a LoRA run's base) would not be the ones it was trained with",
            [f"model revision: checkpoint {saved_revision!r}, this job {revision!r}; fix: run the job image that "
             f"trained it (code version {found.manifest.code_version}), or start a new run_id"])
    if found.manifest.training_fingerprint == config.training_fingerprint():
        return
    differences = _config_differences(found.load_config(), config) if CONFIG_FILE in found.local_files else []
    if found.manifest.dataset_fingerprint != config.dataset_fingerprint():
        differences.insert(0, "dataset selection (dataset fingerprint) differs")
    raise ContractError(
        f"checkpoint {found.uri} was trained with a different setup than this run config, so it cannot be "
        "resumed; fix: use the config it was trained with, or give a new --run-uri/--checkpoint-uri",
        differences or ["training fingerprint differs"])


def _config_differences(saved: RunConfig, current: RunConfig) -> list[str]:
    """`section.field: checkpoint X, config Y` for each field that enters the training fingerprint."""
    out: list[str] = []
    for section in ("dataset", "model", "training"):
        old = getattr(saved, section).model_dump(mode="json")
        new = getattr(current, section).model_dump(mode="json")
        for key in sorted(set(old) | set(new)):
            if key in RESUMABLE_CHANGES.get(section, set()):
                continue
            if old.get(key) != new.get(key):
                out.append(f"{section}.{key}: checkpoint {old.get(key)!r}, config {new.get(key)!r}")
    return out


def load_trained_model(checkpoint_uri: str, config: RunConfig
                       ) -> tuple[MusicgenForConditionalGeneration, CheckpointManifest, str]:
    """The newest verified checkpoint under `checkpoint_uri` applied onto `load_musicgen(model_id)`, in eval
    mode, with its manifest and the sha256 of the manifest's bytes (provenance for the evaluation).

    LoRA adapters are merged into the base weights. Raises `InputError` when no checkpoint verifies and
    `ContractError` when the newest one was trained with another setup than `config`.
    """
    with tempfile.TemporaryDirectory(prefix="aurax-ckpt-") as tmp:
        store = CheckpointStore(checkpoint_uri, Path(tmp))
        search = store.find_latest(files=(MODEL_FILE, CONFIG_FILE))
        for skipped in search.skipped:
            log.warning("checkpoint %s skipped: %s", skipped.name, skipped.reason)
        if search.found is None:
            tried = "; ".join(f"{s.name}: {s.reason}" for s in search.skipped) or "none found"
            raise InputError(f"no verified checkpoint under {checkpoint_uri} ({tried}); check the URI, or run "
                             "`aurax job train` for this run first")
        found = search.found
        check_same_training(found, config)
        model = load_configured_musicgen(config.model)
        make_trainable(model, config)
        load_trainable_state(model, found.load_tensors(), found.uri)
    if config.model.finetune == "lora":
        merge_lora(model)
    model.requires_grad_(False)
    return model.eval(), found.manifest, found.manifest_sha256
