"""Projected time and cost of a run before it starts, from its config and the figures in `figures`.

Training cost follows from model FLOPs (`flops`, the count the GPU benchmark's MFU uses): each example of
`segment_seconds` is `segment_seconds x 50 + 3` decoder tokens, each costing 6 FLOPs forward and backward per
decoder weight it multiplies (LoRA skips the weight gradients: 4), plus attention. Throughput is the T4's fp16 peak
times the model-FLOPs utilisation (MFU) measured for the plan the job picks within a T4's memory
(`train_utilisation`; recomputation by activation checkpointing is inside that figure, as MFU does not count it),
unless a measured samples/s is given.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from aurax_contracts import RunConfig

from ..dataset.plan import expected_clips
from . import figures as f
from .flops import decoder_train_flops_per_sample
from .sample_size import generation_hours


@dataclass(frozen=True)
class Phase:
    name: str
    hours: float
    usd: float
    detail: str


@dataclass(frozen=True)
class Estimate:
    run_id: str
    phases: list[Phase]
    samples_per_second: float
    steps_per_epoch: int
    train_clips: int
    storage_usd: float
    budget_usd: float
    assumptions: list[str] = field(default_factory=list)

    @property
    def total_usd(self) -> float:
        return sum(p.usd for p in self.phases) + self.storage_usd

    @property
    def total_hours(self) -> float:
        return sum(p.hours for p in self.phases)

    @property
    def decision_usd(self) -> float:
        """Spend by the go/no-go decision (what a NO-GO costs)."""
        return sum(p.usd for p in self.phases if not p.name.endswith("(GO only)")) + self.storage_usd / 2

    @property
    def within_budget(self) -> bool:
        return self.total_usd <= self.budget_usd

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "total_usd": round(self.total_usd, 2), "total_hours": round(self.total_hours, 2),
                "decision_usd": round(self.decision_usd, 2), "within_budget": self.within_budget}


def train_flops_per_sample(config: RunConfig) -> float:
    """Model FLOPs of one training example of musicgen-small (the numerator of MFU: a recomputed forward is not
    counted)."""
    return decoder_train_flops_per_sample(
        layers=int(f.DECODER_LAYERS.value), width=int(f.DECODER_WIDTH.value), ffn_dim=int(f.DECODER_FFN_DIM.value),
        codebooks=int(f.CODEBOOKS.value), codebook_size=int(f.CODEBOOK_SIZE.value),
        audio_tokens=config.training.segment_seconds * f.FRAMES_PER_SECOND.value + f.CODEBOOKS.value - 1,
        text_tokens=f.PROMPT_TOKENS.value, lora=config.model.finetune == "lora")


def train_utilisation(config: RunConfig) -> f.Figure:
    """The MFU a T4 (16 GB, fp16) is taken to reach with this config: the H200 measurement of the plan the job
    picks within 15 GiB, times the transfer assumption. Eager attention is what the job ran before issue 11;
    checkpointing forced off leaves only micro-batch 4 in a T4's memory."""
    if config.model.attention == "eager":
        measured = f.H200_MFU_BEFORE_ISSUE_11
    elif config.training.activation_checkpointing == "off":
        measured = f.H200_MFU_SDPA_MICRO_4
    else:
        measured = f.JOB_MFU_WITHIN_15_GIB
    return f.Figure(measured.value * f.T4_MFU_TRANSFER.value, measured.unit, measured.source)


def train_samples_per_second(config: RunConfig) -> float:
    return f.T4_FP16_PEAK_FLOPS.value * train_utilisation(config).value / train_flops_per_sample(config)


