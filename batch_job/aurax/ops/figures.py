"""The figures `aurax estimate` projects time and cost from, each with where it comes from.

A figure marked "assumed" is an engineering estimate, not a measurement on a T4: replace it with the
measured value when bench/RESULTS.md or a real run's first epoch (`aurax status` shows samples/s in the
metrics) gives one, or pass `--samples-per-second` / `--spot-usd-per-hour` to `aurax estimate`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    value: float
    unit: str
    source: str


# --- the GPU (NVIDIA T4 on g4dn) ---------------------------------------------------------------------------
T4_FP16_PEAK_FLOPS = Figure(65e12, "FLOP/s", "NVIDIA T4 datasheet: 65 TFLOPS mixed-precision (FP16/FP32) peak")
# --- training utilisation (model-FLOPs utilisation, MFU), measured by this project on an H200 -------------------
# shared/notes/gpu-measurements.md (2026-11-29): real musicgen-small architecture, 30 s segments, bf16, AdamW. The
# measured figure is samples/s; MFU = samples/s x 3.934 TFLOP per example (`ops.flops`, this file's model figures)
# / 989 TFLOPS (H200 dense bf16). The notes' own MFU column counted the cross-attention keys and values per audio
# token (they are projections of the ~20 text tokens) and the embeddings: 11% more FLOPs than the example needs.
H200_MFU_BEFORE_ISSUE_11 = Figure(0.0581, "fraction of peak",
                                  "measured: H200, eager attention, activation checkpointing, micro-batch 4 "
                                  "(the default before issue 11): 14.6 samples/s, 9.3 GiB (gpu-measurements.md)")
H200_MFU_SDPA_MICRO_4 = Figure(0.1376, "fraction of peak",
                               "measured: H200, SDPA, no checkpointing, micro-batch 4 (what fits 15 GiB without "
                               "checkpointing): 34.6 samples/s, 14.1 GiB (gpu-measurements.md)")
H200_MFU_SDPA_CHECKPOINTED_MICRO_32 = Figure(0.2681, "fraction of peak",
                                             "measured: H200, SDPA, activation checkpointing, micro-batch 32: 67.4 "
                                             "samples/s, 14.5 GiB (gpu-measurements.md)")
#: THE LEAD UPDATES THIS after the GPU run: the MFU of `aurax job train` itself with the default plan within
#: 15 GiB in fp16 (bench/gpu_train_benchmark.py, variant "default plan within 15 GiB, fp16"; bench/RESULTS.md).
#: Until then: the bare-loop measurement of the plan the job picks within 15 GiB.
JOB_MFU_WITHIN_15_GIB = Figure(H200_MFU_SDPA_CHECKPOINTED_MICRO_32.value, "fraction of peak",
                               "measured on an H200 for the plan the job picks within 15 GiB (SDPA, checkpointing, "
                               "micro-batch 32, bare loop); pending: the job itself, bench/gpu_train_benchmark.py")
T4_MFU_TRANSFER = Figure(1.0, "ratio",
                         "assumed: a T4 (16 GB, fp16) reaches the MFU measured on an H200 within 15 GiB with the "
                         "same plan; run the GPU benchmark on a T4 to replace")
T4_GENERATION_SECONDS_PER_AUDIO_SECOND = Figure(
    0.22, "s per s of audio per clip",
    "assumed: musicgen-small generating 64 clips per batch in fp16 with guidance 3 measured 0.0148 s per "
    "second of audio on an H200 (shared/notes/gpu-measurements.md), times 15, the H200/T4 ratio of memory "
    "bandwidth (4.8 vs 0.32 TB/s) and of half-precision tensor peak; bench/bench_generate.py on a T4 replaces it")

# --- the model (musicgen-small) ------------------------------------------------------------------------------
DECODER_LAYERS = Figure(24, "layers", "musicgen-small config (decoder.num_hidden_layers)")
DECODER_WIDTH = Figure(1024, "hidden size", "musicgen-small config (decoder.hidden_size)")
DECODER_FFN_DIM = Figure(4096, "feed-forward size", "musicgen-small config (decoder.ffn_dim)")
CODEBOOKS = Figure(4, "codebooks", "musicgen-small config (decoder.num_codebooks)")
CODEBOOK_SIZE = Figure(2048, "codes", "musicgen-small config (decoder.vocab_size)")
PROMPT_TOKENS = Figure(20, "T5 tokens", "assumed: a training caption of 6-8 MTAT tags (cross-attention's keys and "
                                        "values; 0.2% of a 30 s example's FLOPs)")
FRAMES_PER_SECOND = Figure(50, "frames/s", "EnCodec 32 kHz as used by MusicGen: 50 frames per second")
LORA_TRAINABLE_FRACTION = Figure(0.01, "fraction", "assumed: rank-16 adapters on the attention projections")
CHECKPOINT_BYTES_FULL = Figure(5.1e9, "bytes",
                               "fp32 weights (4 B) + AdamW moments (8 B) per decoder parameter, plus EnCodec/T5")
CHECKPOINT_BYTES_LORA = Figure(0.1e9, "bytes", "adapters and their optimiser state only (assumed)")

# --- the data ------------------------------------------------------------------------------------------------
MTAT_DOWNLOAD_BYTES = Figure(2.97e9, "bytes", "mp3.zip.001-.003 sizes published by the MTAT site")
DOWNLOAD_BYTES_PER_SECOND = Figure(20e6, "B/s", "assumed: the MTAT web site to an EC2 instance")
PREPARE_SECONDS_PER_CLIP = Figure(0.5, "s per clip",
                                  "measured: 7.9 CPU-s per 29 s clip for mp3 decode, resample to 32 kHz and "
                                  "musicgen-small EnCodec encode (bench/bench_dataset.py, bench/RESULTS.md), over "
                                  "the prepare job's 16 vCPUs (c6i.4xlarge, the template's default)")

# --- prices (us-east-1) --------------------------------------------------------------------------------------
GPU_SPOT_USD_PER_HOUR = Figure(0.22, "USD/h",
                               "assumed: g4dn.xlarge spot in us-east-1 (price history mostly $0.16-0.26/h); "
                               "the run's cost ledger uses the live spot price history instead")
CPU_SPOT_USD_PER_HOUR = Figure(0.28, "USD/h", "assumed: c6i.4xlarge spot in us-east-1 (the prepare instance)")
S3_USD_PER_GB_MONTH = Figure(0.023, "USD/GB-month", "S3 Standard, us-east-1, first 50 TB (AWS price list)")

# --- overheads -----------------------------------------------------------------------------------------------
JOB_START_SECONDS = Figure(420, "s per job",
                           "assumed: spot capacity, instance boot and pulling the ~8 GB CUDA image")
INTERRUPTION_OVERHEAD = Figure(0.08, "fraction of GPU time",
                               "assumed: work lost since the last checkpoint (10 min interval) and restarts, "
                               "at g4dn's <5% monthly interruption frequency (AWS Spot Instance Advisor)")
