"""Train-step throughput: this job's pipeline (precomputed EnCodec codes, text encoded once) against a naive
one (each step decodes the clips' mp3s, resamples them to 32 kHz, EnCodec-encodes them and runs the text
encoder; fp32), side by side in one process on the CPU, same model and optimizer step.

    .venv/bin/python bench/bench_train.py [--steps 12] [--batch 4] [--segment-seconds 4]

Both pipelines use the tiny random MusicGen (`aurax/tiny-random-musicgen`): the step itself is the same
code, so the ratio isolates the input pipeline. With the real musicgen-small the codec (59M parameters)
and T5-base (110M) are larger too, but so is the decoder (420M); see the report for the reading.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
import torch

from aurax.dataset.shards import Clip
from aurax.model import codec_info, encode_audio, load_musicgen, load_tokenizer
from aurax.train.data import ExampleSource, TextConditioning, delay_pattern_labels, epoch_order
from aurax.train.trainable import make_trainable
from aurax_contracts import TINY_MODEL_ID, RunConfig

MTAT_RATE = 16_000  # MagnaTagATune mp3s: 16 kHz mono
CLIP_SECONDS = 29.1
PROMPTS = ["amapiano groove with log drum", "deep house, jazzy piano", "tribal percussion and shakers"]


def make_mp3s(folder: Path, count: int, rng: np.random.Generator) -> list[Path]:
    paths = []
    t = np.arange(int(CLIP_SECONDS * MTAT_RATE)) / MTAT_RATE
    for i in range(count):
        tone = 0.3 * np.sin(2 * np.pi * (110 + 20 * i) * t) + 0.05 * rng.standard_normal(t.size)
        path = folder / f"clip-{i}.mp3"
        sf.write(path, tone.astype(np.float32), MTAT_RATE, format="MP3")
        paths.append(path)
    return paths


def step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, labels: torch.Tensor, hidden: torch.Tensor,
         mask: torch.Tensor) -> float:
    optimizer.zero_grad(set_to_none=True)
    loss = model(attention_mask=mask, encoder_outputs=(hidden,), labels=labels).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
    optimizer.step()
    return loss.item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--segment-seconds", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: least disturbed by other work on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    config = RunConfig.model_validate(
        {"run_id": "bench", "model": {"model_id": TINY_MODEL_ID}, "training": {"activation_checkpointing": "off"}})
    model = load_musicgen(TINY_MODEL_ID)
    tokenizer = load_tokenizer(TINY_MODEL_ID)
    make_trainable(model, config)
    codec = codec_info(model)
    frames = round(args.segment_seconds * codec.frame_rate)
    samples = round(args.segment_seconds * codec.sample_rate)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    with tempfile.TemporaryDirectory() as tmp:
        mp3s = make_mp3s(Path(tmp), args.clips, rng)
        prompts = [PROMPTS[i % len(PROMPTS)] for i in range(args.clips)]

        # ---- this pipeline: codes prepared once (by `aurax job prepare`), text encoded once at start-up ----
        prep_start = time.perf_counter()
        clips = []
        for i, path in enumerate(mp3s):
            audio, _ = librosa.load(path, sr=codec.sample_rate, mono=True)
            codes = encode_audio(model, torch.from_numpy(audio)[None])[0].numpy().astype(np.int16)
            clips.append(Clip(i, prompts[i], codes))
        prepare_seconds = time.perf_counter() - prep_start
        model.eval()
        text = TextConditioning.encode(model, tokenizer, prompts, torch.device("cpu"))
        source = ExampleSource(clips, text, frames, seed=0, condition_dropout=0.3)
        model.train()
        order = epoch_order(0, 0, len(clips))

        def ours(i: int) -> float:
            first = (i * args.batch) % (len(clips) - args.batch + 1)
            batch = source.train_batch(0, order, range(first, first + args.batch))
            return step(model, optimizer, batch.labels, batch.encoder_hidden, batch.attention_mask)

        # ---- naive: decode + resample + EnCodec + T5 every step ----
        def naive(i: int) -> float:
            picks = [(i * args.batch + j) % len(mp3s) for j in range(args.batch)]
            audio = []
            for k in picks:  # only the segment is decoded (a fair naive loader, not a strawman)
                wave, _ = librosa.load(mp3s[k], sr=codec.sample_rate, mono=True, duration=args.segment_seconds)
                audio.append(torch.from_numpy(wave[:samples]))
            with torch.no_grad():
                codes = encode_audio(model, torch.stack(audio))[:, :, :frames]
                tokens = tokenizer([prompts[k] for k in picks], return_tensors="pt", padding=True)
                hidden = model.text_encoder(**tokens).last_hidden_state
            return step(model, optimizer, delay_pattern_labels(codes.long()), hidden, tokens["attention_mask"])

        results = {}
        for name, fn in [("naive", naive), ("ours", ours)] * 3:  # interleaved, best of 3: the CPU is shared
            fn(0)  # warm-up
            start = time.perf_counter()
            for i in range(args.steps):
                fn(i + 1)
            results.setdefault(name, []).append(args.steps * args.batch / (time.perf_counter() - start))

    ours_rate, naive_rate = max(results["ours"]), max(results["naive"])
    print(f"tiny MusicGen, CPU fp32, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"{args.segment_seconds:g} s segments ({frames} frames), {args.steps} steps per measurement (best of 3)")
    print(f"  naive pipeline (mp3 decode + resample + EnCodec + T5 each step): {naive_rate:8.2f} samples/s")
    print(f"  this pipeline (precomputed codes, text encoded once):           {ours_rate:8.2f} samples/s")
    print(f"  speed-up: {ours_rate / naive_rate:.1f}x")
    print(f"  one-off cost this pipeline moves out of training (prepare, per clip): "
          f"{prepare_seconds / len(mp3s) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
