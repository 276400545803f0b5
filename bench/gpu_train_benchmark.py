"""`aurax job train` itself on the real musicgen-small architecture: samples/s, peak memory and MFU per variant.

    python bench/gpu_train_benchmark.py --out results.json              # one GPU, about 6 minutes
    python bench/gpu_train_benchmark.py --smoke --out smoke.json        # the CPU, a small architecture

It runs from a plain checkout (no install): it puts `batch_job/` and `layers/aurax/` on the path of itself and of
the jobs it starts. Needs torch, transformers (>= 5.17), numpy, safetensors, tokenizers, PyYAML and pydantic.

Nothing is downloaded: a randomly initialised musicgen-small (bench_checkpoint's config: T5-base, EnCodec 32 kHz,
24-layer 1024-wide decoder) is saved with `save_pretrained`, beside a byte-level tokenizer, into a folder that
`model.model_id` points at, with a synthetic prepared dataset of 30 s clips (random codes). Each variant is one
`aurax job train` process; its throughput is read from the job's own `train` records (samples/s over
`log_every_steps`-step windows, the first window, with compilation and allocator warm-up, left out), its peak
memory from the records' `gpu_memory_gib`, its plan (micro-batch, accumulation, checkpointing) from its `setup`
record. The process is killed once enough windows are in, or at the variant's timeout; results print as they
come and go to `--out` as JSON.

MFU = decoder model FLOPs per example (`aurax.ops.flops`, the count `aurax estimate` converts back with: 6 per
matmul weight per token it multiplies, the cross-attention keys and values on the prompt's tokens, plus 12 x layers x
width per attended position; a checkpointed forward is not counted again) x samples/s / the GPU's dense bf16 peak
(989 TFLOPS for an H100 or H200 SXM).

Variants: today's default before issue 11 (eager attention, checkpointing, micro-batch 4, 16 per step); the job's
default plan within 15 GiB (`AURAX_GPU_MEMORY_GIB=15`, a T4's budget) in bf16 and in fp16; forced
sdpa + checkpointing at micro-batch 32 and sdpa without it at 16; the default plan on the whole GPU; the same with
`training.compile`; a larger effective batch. Also a fully-dropped-prompt (all-masked cross-attention) check:
finite loss and gradients in fp16 and bf16 with SDPA, on the real-size model.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SOURCES = [str(REPO / "batch_job"), str(REPO / "layers" / "aurax")]
sys.path[:0] = [path for path in SOURCES if path not in sys.path]

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import MusicgenConfig, MusicgenForConditionalGeneration  # noqa: E402

from aurax.dataset.shards import MANIFEST_NAME, Clip, encode_shard, shard_name  # noqa: E402
from aurax.model import byte_tokenizer, tiny_musicgen_config  # noqa: E402
from aurax.ops.flops import decoder_train_flops_per_sample  # noqa: E402
from aurax.train.data import delay_pattern_labels  # noqa: E402
from aurax_contracts import DatasetManifest, RunConfig, ShardInfo, parse_metric_line  # noqa: E402
from aurax_contracts.metrics import TrainingSetup, TrainStep  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_checkpoint import musicgen_small_config  # noqa: E402

#: Dense bf16 (fp16 on the T4) tensor peaks by device-name fragment; the longest fragment in the name wins, so
#: that an "H100 PCIe" or an "L40S" is not taken for an H100 SXM or an L4 (NVIDIA datasheets, without sparsity).
PEAKS = {"H100": 989e12, "H200": 989e12, "H100 PCIe": 756e12, "H100 NVL": 835e12, "H200 NVL": 835e12,
         "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10G": 125e12, "T4": 65e12}
TEXT_PROMPTS = ["amapiano groove with log drum", "deep house with jazzy piano chords and shakers",
                "tribal percussion, warm bass, sparse kick, rolling shakers in sixteenth notes"]
T4_BUDGET = {"AURAX_GPU_MEMORY_GIB": "15"}


@dataclass
class Variant:
    name: str
    training: dict[str, Any]
    model: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    timeout_factor: float = 1.0
    """Compilation needs longer before its first measured window."""


def variants(smoke: bool) -> list[Variant]:
    if smoke:
        return [Variant("before: eager, checkpointing, micro-batch 4 x 4", {"batch_size": 16, "micro_batch_size": 4,
                                                                       "activation_checkpointing": "on"},
                        {"attention": "eager"}),
                Variant("default plan (sdpa)", {}),
                Variant("sdpa, no checkpointing, micro-batch 8", {"micro_batch_size": 8,
                                                                  "activation_checkpointing": "off"})]
    return [
        Variant("before issue 11: eager, checkpointing, micro-batch 4 x 4, bf16",
                {"batch_size": 16, "micro_batch_size": 4, "activation_checkpointing": "on"}, {"attention": "eager"}),
        Variant("default plan within 15 GiB, bf16", {}, env=T4_BUDGET),
        Variant("default plan within 15 GiB, fp16 (the T4's precision)", {}, {"precision": "fp16"}, T4_BUDGET),
        Variant("sdpa, checkpointing, micro-batch 32", {"micro_batch_size": 32, "activation_checkpointing": "on"}),
        Variant("sdpa, no checkpointing, micro-batch 16", {"micro_batch_size": 16, "activation_checkpointing": "off"}),
        Variant("default plan, whole GPU, bf16", {}),
        Variant("batch 64, default plan, whole GPU, bf16", {"batch_size": 64}),
        Variant("default plan, whole GPU, bf16, torch.compile", {"compile": True}, timeout_factor=2.0),
    ]


# ---- the model folder and the dataset -----------------------------------------------------------------------
def small_config() -> MusicgenConfig:
    """The smoke test's architecture: the tiny test model's codec and text encoder, a 2-layer 128-wide decoder."""
    config = tiny_musicgen_config()
    config.decoder.hidden_size, config.decoder.ffn_dim, config.decoder.num_hidden_layers = 128, 256, 2
    return config


def save_model(folder: Path, smoke: bool, device: str) -> MusicgenConfig:
    config = small_config() if smoke else musicgen_small_config()
    torch.manual_seed(0)
    with torch.device(device):  # random initialisation of 588M parameters is seconds on a GPU, a minute on a CPU
        model = MusicgenForConditionalGeneration(config)
    model.save_pretrained(folder)
    del model
    release_gpu_memory()
    tokenizer = byte_tokenizer()
    tokenizer.model_max_length = 64
    tokenizer.save_pretrained(folder)
    return config


def write_dataset(root: Path, config: RunConfig, model: MusicgenConfig, clips: int, frames: int) -> None:
    """A prepared dataset as `aurax job prepare` writes it, with random codes: the speed does not depend on them."""
    rng = np.random.default_rng(0)
    books, size = model.decoder.num_codebooks, model.audio_encoder.codebook_size
    root.mkdir(parents=True, exist_ok=True)
    shards = []
    for split, count in (("train", clips), ("validation", 1)):
        data = encode_shard([Clip(i, TEXT_PROMPTS[i % len(TEXT_PROMPTS)],
                                  rng.integers(0, size, (books, frames), dtype=np.int16)) for i in range(count)])
        name = shard_name(split, 0)
        (root / name).write_bytes(data)
        import hashlib

        shards.append(ShardInfo(name=name, split=split, clips=count, frames=count * frames,
                                sha256=hashlib.sha256(data).hexdigest(), bytes=len(data)))
    manifest = DatasetManifest(
        fingerprint=config.dataset_fingerprint(), codec_model_id=config.model.model_id, sample_rate=32000,
        frame_rate=50.0, num_codebooks=books, codebook_size=size, counts={"train": clips, "validation": 1},
        skipped={}, total_seconds=clips * frames / 50.0, shards=shards, selection_report="selection.json",
        code_version="bench", created_at=datetime.now(UTC))
    (root / MANIFEST_NAME).write_text(manifest.model_dump_json())


def run_config(model_dir: Path, variant: Variant, segment_seconds: float, smoke: bool) -> RunConfig:
    training = {"total_epochs": 1, "decision_epoch": 1, "segment_seconds": segment_seconds,
                "log_every_steps": 2 if smoke else 5, "warmup_steps": 10, **variant.training}
    return RunConfig.model_validate({
        "run_id": "gpu-bench", "model": {"model_id": str(model_dir), **variant.model}, "training": training,
        "checkpoint": {"interval_minutes": 1440}})


# ---- FLOPs ----------------------------------------------------------------------------------------------------
def peak_flops(device_name: str) -> float | None:
    matches = [fragment for fragment in PEAKS if fragment in device_name]
    return PEAKS[max(matches, key=len)] if matches else None


def decoder_flops_per_sample(model: MusicgenConfig, seq: int, text_tokens: float) -> float:
    """Model FLOPs of one training example of `seq` decoder positions and `text_tokens` prompt tokens."""
    d = model.decoder
    return decoder_train_flops_per_sample(layers=d.num_hidden_layers, width=d.hidden_size, ffn_dim=d.ffn_dim,
                                          codebooks=d.num_codebooks, codebook_size=d.vocab_size, audio_tokens=seq,
                                          text_tokens=text_tokens)


def prompt_tokens(model_dir: Path) -> float:
    """Mean tokens of the benchmark's prompts under the saved tokenizer (as `TextConditioning` encodes them)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    lengths = [len(ids) for ids in tokenizer(TEXT_PROMPTS, truncation=True)["input_ids"]]
    return sum(lengths) / len(lengths)


