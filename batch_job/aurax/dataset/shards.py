"""The prepared dataset's on-disk format, shared by `aurax job prepare` (writer) and training/evaluation
(readers).

A dataset root holds shards `{split}-{index:05d}.npz` and, written last, `manifest.json`
(`aurax_contracts.DatasetManifest`). Each shard is an uncompressed npz of:
- `codes`: int16 [num_codebooks, total_frames], every clip's EnCodec codes end to end;
- `offsets`: int64 [clips + 1], clip i is `codes[:, offsets[i]:offsets[i + 1]]`;
- `clip_ids`: int64 [clips], MagnaTagATune clip ids;
- `prompts`: unicode [clips], the text prompt built from each clip's tags.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from aurax_contracts import ContractError, DatasetManifest, ShardInfo
from aurax_contracts.layout import join

from .. import storage
from ..errors import InputError

MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class Clip:
    clip_id: int
    prompt: str
    codes: np.ndarray  # int16 [num_codebooks, frames]


def shard_name(split: str, index: int) -> str:
    return f"{split}-{index:05d}.npz"


def encode_shard(clips: list[Clip]) -> bytes:
    if not clips:
        raise ValueError("a shard needs at least one clip")
    lengths = [c.codes.shape[1] for c in clips]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    buffer = io.BytesIO()
    np.savez(buffer, codes=np.concatenate([c.codes.astype(np.int16) for c in clips], axis=1), offsets=offsets,
             clip_ids=np.array([c.clip_id for c in clips], dtype=np.int64),
             prompts=np.array([c.prompt for c in clips], dtype=np.str_))
    return buffer.getvalue()


def decode_shard(data: bytes, name: str = "shard") -> list[Clip]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            codes, offsets, clip_ids, prompts = npz["codes"], npz["offsets"], npz["clip_ids"], npz["prompts"]
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{name} is not a valid dataset shard ({exc}); re-run `aurax job prepare`") from exc
    return [Clip(int(clip_ids[i]), str(prompts[i]), codes[:, offsets[i]:offsets[i + 1]])
            for i in range(len(clip_ids))]


def shard_intact(dataset_uri: str, shard: ShardInfo) -> bool:
    """Whether the shard is present under `dataset_uri` with its recorded sha256 (read whole: ~12 MB a shard)."""
    try:
        return hashlib.sha256(storage.read_bytes(join(dataset_uri, shard.name))).hexdigest() == shard.sha256
    except storage.StorageError:
        return False


def load_manifest(dataset_uri: str) -> tuple[DatasetManifest, str]:
    """The dataset's manifest and the sha256 of its bytes (recorded as provenance)."""
    uri = join(dataset_uri, MANIFEST_NAME)
    if not storage.exists(uri):
        raise InputError(f"no dataset manifest at {uri}; run `aurax job prepare` for this config first")
    raw = storage.read_bytes(uri)
    try:
        manifest = DatasetManifest.model_validate_json(raw)
    except ValidationError as exc:
        raise InputError(f"{uri} is corrupt or from another version:\n"
                         f"{ContractError('dataset manifest', [str(e['loc']) + ': ' + e['msg'] for e in exc.errors()])}"
                         "\nre-run `aurax job prepare` to rebuild it") from exc
    return manifest, hashlib.sha256(raw).hexdigest()


def load_split(dataset_uri: str, split: str, cache_dir: Path | None = None) -> tuple[list[Clip], DatasetManifest]:
    """Every clip of a split, each shard's sha256 verified against the manifest.

    With `cache_dir`, shards are kept there so a resumed job does not download them again; a cached copy that
    fails its hash is fetched again.
    """
    manifest, _ = load_manifest(dataset_uri)
    rebuild = (f"re-run `aurax job prepare --dataset-uri {dataset_uri}` with this run's config: it rebuilds a "
               "dataset whose shards are missing or damaged")
    clips: list[Clip] = []
    for shard in manifest.shards:
        if shard.split != split:
            continue
        cached = cache_dir / manifest.fingerprint[:16] / shard.name if cache_dir else None
        data = cached.read_bytes() if cached and cached.is_file() else None
        if data is not None and hashlib.sha256(data).hexdigest() != shard.sha256:
            cached.unlink()  # type: ignore[union-attr]  # a damaged local copy: fetch the shard again
            data = None
        if data is None:
            try:
                data = storage.read_bytes(join(dataset_uri, shard.name))
            except storage.StorageError as exc:
                raise InputError(f"shard {shard.name} of {dataset_uri} cannot be read ({exc}); {rebuild}") from exc
            if hashlib.sha256(data).hexdigest() != shard.sha256:
                raise InputError(f"shard {shard.name} of {dataset_uri} does not match its manifest hash; {rebuild}")
            if cached:
                storage.write_bytes(cached.as_uri(), data)  # atomic: a kill never leaves half a shard
        clips.extend(decode_shard(data, shard.name))
    return clips, manifest


def manifest_json(manifest: DatasetManifest) -> str:
    return json.dumps(manifest.model_dump(mode="json"), indent=2, sort_keys=True)
