"""Evaluation generation: the old per-clip path against the batched, per-clip-seeded one, side by side.

    .venv/bin/python bench/bench_generate.py --out /tmp/generate.json           # CPU, tiny MusicGen
    python bench/bench_generate.py --cuda --out $OUT/generate.json              # GPU, real-size musicgen-small

On the GPU the model is facebook/musicgen-small's architecture with random weights (bench_checkpoint's config),
saved with a byte-level tokenizer to a local folder and loaded from it the way the job loads a model: nothing
is downloaded. Clips of --seconds (10) with guidance 3.0.

- per-clip: what the evaluation job did before (batch 1, fp32, `do_sample` with the global seed, one
  `generate` call per clip);
- batched: `aurax.evaluate.generate.ClipGenerator` (the job's code): one call per batch, half precision on
  CUDA (bf16 where the GPU has it, and fp16, the T4's), each clip with its own random stream.

Also measured: peak GPU memory per clip (calibrates the batch-size estimate), and whether a clip generated
alone equals the same clip inside a batch (codes identical on the CPU; on a GPU in half precision a near-tie
can flip). The ratio of seconds per clip is the figure: goal >= 50x on the same GPU. Results go to --out as
they are measured, so a stage cut short by the time budget still leaves the others.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_checkpoint import musicgen_small_config  # noqa: E402

from aurax.evaluate.generate import ClipGenerator, ClipSpec, SamplingSettings  # noqa: E402
from aurax.model import byte_tokenizer, codec_info, load_musicgen, load_tokenizer  # noqa: E402
from aurax_contracts import TINY_MODEL_ID  # noqa: E402
from aurax_contracts.config import DEFAULT_PROMPTS, DEFAULT_TAG_PROMPTS  # noqa: E402

PROMPTS = DEFAULT_PROMPTS + DEFAULT_TAG_PROMPTS


class Results:
    def __init__(self, path: Path, started: float) -> None:
        self.path, self.started, self.data = path, started, {}

    def put(self, key: str, value: object) -> None:
        self.data[key] = value
        self.data["elapsed_s"] = round(time.monotonic() - self.started, 1)
        self.path.write_text(json.dumps(self.data, indent=2))
        print(f"[{self.data['elapsed_s']:6.1f} s] {key}: {json.dumps(value)}", flush=True)


def build_model(cuda: bool, folder: Path) -> tuple[str, float]:
    """The model id the job would be given: the tiny model, or a real-size random one saved to `folder`."""
    if not cuda:
        return TINY_MODEL_ID, 0.0
    began = time.monotonic()
    torch.manual_seed(0)
    from transformers import MusicgenForConditionalGeneration

    model = MusicgenForConditionalGeneration(musicgen_small_config())
    model.save_pretrained(folder)
    # The tiny model's byte-level tokenizer: the real T5 tokenizer's files cannot be downloaded on the GPU machine.
    byte_tokenizer().save_pretrained(folder)
    del model
    return str(folder), time.monotonic() - began


def legacy_clip(model, tokenizer, prompt: str, seed: int, seconds: float, device: torch.device) -> float:  # type: ignore[no-untyped-def]
    """The evaluation job's old `generate_clip`: one prompt, fp32, the global seed. Returns seconds taken."""
    codec = codec_info(model)
    new_tokens = math.ceil(seconds * codec.frame_rate) + codec.num_codebooks - 1
    inputs = tokenizer([prompt], return_tensors="pt", padding=True).to(device)
    torch.manual_seed(seed)
    sync(device)
    began = time.monotonic()
    with torch.inference_mode():
        model.generate(**inputs, do_sample=True, guidance_scale=3.0, max_new_tokens=new_tokens)
    sync(device)
    return time.monotonic() - began


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def specs(count: int, first: int = 0) -> list[ClipSpec]:
    return [ClipSpec(first + i, PROMPTS[(first + i) % len(PROMPTS)], "amapiano", 2024 + first + i)
            for i in range(count)]


