"""GPU training benchmark for the real musicgen-small architecture (random init: nothing is downloaded),
at 30 s segments, fp16 AMP with loss scaling and bf16: samples/s, peak memory and model-FLOPs utilisation,
then the projected per-epoch time on a T4 and the 20-epoch cost on g4dn.xlarge spot.

    python bench/gpu_train_benchmark.py                      # on the GPU box, from the repository root
    python bench/gpu_train_benchmark.py --device cpu --steps 2 --warmup 1 --segment-seconds 1 --layers 2
                                                             # (a CPU sanity run of the script itself)

It first runs the job itself (`aurax job train`, tiny model) once per precision on the GPU, to check the
CUDA paths of the loop (autocast, GradScaler, checkpoint of the scaler) before timing anything.

Projection (stated, not measured): a T4 step takes `step_flops / (T4 fp16 peak x MFU)`, with MFU taken as
the lower of the one measured here in fp16 and 25% (what T4 fine-tunes of this size typically sustain, with
gradient checkpointing); checkpoint saves add their time every 10 minutes. Model FLOPs per token:
6 x (decoder matmul parameters) + 12 x layers x width x sequence (attention), recompute not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import MusicgenForConditionalGeneration

from aurax_contracts import RunConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_checkpoint import musicgen_small_config

from aurax.train.data import delay_pattern_labels
from aurax.train.precision import Precision
from aurax.train.trainable import make_trainable

REPO = Path(__file__).resolve().parent.parent
T4_FP16_PEAK = 65e12
PEAKS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10G": 125e12, "T4": 65e12}
FRAME_RATE = 50
TEXT_TOKENS = 24
T4_MFU_CAP = 0.25


def job_smoke_test(precision: str) -> None:
    """`aurax job train` on the tiny model with this precision, on this GPU: must exit 0 and resume."""
    sys.path.insert(0, str(REPO / "tests" / "train"))
    from conftest import tiny_config, write_dataset

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        config = tiny_config(segment_seconds=2.0)
        config.model.precision = precision  # type: ignore[assignment]
        (base / "config.json").write_text(config.model_dump_json())
        write_dataset(base / "dataset", config, train_clips=24, val_clips=4)
        argv = [sys.executable, "-m", "aurax.cli", "job", "train", "--config", str(base / "config.json"),
                "--run-uri", str(base / "run"), "--dataset-uri", str(base / "dataset"), "--work-dir",
                str(base / "work"), "--checkpoint-every-steps", "2", "--metrics-flush-seconds", "0"]
        env = {**os.environ, "AURAX_IMDS_ENDPOINT": "off"}
        for until in (1, 2):
            done = subprocess.run([*argv, "--until-epoch", str(until)], env=env, capture_output=True, text=True,
                                  check=False)
            if done.returncode != 0:
                raise SystemExit(f"aurax job train ({precision}, until {until}) exited {done.returncode}:\n"
                                 f"{done.stderr[-3000:]}")
        print(f"  job smoke test ({precision}): trained 2 epochs with a resume in between, exit 0")


def decoder_flops_per_sample(model: MusicgenForConditionalGeneration, seq: int) -> float:
    """Training FLOPs of one sample: 6 per matmul parameter per position, plus attention scores."""
    matmul = sum(p.numel() for n, p in model.decoder.named_parameters()
                 if p.dim() == 2 and "embed_tokens" not in n)
    cfg = model.config.decoder
    attention = 12 * cfg.num_hidden_layers * cfg.hidden_size * seq
    return seq * (6 * matmul + attention)


def measure(model: MusicgenForConditionalGeneration, precision: Precision, device: torch.device, batch: int,
            frames: int, steps: int, warmup: int) -> dict[str, float]:
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5, betas=(0.9, 0.95), weight_decay=0.1)
    scaler = precision.grad_scaler()
    books, width = model.config.decoder.num_codebooks, model.config.text_encoder.d_model
    labels = delay_pattern_labels(torch.randint(0, 2048, (batch, books, frames))).to(device)
    hidden = torch.randn(batch, TEXT_TOKENS, width, device=device)
    mask = torch.ones(batch, TEXT_TOKENS, dtype=torch.long, device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    skipped = 0
    for i in range(warmup + steps):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with precision.autocast():
            loss = model(attention_mask=mask, encoder_outputs=(hidden,), labels=labels).loss
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        before = scaler.get_scale() if precision.uses_loss_scaling else 1.0
        scaler.step(optimizer)
        scaler.update()
        skipped += int(precision.uses_loss_scaling and scaler.get_scale() < before and i >= warmup)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - started) / steps
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    return {"step_seconds": seconds, "samples_per_s": batch / seconds, "peak_gib": peak / 1024 ** 3,
            "loss": loss.item(), "skipped_steps": skipped}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--batch", type=int, default=4, help="micro-batch (RunConfig default batch_size)")
    parser.add_argument("--segment-seconds", type=float, default=30.0)
    parser.add_argument("--layers", type=int, default=None, help="fewer decoder layers (CPU sanity runs only)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="this GPU's dense fp16/bf16 peak")
    parser.add_argument("--spot-usd-per-hour", type=float, default=0.2104,
                        help="g4dn.xlarge spot price (us-east-1, typical late 2025; check the current one)")
    parser.add_argument("--clips", type=int, default=8000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--checkpoint-seconds", type=float, default=60.0,
                        help="save + upload time of one checkpoint (bench/bench_checkpoint.py + S3)")
    parser.add_argument("--skip-job-smoke-test", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    results: dict[str, dict[str, float]] = {}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = (args.peak_tflops * 1e12 if args.peak_tflops else
            next((v for k, v in PEAKS.items() if k in name), None))
    print(f"device: {name}, torch {torch.__version__}, peak {peak / 1e12 if peak else float('nan'):.0f} TFLOPS")

    precisions = ["fp16", "bf16"] if device.type == "cuda" else ["fp32"]
    if device.type == "cuda" and not args.skip_job_smoke_test:
        for p in precisions:
            job_smoke_test(p)

    frames = round(args.segment_seconds * FRAME_RATE)
    config = RunConfig.model_validate({"run_id": "gpu-bench"})
    for p in precisions:
        mg_config = musicgen_small_config()
        if args.layers:
            mg_config.decoder.num_hidden_layers = args.layers
        model = MusicgenForConditionalGeneration(mg_config)
        model.config.decoder.decoder_start_token_id = 2048
        make_trainable(model, config)
        model.decoder.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        model.to(device).train()
        seq = frames + model.config.decoder.num_codebooks - 1
        result = measure(model, Precision(p, device.type), device, args.batch, frames, args.steps, args.warmup)
        flops = decoder_flops_per_sample(model, seq) * result["samples_per_s"]
        result["model_tflops"] = flops / 1e12
        result["mfu"] = flops / peak if peak else float("nan")
        result["step_flops"] = decoder_flops_per_sample(model, seq) * args.batch
        results[p] = result
        print(f"  {p}: {result['samples_per_s']:.2f} samples/s ({args.segment_seconds:g} s clips, batch "
              f"{args.batch}), peak memory {result['peak_gib']:.2f} GiB, {result['model_tflops']:.1f} model "
              f"TFLOPS, MFU {result['mfu']:.1%}, skipped steps {result['skipped_steps']:.0f}")
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()

    measured = results.get("fp16", next(iter(results.values())))
    mfu = min(measured["mfu"], T4_MFU_CAP) if measured["mfu"] == measured["mfu"] else T4_MFU_CAP
    samples_per_step = args.batch * 4  # grad_accum_steps 4 (RunConfig default)
    t4_sample_seconds = measured["step_flops"] / args.batch / (T4_FP16_PEAK * mfu)
    epoch_seconds = args.clips * t4_sample_seconds
    epoch_seconds *= 1 + args.checkpoint_seconds / 600  # a save every 10 minutes
    hours = args.epochs * epoch_seconds / 3600
    print(f"projection to a T4 (fp16 peak 65 TFLOPS, MFU {mfu:.0%} assumed): {t4_sample_seconds:.2f} s/sample, "
          f"{samples_per_step * t4_sample_seconds:.1f} s/optimizer step, {epoch_seconds / 3600:.2f} h/epoch "
          f"({args.clips} clips, checkpoints included)")
    print(f"  {args.epochs} epochs: {hours:.1f} h on g4dn.xlarge spot at ${args.spot_usd_per_hour}/h = "
          f"${hours * args.spot_usd_per_hour:.2f} (on-demand $0.526/h: ${hours * 0.526:.2f}); goal < $15, "
          "plan $437-524")
    fits = measured["peak_gib"] < 14.5 if device.type == "cuda" else None
    print(f"  fp16 peak memory {measured['peak_gib']:.2f} GiB -> fits a 16 GB T4: {fits}")
    out = os.environ.get("OUT")
    if out:
        Path(out, "gpu_train_benchmark.json").write_text(json.dumps(
            {"device": name, "results": results, "t4_mfu": mfu, "t4_epoch_hours": epoch_seconds / 3600,
             "total_hours": hours, "spot_cost_usd": hours * args.spot_usd_per_hour}, indent=2))


if __name__ == "__main__":
    main()
