"""Checkpoint save/restore time and size for the real musicgen-small architecture (random init, nothing
downloaded), through the job's own `CheckpointStore`, and the work lost per interruption.

    .venv/bin/python bench/bench_checkpoint.py [--finetune full|lora] [--step-seconds S]

Save = serialise trainable weights (safetensors) + optimizer and loss-scaler state (torch.save), fsync, sha256,
manifest, pointer, to a local folder. Restore = verify every file's sha256, load, apply to the model and
optimizer. S3 adds the upload/download (multipart; ~100-300 MB/s from a g4dn in-region: see the report).

Lost work: with a notice (spot notice or SIGTERM) the job saves at the current step, losing only the step in
progress; without one (a reclaim that kills at once) it loses the steps since the last interval checkpoint.
`--step-seconds` is the assumed T4 optimizer-step time for the real config (see the GPU benchmark).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch
from transformers import (
    EncodecConfig,
    MusicgenConfig,
    MusicgenDecoderConfig,
    MusicgenForConditionalGeneration,
    T5Config,
)

from aurax.train.checkpoint import CheckpointContent, CheckpointStore, Position
from aurax.train.trainable import load_trainable_state, make_trainable, trainable_state
from aurax_contracts import RunConfig


def musicgen_small_config() -> MusicgenConfig:
    """facebook/musicgen-small's architecture: T5-base text encoder, EnCodec 32 kHz, 24-layer 1024-wide decoder."""
    text = T5Config(vocab_size=32128, d_model=768, d_ff=3072, d_kv=64, num_layers=12, num_heads=12,
                    relative_attention_num_buckets=32, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    codec = EncodecConfig(sampling_rate=32000, audio_channels=1, num_filters=64, codebook_size=2048,
                          codebook_dim=128, hidden_size=128, upsampling_ratios=[8, 5, 4, 4], num_lstm_layers=2,
                          num_residual_layers=1, target_bandwidths=[2.2], use_causal_conv=False,
                          norm_type="weight_norm", normalize=False, compress=2, kernel_size=7, last_kernel_size=7,
                          residual_kernel_size=3, pad_mode="reflect", trim_right_ratio=1.0)
    decoder = MusicgenDecoderConfig(vocab_size=2048, max_position_embeddings=2048, num_hidden_layers=24,
                                    ffn_dim=4096, num_attention_heads=16, hidden_size=1024, num_codebooks=4,
                                    pad_token_id=2048, bos_token_id=2048, decoder_start_token_id=2048,
                                    dropout=0.1, activation_function="gelu", scale_embedding=False)
    return MusicgenConfig(text_encoder=text.to_dict(), audio_encoder=codec.to_dict(), decoder=decoder.to_dict())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--finetune", choices=["full", "lora"], default="full")
    parser.add_argument("--step-seconds", type=float, default=5.0,
                        help="assumed T4 step time for 32 clips of 30 s (see bench/gpu_train_benchmark.py)")
    parser.add_argument("--clips", type=int, default=8000, help="training clips (RunConfig default target)")
    args = parser.parse_args()
    config = RunConfig.model_validate({"run_id": "bench", "model": {"finetune": args.finetune}})

    started = time.perf_counter()
    model = MusicgenForConditionalGeneration(musicgen_small_config())
    build_seconds = time.perf_counter() - started
    make_trainable(model, config)
    params = [p for p in model.parameters() if p.requires_grad]
    total = sum(p.numel() for p in model.parameters())
    trained = sum(p.numel() for p in params)
    optimizer = torch.optim.AdamW(params, lr=1e-5, betas=(0.9, 0.95), weight_decay=0.1)
    for p in params:  # one step with zero gradients creates the full AdamW state (exp_avg, exp_avg_sq)
        p.grad = torch.zeros_like(p)
    optimizer.step()
    for p in params:
        p.grad = None

    with tempfile.TemporaryDirectory() as tmp:
        store = CheckpointStore(str(Path(tmp) / "ckpt"), Path(tmp) / "work", keep_last=2)
        started = time.perf_counter()
        content = CheckpointContent(tensors=trainable_state(model), config=config, trainer_state={
            "optimizer": optimizer.state_dict(), "scaler": None, "overflow_run": 0})
        saved = store.save(content, Position(1, 0, 16), run_id="bench", trigger="steps", world_size=1)
        save_seconds = time.perf_counter() - started
        sizes = {name: f.bytes for name, f in saved.manifest.files.items()}
        del content

        started = time.perf_counter()
        found = store.find_latest().found
        verify_seconds = time.perf_counter() - started
        assert found is not None
        load_trainable_state(model, found.load_tensors(), found.uri)
        optimizer.load_state_dict(found.load_trainer_state()["optimizer"])
        restore_seconds = time.perf_counter() - started

    gib = 1024 ** 3
    print(f"musicgen-small architecture (random init, built in {build_seconds:.0f} s): {total / 1e6:.0f}M "
          f"parameters, {trained / 1e6:.1f}M trained ({args.finetune}); "
          f"CPU, local disk, {torch.get_num_threads()} threads")
    for name, size in sizes.items():
        print(f"  {name:20s} {size / gib:7.3f} GiB")
    print(f"  checkpoint total     {saved.bytes / gib:7.3f} GiB")
    print(f"  save (serialise + fsync + sha256 + manifest):  {save_seconds:6.1f} s")
    print(f"  restore (sha256 verify {verify_seconds:.1f} s + load + apply): {restore_seconds:6.1f} s")

    steps_per_epoch = args.clips // config.training.batch_size
    interval_steps = math.ceil(10 * 60 / args.step_seconds)
    print(f"lost work per interruption (assumed {args.step_seconds:g} s/step, {steps_per_epoch} steps/epoch, "
          "10-minute interval):")
    print("  with a notice (spot notice / SIGTERM): 0 completed steps (only the step in progress), if the save "
          f"({save_seconds:.0f} s here + upload) fits the 120 s notice")
    print(f"  without a notice: at most {interval_steps} steps (10 min), {interval_steps / 2:.0f} on average")
    print(f"  plan's once-per-epoch checkpoint: at most {steps_per_epoch} steps, {steps_per_epoch / 2:.0f} on "
          f"average ({steps_per_epoch / interval_steps:.1f}x more without a notice; with one, all of it is saved)")


if __name__ == "__main__":
    main()
