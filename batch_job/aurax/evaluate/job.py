"""The evaluation job: generate with both arms, score every clip, compare, and write the report.

Writes under `{run_uri}/eval/{point}/` (== `RunLayout(root, run_id).eval_uri(point)`): `clips/*.wav`,
`plots/*.png`, `report.html`, and `report.json` last, so that its presence means a complete evaluation.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import torch
from pydantic import ValidationError
from transformers import MusicgenForConditionalGeneration

from aurax_contracts import (
    ArmSummary,
    CheckpointManifest,
    ClipScore,
    Comparison,
    ContractError,
    EvalReport,
    Provenance,
    RunConfig,
    parse_metric_line,
)
from aurax_contracts.layout import CHECKPOINTS_DIR, METRICS_DIR, join
from aurax_contracts.metrics import Heartbeat, TrainStep, ValLoss, utc_now

from .. import storage
from ..audio.config import AnalysisConfig
from ..audio.io import encode_wav
from ..audio.scorer import COMPONENTS, ScoreResult, score
from ..dataset.shards import load_manifest
from ..metrics_sink import MetricsSink
from ..model import load_musicgen, load_tokenizer
from ..version import code_version
from . import plots
from .generate import ClipSpec, clip_specs, generate_clip
from .html import render_report
from .stats import fisher_greater, wilson_interval

log = logging.getLogger(__name__)

TreatmentLoader = Callable[[str, RunConfig], tuple[MusicgenForConditionalGeneration, CheckpointManifest, str]]
ARMS = ("treatment", "control")


@dataclass(frozen=True)
class GeneratedClip:
    arm: str
    spec: ClipSpec
    samples: np.ndarray
    sample_rate: int
    result: ScoreResult
    audio_name: str


def eval_uri(run_uri: str, point: str) -> str:
    """`RunLayout(root, run_id).eval_uri(point)` from the run's URI."""
    return join(run_uri, "eval", point)


def _default_treatment_loader(checkpoint_uri: str, config: RunConfig
                              ) -> tuple[MusicgenForConditionalGeneration, CheckpointManifest, str]:
    from ..train.checkpoint import load_trained_model

    return load_trained_model(checkpoint_uri, config)


def checkpoint_dir_uri(checkpoint_uri: str, manifest: CheckpointManifest) -> str:
    """The URI of the checkpoint directory the manifest describes (its name follows the training position)."""
    from ..train.checkpoint import Position, checkpoint_name

    position = Position(manifest.step, manifest.epoch, manifest.index_in_epoch, manifest.epoch_complete)
    return join(checkpoint_uri, checkpoint_name(position))


def epochs_completed(manifest: CheckpointManifest) -> int:
    """Epochs fully trained at the checkpoint (the run's decision_epoch at the decision point), not the 0-based
    epoch in progress that the manifest records."""
    return manifest.epoch + 1 if manifest.epoch_complete else manifest.epoch


def read_loss_curves(metrics_uri: str) -> tuple[list[tuple[int, float]], list[tuple[int, float]], int]:
    """(training loss by step, validation loss by step, bad lines skipped) from the run's metric chunks.

    Chunks list in write order (attempt, then sequence), so a step logged again after a resume keeps its
    latest value."""
    train: dict[int, float] = {}
    validation: dict[int, float] = {}
    bad = 0
    for uri in storage.list_uris(metrics_uri):
        if not uri.endswith(".jsonl"):
            continue
        for line in storage.read_text(uri).splitlines():
            if not line.strip():
                continue
            try:
                record = parse_metric_line(line)
            except ValidationError:
                bad += 1
                continue
            if isinstance(record, TrainStep) and np.isfinite(record.loss):
                train[record.step] = record.loss
            elif isinstance(record, ValLoss) and np.isfinite(record.val_loss):
                validation[record.step] = record.val_loss
    return sorted(train.items()), sorted(validation.items()), bad