def timed_batch(generator: ClipGenerator, batch: list[ClipSpec]) -> tuple[float, float | None, list]:  # type: ignore[type-arg]
    """(seconds, peak GPU bytes per clip or None, clips) of one `generate` call."""
    device = generator.device
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    sync(device)
    began = time.monotonic()
    clips = generator.generate(batch)
    sync(device)
    seconds = time.monotonic() - began
    peak = (torch.cuda.max_memory_allocated(device) - base) / len(batch) if device.type == "cuda" else None
    return seconds, peak, clips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cuda", action="store_true", help="real-size musicgen-small on the GPU")
    parser.add_argument("--out", required=True, type=Path, help="JSON results (written as they come)")
    parser.add_argument("--seconds", type=float, help="clip length (default 10 on the GPU, 1 on the CPU)")
    parser.add_argument("--legacy-clips", type=int, help="clips through the old path (default 2 GPU, 4 CPU)")
    parser.add_argument("--batches", default=None, help="batch sizes, comma-separated (default 16,64 GPU; 16 CPU)")
    parser.add_argument("--budget-seconds", type=float, default=150.0,
                        help="skip stages that would start after this much time (default 150)")
    args = parser.parse_args()
    started = time.monotonic()
    results = Results(args.out, started)
    device = torch.device("cuda" if args.cuda else "cpu")
    if args.cuda and not torch.cuda.is_available():
        sys.exit("--cuda asked for, but torch sees no CUDA device")
    seconds = args.seconds or (10.0 if args.cuda else 1.0)
    legacy_count = args.legacy_clips or (2 if args.cuda else 4)
    batch_sizes = [int(b) for b in (args.batches or ("16,64" if args.cuda else "16")).split(",")]
    import transformers

    results.put("environment", {"device": torch.cuda.get_device_name(device) if args.cuda else "cpu",
                                "torch": torch.__version__, "transformers": transformers.__version__,
                                "threads": torch.get_num_threads(), "clip_seconds": seconds, "guidance": 3.0})

    def in_budget(stage: str) -> bool:
        if time.monotonic() - started < args.budget_seconds:
            return True
        results.put(f"skipped {stage}", "time budget spent")
        return False

    with tempfile.TemporaryDirectory(prefix="aurax-bench-model-") as tmp:
        model_id, build_s = build_model(args.cuda, Path(tmp))
        model = load_musicgen(model_id)
        tokenizer = load_tokenizer(model_id)
        parameters = sum(p.numel() for p in model.parameters())
        results.put("model", {"id": "musicgen-small architecture, random weights" if args.cuda else model_id,
                              "parameters": parameters, "build_and_save_s": round(build_s, 1)})

        # --- the old path: batch 1, fp32 ---------------------------------------------------------------------
        model.to(device)
        legacy_clip(model, tokenizer, PROMPTS[0], 1, min(seconds, 1.0), device)  # warm-up (CUDA init, kernels)
        legacy = [legacy_clip(model, tokenizer, PROMPTS[i], 2024 + i, seconds, device) for i in range(legacy_count)]
        per_clip = float(np.mean(legacy))
        results.put("per-clip path (batch 1, fp32)", {"clips": legacy_count, "s_per_clip": round(per_clip, 3),
                                                      "each_s": [round(s, 2) for s in legacy]})

        # --- the batched path, in each half precision the GPU has --------------------------------------------
        settings = SamplingSettings(seconds=seconds, guidance_scale=3.0, top_k=250, temperature=1.0)
        precisions = ["auto", "fp16"] if args.cuda and torch.cuda.is_bf16_supported(including_emulation=False) \
            else ["auto"]
        best = math.inf
        for precision in precisions:
            if not in_budget(f"batched {precision}"):
                break
            generator = ClipGenerator(model, tokenizer, settings, device, precision, max(batch_sizes))
            results.put(f"batch size the job would choose ({generator.precision})", generator.batch_size)
            timed_batch(generator, specs(2))  # warm-up in this precision
            for size in batch_sizes:
                if not in_budget(f"batched {generator.precision} x {size}"):
                    break
                took, peak, clips = timed_batch(generator, specs(size))
                best = min(best, took / size)
                finite = sum(c.finite for c in clips)
                results.put(f"batched {generator.precision} x {size}", {
                    "s_per_batch": round(took, 2), "s_per_clip": round(took / size, 4),
                    "clips_per_s": round(size / took, 2), "speedup_vs_per_clip": round(per_clip / (took / size), 1),
                    "peak_gpu_mb_per_clip": round(peak / 1e6, 1) if peak is not None else None,
                    "finite_clips": f"{finite}/{size}"})

        # --- reproducibility: alone vs inside the batch ------------------------------------------------------
        if in_budget("alone vs batch"):
            generator = ClipGenerator(model, tokenizer, settings, device, "auto", 16)
            batch = generator.generate(specs(8))
            same = []
            for clip in batch[:2]:
                alone = generator.generate([clip.spec])[0]
                steps = min(len(alone.codes), len(clip.codes))
                differing = np.nonzero(np.any(alone.codes[:steps] != clip.codes[:steps], axis=1))[0]
                same.append({"index": clip.spec.index, "identical_codes": bool(differing.size == 0),
                             "first_differing_step": int(differing[0]) if differing.size else None,
                             "steps": steps, "max_abs_audio_difference": float(np.max(np.abs(alone.samples
                                                                                             - clip.samples)))})
            results.put(f"alone vs inside a batch of 8 ({generator.precision})", same)

    if math.isfinite(best):
        results.put("summary", {"per_clip_s": round(per_clip, 3), "best_batched_s_per_clip": round(best, 4),
                                "speedup": round(per_clip / best, 1), "goal": ">= 50x on the same GPU"})


if __name__ == "__main__":
    main()
