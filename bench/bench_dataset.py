"""How fast `aurax job prepare` turns MagnaTagATune clips into codes, what the default selection costs on a
g4dn.xlarge, and how long the dataset plan takes on a full-size annotations file.

Measures, on this machine's CPU, per 29.1 s MTAT-like clip (mono 16 kHz mp3): decode (libsndfile), resample
to 32 kHz (soxr HQ) and EnCodec encode, with the tiny test codec and with musicgen-small's real EnCodec
architecture (facebook/encodec_32khz's config, randomly initialised: same compute, no download). Then projects
hours for the default selection (about 2,470 clips, extrapolated from real labels: README, "The data") on a
g4dn.xlarge (4 vCPUs, one T4), encode time from the codec's counted FLOPs at assumed T4 fp32 efficiencies.
`--plan` instead times parsing and planning a full-size annotations file (25,863 clips x 188 tags, labels drawn
at random: what `aurax start` does on a laptop).

    .venv/bin/python bench/bench_dataset.py [--clips 4] [--batch-size 2]
    .venv/bin/python bench/bench_dataset.py --plan
"""

from __future__ import annotations

import argparse
import io
import os
import time

import numpy as np
import soundfile
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import EncodecConfig, EncodecModel

from aurax.dataset.annotations import AnnotatedClip, format_annotations, parse_annotations
from aurax.dataset.audio import decode_clip, encode_batch
from aurax.dataset.mtat_tags import MTAT_TAGS
from aurax.dataset.plan import EXTRAPOLATED_DEFAULT_CLIPS, make_plan
from aurax.model import TINY_MODEL_ID, load_musicgen
from aurax_contracts.config import MTAT_CLIPS, DatasetSelection

CLIP_SECONDS = 29.1
#: What the default rules select on the real annotations (extrapolated from real labels).
TARGET_CLIPS = sum(EXTRAPOLATED_DEFAULT_CLIPS.values())
MTAT_BYTES = 1_100_000_000 * 2 + 772_769_864
#: T4 fp32 peak (NVIDIA datasheet: 8.1 TFLOPS) and the shares of it the codec's 1-D convolutions (32-512
#: channels, cuDNN) are assumed to reach: a pessimistic and a likely figure.
T4_FP32_FLOPS = 8.1e12
T4_EFFICIENCIES = (0.10, 0.25)
G4DN_VCPUS = 4
#: Its 4 vCPUs are 2 physical cores (hyper-threads): CPU-bound work scales by 2, not 4.
G4DN_CORES = 2


def musicgen_small_codec() -> EncodecModel:
    """facebook/encodec_32khz's architecture (musicgen-small's audio encoder), random weights; codebooks
    filled with random entries since a config-built model has all-zero codebooks."""
    config = EncodecConfig(sampling_rate=32000, audio_channels=1, num_filters=64, codebook_size=2048,
                           codebook_dim=128, hidden_size=128, upsampling_ratios=[8, 5, 4, 4],
                           target_bandwidths=[2.2], num_lstm_layers=2, num_residual_layers=1, kernel_size=7,
                           last_kernel_size=7, residual_kernel_size=3, dilation_growth_rate=2, compress=2,
                           use_causal_conv=False, use_conv_shortcut=False, pad_mode="reflect",
                           norm_type="weight_norm", normalize=False, trim_right_ratio=1.0)
    torch.manual_seed(0)
    model = EncodecModel(config).eval()
    for layer in model.quantizer.layers:
        layer.codebook.embed.normal_()
    return model


class _CodecAsMusicgen(torch.nn.Module):
    """Just enough of MusicgenForConditionalGeneration for `aurax.model.encode_audio`."""

    def __init__(self, codec: EncodecModel, num_codebooks: int) -> None:
        super().__init__()
        self.audio_encoder = codec
        self.config = type("Config", (), {"decoder": type("Decoder", (), {"num_codebooks": num_codebooks})()})()


def mtat_like_mp3(seed: int) -> bytes:
    rate = 16_000
    t = np.arange(int(CLIP_SECONDS * rate)) / rate
    rng = np.random.default_rng(seed)
    audio = 0.3 * np.sin(2 * np.pi * (100 + seed) * t) * np.exp(-3 * (t % 0.53)) + 0.05 * rng.standard_normal(t.size)
    buffer = io.BytesIO()
    soundfile.write(buffer, audio.astype(np.float32), rate, format="MP3", bitrate_mode="CONSTANT",
                    compression_level=0.9)  # ~32 kbit/s like MTAT
    return buffer.getvalue()


def encoder_flops_per_clip(model: torch.nn.Module, samples: int) -> float:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.audio_encoder.encode(torch.zeros(1, 1, samples))
    return float(counter.get_total_flops())


def time_encode(model: torch.nn.Module, waveforms: list[np.ndarray], batch_size: int) -> tuple[float, float]:
    """Wall seconds and process CPU seconds (all threads) per clip; on a shared machine the CPU seconds are
    the steadier figure."""
    encode_batch(model, waveforms[:1], 640, torch.device("cpu"))  # warm-up
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(waveforms), batch_size):
        encode_batch(model, waveforms[i:i + batch_size], 640, torch.device("cpu"))
    return (time.perf_counter() - wall) / len(waveforms), (time.process_time() - cpu) / len(waveforms)