def summarise(model: str, clips: list[GeneratedClip]) -> ArmSummary:
    authentic = sum(c.result.authentic for c in clips)
    low, high = wilson_interval(authentic, len(clips))
    return ArmSummary(model=model, clips=len(clips), authentic=authentic,
                      rate=authentic / len(clips) if clips else 0.0, wilson_low=low, wilson_high=high,
                      mean_score=float(np.mean([c.result.score for c in clips])) if clips else 0.0)


class _Heartbeats:
    """Heartbeats while generating, so the monitor does not take a long evaluation for an idle job."""

    def __init__(self, run_uri: str, run_id: str, manifest: CheckpointManifest) -> None:
        from ..train.interrupts import ImdsClient, read_placement

        attempt = int(os.environ.get("AWS_BATCH_JOB_ATTEMPT") or 1)
        placement = read_placement(ImdsClient.from_env())  # instance type and AZ price the GPU time
        self.sink = MetricsSink(join(run_uri, METRICS_DIR), attempt)
        self.record = dict(run_id=run_id, attempt=attempt, step=manifest.step, epoch=manifest.epoch,
                           phase="evaluate", instance_type=placement.instance_type,
                           availability_zone=placement.availability_zone,
                           batch_job_id=os.environ.get("AWS_BATCH_JOB_ID"))

    def __enter__(self) -> _Heartbeats:
        self.beat()
        self.sink.flush()
        self.sink.start_ticker(self.beat)
        return self

    def beat(self) -> None:
        self.sink.emit(Heartbeat(time=utc_now(), **self.record))

    def __exit__(self, *exc: object) -> None:
        self.sink.close()


def _generate_arm(arm: str, model: MusicgenForConditionalGeneration, config: RunConfig,
                  analysis: AnalysisConfig, out_uri: str, device: torch.device) -> list[GeneratedClip]:
    evaluation = config.evaluation
    tokenizer = load_tokenizer(config.model.model_id)
    model.to(device)
    clips = []
    for spec in clip_specs(evaluation):
        samples, sample_rate = generate_clip(model, tokenizer, spec, evaluation.clip_seconds,
                                             evaluation.guidance_scale, device)
        result = score(samples, sample_rate, analysis, threshold=evaluation.score_threshold)
        name = f"clips/{arm}-{spec.index:04d}.wav"
        storage.write_bytes(join(out_uri, name), encode_wav(samples, sample_rate), "audio/wav")
        clips.append(GeneratedClip(arm, spec, samples, sample_rate, result, name))
        log.info("%s clip %d/%d (seed %d): score %.1f", arm, spec.index + 1, evaluation.clips_per_model,
                 spec.seed, result.score)
    model.to("cpu")
    return clips


def _write_figures(out_uri: str, clips: list[GeneratedClip], threshold: float,
                   run_uri: str) -> dict[str, str]:
    """Render and write the plots; returns caption -> path relative to the report."""
    figures: list[tuple[str, str, bytes]] = []
    by_arm = {arm: [c for c in clips if c.arm == arm] for arm in ARMS}
    figures.append(("scores", "Score distributions, treatment vs control", plots.score_distributions(
        {arm: [c.result.score for c in group] for arm, group in by_arm.items()}, threshold)))
    figures.append(("components", "Mean score components per arm", plots.component_breakdown(
        {arm: {n: float(np.mean([c.result.components[n] for c in group])) for n in COMPONENTS}
         for arm, group in by_arm.items() if group})))
    ranked = sorted(clips, key=lambda c: c.result.score)
    for name, label, clip in (("spectrogram-best", "Best clip", ranked[-1]),
                              ("spectrogram-worst", "Worst clip", ranked[0])):
        title = f"{label}: {clip.arm} #{clip.spec.index} (score {clip.result.score:.1f})"
        labelled = plots.LabelledClip(title, clip.samples, clip.sample_rate, clip.result.detection.events)
        figures.append((name, title, plots.spectrogram(labelled)))
    train, validation, bad = read_loss_curves(join(run_uri, METRICS_DIR))
    if bad:
        log.warning("skipped %d unreadable metric line(s) under %s", bad, join(run_uri, METRICS_DIR))
    if train or validation:
        figures.append(("loss", "Training and validation loss", plots.loss_curves(train, validation)))
    paths = {}
    for name, caption, png in figures:
        path = f"plots/{name}.png"
        storage.write_bytes(join(out_uri, path), png, "image/png")
        paths[caption] = path
    return paths