# ---- one variant ------------------------------------------------------------------------------------------------
def read_records(metrics: Path) -> list[Any]:
    out = []
    for chunk in sorted(metrics.rglob("*.jsonl")):
        for line in chunk.read_text().splitlines():
            if line.strip():
                try:
                    out.append(parse_metric_line(line))
                except ValueError:
                    pass
    return out


def run_variant(variant: Variant, work: Path, model_dir: Path, dataset: Path, config: RunConfig, device: str,
                timeout_s: float, windows: int) -> dict[str, Any]:
    run = work / "run"
    (work / "config.json").write_text(config.model_dump_json())
    env = {**os.environ, "AURAX_IMDS_ENDPOINT": "off", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error",
           "PYTHONPATH": os.pathsep.join([*SOURCES, os.environ.get("PYTHONPATH", "")]), **variant.env}
    if device == "cpu":
        env["AURAX_DEVICE"] = "cpu"
    argv = [sys.executable, "-m", "aurax.cli", "job", "train", "--config", str(work / "config.json"), "--run-uri",
            str(run), "--dataset-uri", str(dataset), "--until-epoch", "1", "--work-dir", str(work / "scratch"),
            "--metrics-flush-seconds", "0"]
    started = time.monotonic()
    log = (work / "job.log").open("w")
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    steps: list[TrainStep] = []
    setup: TrainingSetup | None = None
    while time.monotonic() - started < timeout_s and proc.poll() is None:
        time.sleep(1.0)
        found = read_records(run / "metrics")
        steps = [r for r in found if isinstance(r, TrainStep)]
        setup = next((r for r in found if isinstance(r, TrainingSetup)), setup)
        if len(steps) > windows:
            break
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    log.close()
    result: dict[str, Any] = {"variant": variant.name, "seconds": round(time.monotonic() - started, 1),
                              "windows": max(0, len(steps) - 1), "exit_code": proc.returncode}
    if setup is not None:
        plan = setup.plan
        result.update(micro_batch=plan.micro_batch_size, accumulation=plan.accumulation_steps,
                      checkpointing=plan.activation_checkpointing, attention=plan.attention,
                      precision=plan.precision, optimizer=plan.optimizer, compiled=plan.compiled,
                      batch=plan.batch_size, memory_budget_gib=plan.device_memory_gib, probe=plan.probe_peak_gib)
    measured = steps[1:]
    if measured:
        result["samples_per_s"] = round(statistics.median(r.samples_per_s for r in measured), 2)
        peaks = [r.gpu_memory_gib for r in steps if r.gpu_memory_gib is not None]
        result["peak_gib"] = round(max(peaks), 2) if peaks else None
        result["loss"] = round(measured[-1].loss, 4)
    else:
        tail = (work / "job.log").read_text()[-1500:]
        result["error"] = f"no measured window (exit {proc.returncode}); log tail:\n{tail}"
    return result


