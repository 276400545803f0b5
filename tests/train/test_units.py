"""Unit tests of the pieces: labels and batches, checkpoint store, metrics sink, interrupt sources."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from aurax import storage
from aurax.dataset.shards import Clip
from aurax.interrupts import Cause, ImdsClient, InterruptWatch
from aurax.metrics_sink import MetricsSink
from aurax.model import load_musicgen
from aurax.train.checkpoint import CheckpointContent, CheckpointStore, Position
from aurax.train.data import (
    IGNORE,
    ExampleSource,
    TextConditioning,
    delay_pattern_labels,
    epoch_order,
    rank_positions,
    split_micro_batches,
)
from aurax_contracts import TINY_MODEL_ID, JobExit
from aurax_contracts.layout import metrics_chunk_name
from aurax_contracts.metrics import Heartbeat, utc_now

from .conftest import tiny_config


def test_labels_follow_transformers_delay_pattern() -> None:
    model = load_musicgen(TINY_MODEL_ID)
    pad = model.config.decoder.pad_token_id
    codes = torch.randint(0, 64, (2, 4, 7))
    books, frames = 4, 7
    # The recipe of transformers' MusicGen fine-tuning examples: prepend a BOS column, lay out the delay
    # pattern, drop the first (all-BOS) column; pad/BOS positions are ignored by the loss.
    with_bos = torch.cat([torch.full((2, books, 1), pad), codes], dim=-1).reshape(-1, frames + 1)
    _, pattern = model.decoder.build_delay_pattern_mask(with_bos, pad_token_id=pad, max_length=frames + books)
    expected = pattern.reshape(2, books, -1)[..., 1:]
    expected = expected.masked_fill(expected == pad, IGNORE)
    assert torch.equal(delay_pattern_labels(codes), expected.transpose(1, 2))
    # and the model takes them: the loss of a random model is near ln(vocab)
    hidden = torch.zeros(2, 3, model.config.text_encoder.d_model)
    with torch.no_grad():
        loss = model(attention_mask=torch.ones(2, 3, dtype=torch.long), encoder_outputs=(hidden,),
                     labels=delay_pattern_labels(codes)).loss
    assert abs(loss.item() - np.log(64)) < 0.5


def test_batches_are_a_pure_function_of_seed_epoch_and_position() -> None:
    rng = np.random.default_rng(1)
    clips = [Clip(i, f"prompt {i % 2}", rng.integers(0, 64, (4, 10 + 5 * i), dtype=np.int16)) for i in range(6)]
    text = TextConditioning({"prompt 0": torch.ones(2, 8), "prompt 1": torch.ones(3, 8)})
    source = ExampleSource(clips, text, segment_frames=12, seed=3, condition_dropout=0.5)
    order = epoch_order(3, 1, len(clips))
    assert not np.array_equal(order, epoch_order(3, 2, len(clips)))
    a, b = source.train_batch(1, order, [2, 3, 4]), source.train_batch(1, order, [2, 3, 4])
    assert torch.equal(a.labels, b.labels) and torch.equal(a.attention_mask, b.attention_mask)
    assert a.labels.shape == (3, 12 + 3, 4)
    short = source.eval_batch([0])  # 10 frames padded to 12: the padding is ignored by the loss
    assert (short.labels[0, 10:12, 0] == IGNORE).all() and (short.labels[0, :10, 0] != IGNORE).all()
    dropped = [source.train_batch(1, order, [p]).attention_mask.sum().item() == 0 for p in range(6)]
    assert any(dropped) and not all(dropped)  # condition dropout for classifier-free guidance


def test_micro_batches_cover_each_position_of_a_step_once_for_any_world_size_and_micro_batch() -> None:
    assert split_micro_batches(rank_positions(8, 4, 1, 0), 2) == [range(8, 10), range(10, 12)]
    assert [len(r) for r in split_micro_batches(range(0, 32), 12)] == [10, 11, 11]  # balanced, not 12 + 12 + 8
    for world in (1, 2, 3, 4):
        for micro in (1, 2, 5, 32):
            shares = [rank_positions(8, 13, world, rank) for rank in range(world)]
            assert max(map(len, shares)) - min(map(len, shares)) <= 1
            dealt = [p for share in shares for r in split_micro_batches(share, micro) for p in r]
            assert dealt == list(range(8, 8 + 13)) and all(len(r) <= micro for share in shares
                                                         for r in split_micro_batches(share, micro))


def test_a_batch_counts_the_tokens_the_loss_counts_and_the_step_total_matches_without_building() -> None:
    rng = np.random.default_rng(2)
    clips = [Clip(i, "p", rng.integers(0, 64, (4, 5 + 4 * i), dtype=np.int16)) for i in range(5)]
    source = ExampleSource(clips, TextConditioning({"p": torch.ones(2, 8)}), segment_frames=12, seed=1,
                           condition_dropout=0.0)
    order = epoch_order(1, 0, len(clips))
    batch = source.train_batch(0, order, range(0, 5))
    assert batch.tokens == int((batch.labels[..., 1] != IGNORE).sum()) < 5 * 12  # short clips are padded
    assert source.train_tokens(0, order, range(0, 5)) == batch.tokens


def save_one(store: CheckpointStore, step: int, complete: bool = False) -> str:
    content = CheckpointContent(tensors={"w": torch.full((4,), float(step))},
                                trainer_state={"overflow_run": 0}, config=tiny_config())
    return store.save(content, Position(step, 0, step, complete), run_id="tiny-run", trigger="steps",
                      world_size=1).name


def test_store_keeps_the_last_k_and_falls_back_past_truncated_or_unfinished_saves(tmp_path: Path) -> None:
    store = CheckpointStore(str(tmp_path / "ckpt"), tmp_path / "work", keep_last=2)
    for step in (1, 2, 3):
        save_one(store, step)
    save_one(store, 3, complete=True)
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["latest", "step-000000003",
                                                                     "step-000000003-end"]
    (tmp_path / "ckpt" / "step-000000004").mkdir()  # a save killed before its manifest
    (tmp_path / "ckpt" / "step-000000004" / "model.safetensors").write_bytes(b"x")
    newest = tmp_path / "ckpt" / "step-000000003-end" / "model.safetensors"
    newest.write_bytes(newest.read_bytes()[:-10])  # truncated
    search = store.find_latest()
    assert search.found is not None and search.found.name == "step-000000003"
    assert [(s.name, s.had_manifest) for s in search.skipped] == [("step-000000004", False),
                                                                  ("step-000000003-end", True)]
    assert "truncated" in search.skipped[1].reason
    assert float(search.found.load_tensors()["w"][0]) == 3.0


def test_metrics_sink_rate_limits_and_never_overwrites_earlier_chunks(tmp_path: Path) -> None:
    uri = str(tmp_path / "metrics")
    beat = Heartbeat(run_id="tiny-run", time=utc_now(), step=1, epoch=0)
    sink = MetricsSink(uri, attempt=2, flush_seconds=3600)
    sink.emit(beat)
    sink.maybe_flush()  # first flush: nothing written before, so it goes out
    sink.emit(beat)
    sink.maybe_flush()  # within the interval: buffered
    assert [p.name for p in (tmp_path / "metrics" / "attempt-0002").iterdir()] == ["chunk-00000000.jsonl"]
    sink.close()  # exit: flushed
    restarted = MetricsSink(uri, attempt=2, flush_seconds=0)
    restarted.emit(beat)
    restarted.close()
    names = sorted(p.name for p in (tmp_path / "metrics" / "attempt-0002").iterdir())
    assert names == [metrics_chunk_name(2, i).split("/")[1] for i in range(3)]


def test_sigterm_handler_records_the_cause_and_restores_the_previous_handler() -> None:
    watch = InterruptWatch(imds=None, stop_request_uri=None)
    previous = signal.getsignal(signal.SIGTERM)
    watch.start()
    signal.raise_signal(signal.SIGTERM)
    assert watch.pending() is Cause.SIGTERM and Cause.SIGTERM.exit_code == JobExit.INTERRUPTED
    watch.stop()
    assert signal.getsignal(signal.SIGTERM) == previous


def test_imds_unreachable_is_an_os_error_not_a_hang() -> None:
    with pytest.raises(OSError):
        ImdsClient("http://127.0.0.1:9", timeout=0.5).get("latest/meta-data/instance-type")


def test_metrics_sink_keeps_records_when_a_write_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sink = MetricsSink(str(tmp_path / "metrics"), attempt=1, flush_seconds=0)
    sink.emit(Heartbeat(run_id="tiny-run", time=utc_now(), step=1, epoch=0))

    def refuse(*args: object) -> None:
        raise storage.StorageError("cannot write: SlowDown")

    monkeypatch.setattr(storage, "write_text", refuse)
    sink.flush()  # logged, not raised
    monkeypatch.undo()
    sink.flush()
    assert [p.name for p in (tmp_path / "metrics" / "attempt-0001").iterdir()] == ["chunk-00000000.jsonl"]


def test_a_checkpoint_from_another_hub_revision_is_refused_though_the_config_did_not_change(tmp_path: Path) -> None:
    """`model.revision` unset follows the code's pinned revision: a newer image that moves the pin must not
    resume (or evaluate) a run on other frozen weights under the same training fingerprint."""
    from types import SimpleNamespace

    from aurax.train.checkpoint import check_same_training
    from aurax_contracts import ContractError, RunConfig
    from aurax_contracts.config import MUSICGEN_SMALL_REVISION

    config = RunConfig.model_validate({"run_id": "pinned"})
    manifest = SimpleNamespace(training_fingerprint=config.training_fingerprint(), model_revision="0" * 40,
                               code_version="1.0.0+abc")
    found = SimpleNamespace(uri="s3://b/runs/pinned/checkpoints/step-000000010", manifest=manifest, local_files={})
    with pytest.raises(ContractError, match=f"checkpoint '0{{40}}', this job '{MUSICGEN_SMALL_REVISION}'; fix: run "
                                            r"the job image that trained it \(code version 1.0.0\+abc\)"):
        check_same_training(found, config)  # type: ignore[arg-type]
    manifest.model_revision = MUSICGEN_SMALL_REVISION
    check_same_training(found, config)  # type: ignore[arg-type]
    manifest.model_revision = None  # a checkpoint from before revisions were recorded
    check_same_training(found, config)  # type: ignore[arg-type]