def estimate(config: RunConfig, *, samples_per_second: float | None = None,
             gpu_usd_per_hour: float | None = None) -> Estimate:
    t, ev = config.training, config.evaluation
    train_clips, validation_clips, clips_source = expected_clips(config.dataset)
    steps_per_epoch = math.ceil(train_clips / t.batch_size)
    rate = samples_per_second or train_samples_per_second(config)
    gpu_price = gpu_usd_per_hour or f.GPU_SPOT_USD_PER_HOUR.value
    overhead = 1 + f.INTERRUPTION_OVERHEAD.value
    start_hours = f.JOB_START_SECONDS.value / 3600

    def epoch_hours() -> float:
        # one pass over the training clips plus a forward-only pass over the validation clips (~1/3 the cost)
        return (train_clips + validation_clips / 3) / rate / 3600

    def gpu(name: str, hours: float, detail: str) -> Phase:
        hours = hours * overhead + start_hours
        return Phase(name, hours, hours * gpu_price, detail)

    generate_hours = generation_hours(config)
    prepare_hours = (f.MTAT_DOWNLOAD_BYTES.value / f.DOWNLOAD_BYTES_PER_SECOND.value
                     + (train_clips + validation_clips) * f.PREPARE_SECONDS_PER_CLIP.value) / 3600 + start_hours
    after = t.total_epochs - t.decision_epoch
    phases = [
        Phase("prepare dataset", prepare_hours, prepare_hours * f.CPU_SPOT_USD_PER_HOUR.value,
              f"download MTAT, encode {train_clips + validation_clips} clips (skipped when already prepared)"),
        gpu("preflight", 0.1, "detector suite, GPU and data checks"),
        gpu(f"train to epoch {t.decision_epoch}", t.decision_epoch * epoch_hours(),
            f"{t.decision_epoch} x {steps_per_epoch} steps at {rate:.2f} samples/s"),
        gpu("evaluate (decision)", generate_hours, f"2 x {ev.clips_per_model} clips of {ev.clip_seconds:g} s"),
    ]
    if after:
        phases += [gpu(f"train to epoch {t.total_epochs} (GO only)", after * epoch_hours(),
                       f"{after} x {steps_per_epoch} steps"),
                   gpu("evaluate (final) (GO only)", generate_hours, "as at the decision")]
    checkpoint = f.CHECKPOINT_BYTES_LORA.value if config.model.finetune == "lora" else f.CHECKPOINT_BYTES_FULL.value
    months = max(sum(p.hours for p in phases) / (24 * 30), 1.0)  # kept at least a month after the run
    storage = (checkpoint * config.checkpoint.keep_last + f.MTAT_DOWNLOAD_BYTES.value) / 1e9 \
        * f.S3_USD_PER_GB_MONTH.value * months
    assumptions = [f"{name}: {fig.value:g} {fig.unit} ({fig.source})" for name, fig in vars(f).items()
                   if isinstance(fig, f.Figure) and fig.source.startswith("assumed")]
    assumptions.insert(0, f"clips: {clips_source}")
    if samples_per_second:
        assumptions.insert(0, f"training throughput: {samples_per_second:g} samples/s (given)")
    else:
        utilisation = train_utilisation(config)
        assumptions.insert(0, f"training MFU on a T4: {utilisation.value:.1%} ({utilisation.source})")
    return Estimate(config.run_id, phases, rate, steps_per_epoch, train_clips, storage,
                    config.max_cost_usd, assumptions)


def render(e: Estimate) -> str:
    width = max(len(p.name) for p in e.phases)
    header = (f"run {e.run_id}: {e.train_clips} training clips, {e.steps_per_epoch} steps/epoch, "
              f"{e.samples_per_second:.2f} samples/s")
    lines = [header, ""]
    lines += [f"  {p.name:<{width}}  {p.hours:7.1f} h  ${p.usd:8.2f}   {p.detail}" for p in e.phases]
    total = (f"  total {e.total_hours:.1f} h, ${e.total_usd:.2f} of the ${e.budget_usd:g} budget "
             f"({'within' if e.within_budget else 'OVER'} budget); a NO-GO at the decision costs about "
             f"${e.decision_usd:.2f}")
    lines += [f"  {'storage (S3)':<{width}}  {'':7}    ${e.storage_usd:8.2f}", "", total, "",
              "assumed figures (replace with measurements):"]
    lines += [f"  - {a}" for a in e.assumptions]
    return "\n".join(lines)