# ---- the fully dropped prompt ---------------------------------------------------------------------------------
def dropped_prompt_check(model_dir: Path, device: str) -> dict[str, Any]:
    """fp16 and bf16 (fp32 on the CPU) with SDPA on the real-size model: a batch whose first prompt is fully
    dropped (all-zero cross-attention mask) gives a finite loss and finite gradients."""
    from aurax.model import load_musicgen
    from aurax.train.precision import Precision

    out: dict[str, Any] = {}
    model = load_musicgen(str(model_dir), attention="sdpa").to(device).train()
    model.requires_grad_(False)
    model.decoder.requires_grad_(True)
    d = model.config.decoder
    labels = delay_pattern_labels(torch.randint(0, d.vocab_size, (2, d.num_codebooks, 100))).to(device)
    hidden = torch.randn(2, 12, model.config.text_encoder.d_model, device=device)
    mask = torch.ones(2, 12, dtype=torch.long, device=device)
    hidden[0], mask[0] = 0.0, 0
    for name in (["fp16", "bf16"] if device == "cuda" else ["fp32"]):
        precision = Precision(name, device)  # type: ignore[arg-type]
        model.zero_grad(set_to_none=True)
        with precision.autocast():
            loss = model(attention_mask=mask, encoder_outputs=(hidden,), labels=labels).loss
        loss.backward()
        grads_finite = all(bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None)
        out[name] = {"loss": float(loss.detach()), "finite": bool(torch.isfinite(loss).item() and grads_finite)}
    del model, loss
    release_gpu_memory()
    return out