def run_evaluation(config: RunConfig, *, run_uri: str, dataset_uri: str, point: str,
                   checkpoint_uri: str | None = None, analysis: AnalysisConfig | None = None,
                   load_treatment: TreatmentLoader = _default_treatment_loader,
                   device: torch.device | None = None) -> EvalReport:
    analysis = analysis or AnalysisConfig()
    if config.evaluation.clip_seconds < analysis.detector.min_seconds:  # refuse before paying for generation
        raise ContractError("run config", [
            f"evaluation.clip_seconds {config.evaluation.clip_seconds:g} is shorter than the "
            f"{analysis.detector.min_seconds:g} s the log-drum detector needs; fix: raise "
            "evaluation.clip_seconds (10 s or more gives the tempo and groove measures room)"])
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    checkpoint_uri = checkpoint_uri or join(run_uri, CHECKPOINTS_DIR)
    out_uri = eval_uri(run_uri, point)
    _, dataset_sha256 = load_manifest(dataset_uri)  # InputError (exit 65) when the dataset is missing
    treatment_model, manifest, manifest_sha256 = load_treatment(checkpoint_uri, config)
    treatment_uri = checkpoint_dir_uri(checkpoint_uri, manifest)
    log.info("evaluating %s (epoch %d, step %d) against %s on %d clips each, %s", treatment_uri,
             manifest.epoch, manifest.step, config.model.model_id, config.evaluation.clips_per_model, device)
    with _Heartbeats(run_uri, config.run_id, manifest):
        clips = _generate_arm("treatment", treatment_model, config, analysis, out_uri, device)
        del treatment_model  # one model in memory at a time
        control_model = load_musicgen(config.model.model_id, attention=config.model.attention)
        clips += _generate_arm("control", control_model, config, analysis, out_uri, device)
        del control_model
    treatment = summarise(treatment_uri, [c for c in clips if c.arm == "treatment"])
    control = summarise(config.model.model_id, [c for c in clips if c.arm == "control"])
    comparison = Comparison(difference=treatment.rate - control.rate,
                            p_value=fisher_greater(treatment.authentic, treatment.clips, control.authentic,
                                                   control.clips))
    report = EvalReport(
        run_id=config.run_id, point=point, epoch=epochs_completed(manifest), step=manifest.step,  # type: ignore[arg-type]
        score_threshold=config.evaluation.score_threshold, clip_seconds=config.evaluation.clip_seconds,
        guidance_scale=config.evaluation.guidance_scale, treatment=treatment, control=control,
        comparison=comparison, val_loss=manifest.val_loss,
        provenance=Provenance(checkpoint_uri=treatment_uri, checkpoint_sha256=manifest_sha256,
                              code_version=code_version(), dataset_manifest_sha256=dataset_sha256),
        clips=[ClipScore(arm=c.arm, prompt=c.spec.prompt, seed=c.spec.seed,  # type: ignore[arg-type]
                         audio=c.audio_name, score=c.result.score, authentic=c.result.authentic,
                         components=c.result.components, log_drum_events=len(c.result.detection.events))
               for c in clips],
        created_at=datetime.now(UTC))
    images = _write_figures(out_uri, clips, config.evaluation.score_threshold, run_uri)
    storage.write_text(join(out_uri, report.html_report), render_report(report, images),
                       "text/html; charset=utf-8")
    storage.write_text(join(out_uri, "report.json"), report.model_dump_json(indent=2), "application/json")
    log.info("treatment %.1f%% [%.1f%%, %.1f%%] vs control %.1f%% [%.1f%%, %.1f%%], p = %.4g; report at %s",
             100 * treatment.rate, 100 * treatment.wilson_low, 100 * treatment.wilson_high,
             100 * control.rate, 100 * control.wilson_low, 100 * control.wilson_high, comparison.p_value,
             out_uri)
    return report
