"""The local shard cache: filled atomically, and a damaged cached copy is fetched again, not fatal."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from aurax.dataset.shards import MANIFEST_NAME, Clip, encode_shard, load_split, manifest_json, shard_name
from aurax.errors import InputError
from aurax_contracts import DatasetManifest, ShardInfo


def _dataset(root: Path) -> bytes:
    clips = [Clip(i, f"prompt {i}", np.full((4, 10 + i), i, dtype=np.int16)) for i in range(3)]
    data = encode_shard(clips)
    name = shard_name("train", 0)
    (root / name).write_bytes(data)
    manifest = DatasetManifest(
        fingerprint="f" * 64, codec_model_id="tiny", sample_rate=32000, frame_rate=50.0, num_codebooks=4,
        codebook_size=64, counts={"train": 3, "validation": 0}, skipped={}, total_seconds=1.0,
        shards=[ShardInfo(name=name, split="train", clips=3, frames=33, sha256=hashlib.sha256(data).hexdigest(),
                          bytes=len(data))],
        selection_report="selection-report.json", code_version="test", created_at=datetime.now(UTC))
    (root / MANIFEST_NAME).write_text(manifest_json(manifest))
    return data


def test_a_damaged_cached_shard_is_fetched_again(tmp_path: Path) -> None:
    source, cache = tmp_path / "dataset", tmp_path / "cache"
    source.mkdir()
    data = _dataset(source)
    clips, _ = load_split(source.as_uri(), "train", cache)
    cached = next(cache.rglob("train-00000.npz"))
    assert cached.read_bytes() == data and not list(cache.rglob("*.tmp"))
    cached.write_bytes(data[: len(data) // 2])  # what a kill during a non-atomic copy would leave
    again, _ = load_split(source.as_uri(), "train", cache)
    assert [c.clip_id for c in again] == [c.clip_id for c in clips] == [0, 1, 2]
    assert np.array_equal(again[2].codes, clips[2].codes)
    assert cached.read_bytes() == data


def test_a_damaged_source_shard_is_a_clear_error(tmp_path: Path) -> None:
    source = tmp_path / "dataset"
    source.mkdir()
    data = _dataset(source)
    (source / "train-00000.npz").write_bytes(data[:-5])
    with pytest.raises(InputError, match="does not match its manifest hash; re-run `aurax job prepare"):
        load_split(source.as_uri(), "train", tmp_path / "cache")