def release_gpu_memory() -> None:
    """Hand this process's cached GPU memory back to the driver: the jobs run beside it and plan from what is free."""
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="write the results as JSON here")
    parser.add_argument("--smoke", action="store_true", help="CPU, a small architecture, short segments")
    parser.add_argument("--variant-timeout", type=float, default=None, help="seconds per variant (default 45, twice "
                                                                            "that with compile; smoke 90)")
    parser.add_argument("--windows", type=int, default=3, help="measured windows per variant")
    parser.add_argument("--only", nargs="*", type=int, help="run only these variant numbers (0-based)")
    args = parser.parse_args()
    device = "cpu" if args.smoke or not torch.cuda.is_available() else "cuda"
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    peak = peak_flops(name)
    segment = 2.0 if args.smoke else 30.0
    timeout = args.variant_timeout or (90.0 if args.smoke else 45.0)
    report: dict[str, Any] = {"device": name, "torch": torch.__version__, "peak_flops": peak, "segment_s": segment,
                              "variants": []}
    import transformers

    report["transformers"] = transformers.__version__
    print(f"device {name}, torch {torch.__version__}, transformers {transformers.__version__}", flush=True)
    with tempfile.TemporaryDirectory(prefix="aurax-gpu-bench-") as tmp:
        base = Path(tmp)
        started = time.monotonic()
        mg = save_model(base / "model", args.smoke, device)
        print(f"random {'small' if args.smoke else 'musicgen-small'} architecture saved in "
              f"{time.monotonic() - started:.0f} s", flush=True)
        report["dropped_prompt"] = dropped_prompt_check(base / "model", device)
        print(f"fully dropped prompt (SDPA): {report['dropped_prompt']}", flush=True)
        frames = round(segment * 50)
        seq = frames + mg.decoder.num_codebooks - 1
        flops = decoder_flops_per_sample(mg, seq, prompt_tokens(base / "model"))
        report["model_tflop_per_sample"] = round(flops / 1e12, 4)
        dataset = base / "dataset"
        chosen = [v for i, v in enumerate(variants(args.smoke)) if args.only is None or i in args.only]
        for index, variant in enumerate(chosen):
            config = run_config(base / "model", variant, segment, args.smoke)
            if index == 0:  # every variant shares the selection and the model, hence the dataset
                write_dataset(dataset, config, mg, clips=400 if args.smoke else 2400, frames=frames)
            work = base / f"variant-{index}"
            work.mkdir()
            result = run_variant(variant, work, base / "model", dataset, config, device,
                                 timeout * variant.timeout_factor, args.windows)
            if "samples_per_s" in result:
                result["model_tflops"] = round(result["samples_per_s"] * flops / 1e12, 4)
                result["mfu"] = round(result["samples_per_s"] * flops / peak, 4) if peak else None
            report["variants"].append(result)
            shown = {k: v for k, v in result.items() if k not in ("probe", "error")}
            print(json.dumps(shown), flush=True)
            if "error" in result:
                print(result["error"], flush=True)
            args.out.write_text(json.dumps(report, indent=2))
    before = report["variants"][0].get("samples_per_s") if report["variants"] else None
    for result in report["variants"][1:]:
        if before and result.get("samples_per_s"):
            result["speedup_vs_before"] = round(result["samples_per_s"] / before, 2)
            print(f"{result['variant']}: {result['speedup_vs_before']}x the pre-issue-11 default", flush=True)
    args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