def bench_plan(repeats: int = 3) -> None:
    """Parse and plan a full-size annotations file; labels at random, each tag on ~3% of clips (MTAT's top tags
    are on 5-20%, most on under 2%)."""
    rng = np.random.default_rng(0)
    flags = rng.random((MTAT_CLIPS, len(MTAT_TAGS))) < 0.03
    clips = [AnnotatedClip(i + 1, frozenset(t for t, on in zip(MTAT_TAGS, row, strict=True) if on),
                           f"{'0123456789abcdef'[i % 16]}/artist-album-{i:05d}-title-0-29.mp3")
             for i, row in enumerate(flags)]
    data = format_annotations(MTAT_TAGS, clips)
    parse_s, plan_s = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        annotations = parse_annotations(data)
        parse_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        plan = make_plan(annotations, DatasetSelection(), "bench")
        plan_s.append(time.perf_counter() - start)
    print(f"annotations: {MTAT_CLIPS:,} clips x {len(MTAT_TAGS)} tags, {len(data) / 1e6:.1f} MB; best of {repeats}: "
          f"parse {min(parse_s):.2f} s, plan {min(plan_s):.2f} s ({plan.selected_total:,} selected, "
          f"{len(plan.fixes)} fixes checked)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--plan", action="store_true", help="time the dataset plan instead")
    args = parser.parse_args()
    if args.plan:
        bench_plan()
        return
    threads = torch.get_num_threads()
    print(f"CPU: {os.cpu_count()} cores visible, torch threads {threads}, load average {os.getloadavg()[0]:.1f}; "
          f"{args.clips} clips of {CLIP_SECONDS} s")

    mp3s = [mtat_like_mp3(i) for i in range(args.clips)]
    print(f"mp3 size {np.mean([len(m) for m in mp3s]) / 1024:.0f} KiB/clip")
    start = time.process_time()
    decoded = [decode_clip(m, 16_000, 1.0) for m in mp3s]
    decode_s = (time.process_time() - start) / args.clips
    start = time.process_time()
    waveforms = [d.waveform for d in (decode_clip(m, 32_000, 1.0) for m in mp3s)]  # type: ignore[union-attr]
    decode_resample_s = (time.process_time() - start) / args.clips
    assert all(hasattr(d, "waveform") for d in decoded)
    print(f"decode            {decode_s * 1000:7.1f} CPU-ms/clip ({1 / decode_s:6.1f} clips/s per core)")
    print(f"decode + resample {decode_resample_s * 1000:7.1f} CPU-ms/clip "
          f"({1 / decode_resample_s:6.1f} clips/s per core)")

    samples = len(waveforms[0])
    rows = []
    for name, model in (("tiny test codec", load_musicgen(TINY_MODEL_ID)),
                        ("musicgen-small EnCodec (32 kHz, 4x2048)", _CodecAsMusicgen(musicgen_small_codec(), 4))):
        encode_wall_s, encode_cpu_s = time_encode(model, waveforms, args.batch_size)
        flops = encoder_flops_per_clip(model, samples)
        total_wall_s = decode_resample_s + encode_wall_s
        total_cpu_s = decode_resample_s + encode_cpu_s
        print(f"{name}: encoder {flops / 1e9:.1f} GFLOP/clip; encode {encode_wall_s:.2f} s/clip wall, "
              f"{encode_cpu_s:.2f} CPU-s/clip; decode+resample+encode {1 / total_wall_s:.3f} clips/s wall on "
              f"{threads} threads, {1 / total_cpu_s:.3f} clips/s per core")
        rows.append((name, total_cpu_s, flops))

    name, cpu_total_s, flops = rows[-1]
    cpu_side_s = decode_resample_s / G4DN_CORES  # decode threads overlap the GPU's encoding
    cpu_only_hours = TARGET_CLIPS * cpu_total_s / G4DN_CORES / 3600
    print()
    print(f"Projection for {TARGET_CLIPS:,} clips (the default selection) on a g4dn.xlarge ({G4DN_VCPUS} vCPUs = "
          f"{G4DN_CORES} cores, one T4 at {T4_FP32_FLOPS / 1e12} TFLOPS fp32 peak), {name}:")
    for efficiency in T4_EFFICIENCIES:
        t4_encode_s = flops / (T4_FP32_FLOPS * efficiency)
        hours = TARGET_CLIPS * max(t4_encode_s, cpu_side_s) / 3600
        print(f"  T4 at {efficiency:.0%} of peak: encode {t4_encode_s * 1000:.0f} ms/clip (CPU decode+resample "
              f"{cpu_side_s * 1000:.0f} ms/clip in parallel) -> {hours:.2f} h; GPU speed-up over this CPU's encode "
              f"{(cpu_total_s - decode_resample_s) / G4DN_CORES / t4_encode_s:.0f}x its 2 cores")
    print(f"  CPU only (no GPU), this machine's CPU-seconds per clip over {G4DN_CORES} cores: {cpu_only_hours:.1f} h")
    for mb_s in (5, 20):
        print(f"  download of the {MTAT_BYTES / 1e9:.2f} GB archive at {mb_s} MB/s: "
              f"{MTAT_BYTES / (mb_s * 1e6) / 3600:.2f} h (once: later runs read the S3 cache)")


if __name__ == "__main__":
    main()
