"""The evaluation job: generate with both arms in batches, score every clip as it finishes, compare, report.

Writes under `{run_uri}/eval/{point}/` (== `RunLayout(root, run_id).eval_uri(point)`): `clips/*.wav` with a
`clips/*.json` record each (written as they finish), `plots/*.png`, `report.html`, and `report.json` last, so
that its presence means a complete evaluation.

Interruptions (SIGTERM from Batch, a spot notice, a control-plane stop request) end generation within one
decoding step; the clips already written are kept and the job exits with the interruption's code (75 for
SIGTERM and spot notices). The next attempt resumes from those clips: each is reproducible on its own
(`generate.py`), and the report says which attempt made each clip.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime

import numpy as np
import torch
from pydantic import ValidationError
from transformers import MusicgenForConditionalGeneration, PreTrainedTokenizerBase

from aurax_contracts import (
    CheckpointManifest,
    ClipScore,
    ContractError,
    EvalReport,
    Provenance,
    RunConfig,
    parse_metric_line,
)
from aurax_contracts.evaluation import Arm, GenerationInfo, GroupSummary
from aurax_contracts.layout import CHECKPOINTS_DIR, METRICS_DIR, join, stop_request_uri
from aurax_contracts.metrics import Heartbeat, Interruption, Progress, TrainStep, ValLoss, utc_now

from .. import storage
from ..audio.config import AnalysisConfig
from ..audio.detector import detect
from ..audio.io import load_audio
from ..dataset.shards import load_manifest
from ..interrupts import Cause, ImdsClient, InterruptWatch, Placement, read_placement, spot_notice_source
from ..metrics_sink import MetricsSink
from ..model import load_configured_musicgen, load_tokenizer
from ..version import code_version
from . import plots
from .clips import ClipStore, clip_key
from .generate import (
    ClipGenerator,
    ClipSpec,
    GeneratedClip,
    Interrupted,
    SamplingSettings,
    clip_specs,
    resolve_generation_precision,
)
from .html import render_report
from .summary import by_prompt, by_prompt_set, summarise_group

log = logging.getLogger(__name__)

TreatmentLoader = Callable[[str, RunConfig], tuple[MusicgenForConditionalGeneration, CheckpointManifest, str]]
ARMS: tuple[Arm, Arm] = ("treatment", "control")
#: Threads that score and write finished clips while the GPU generates the next batch.
WRITERS = 4


class EvaluationInterrupted(Exception):
    """The evaluation stopped for `cause` with its finished clips written; exit with `cause.exit_code`."""

    def __init__(self, cause: Cause, clips_kept: int) -> None:
        self.cause = cause
        self.clips_kept = clips_kept
        super().__init__(f"evaluation interrupted ({cause.record_cause}) with {clips_kept} clip(s) kept; "
                         "run the same command again to resume")


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


class _Heartbeats:
    """Heartbeats while generating (so the monitor does not take a long evaluation for an idle job); each tick
    also reads the control plane's stop request."""

    def __init__(self, run_uri: str, run_id: str, manifest: CheckpointManifest, attempt: int,
                 placement: Placement, interrupts: InterruptWatch, clips_written: Callable[[], int]) -> None:
        self.sink = MetricsSink(join(run_uri, METRICS_DIR), attempt)
        self.interrupts = interrupts
        self.clips_written = clips_written
        self.record = dict(run_id=run_id, attempt=attempt, step=manifest.step, epoch=manifest.epoch)
        self.placement = dict(instance_type=placement.instance_type, availability_zone=placement.availability_zone,
                              batch_job_id=os.environ.get("AWS_BATCH_JOB_ID"))

    def __enter__(self) -> _Heartbeats:
        self._tick()
        self.sink.flush()
        self.sink.start_ticker(self._tick)
        return self

    def _tick(self) -> None:
        # The clips this attempt finished are its progress: the idle watch ends an evaluation whose count
        # stands still for the idle timeout, not one that merely runs long.
        self.sink.emit(Heartbeat(time=utc_now(), phase="evaluate", progress=Progress(clips=self.clips_written()),
                                 **self.record, **self.placement))
        self.interrupts.check_stop_request()

    def interrupted(self, cause: Cause) -> None:
        self.sink.emit(Interruption(time=utc_now(), cause=cause.record_cause, **self.record))
        self.sink.flush()

    def __exit__(self, *exc: object) -> None:
        self._tick()  # the attempt's final count
        self.sink.close()


@contextmanager
def _interrupt_watch(run_uri: str) -> Iterator[tuple[InterruptWatch, Placement]]:
    """SIGTERM, spot notices and stop requests, watched from the job's start (model loading included)."""
    imds = ImdsClient.from_env()
    placement = read_placement(imds)  # instance type and AZ price the GPU time
    watch = InterruptWatch(spot_notice_source(imds, placement), stop_request_uri(run_uri))
    watch.start()
    try:
        yield watch, placement
    finally:
        watch.stop()


class _Writers:
    """Scores and writes finished clips on a few threads; at most two batches in flight."""

    def __init__(self, store: ClipStore, config: RunConfig, analysis: AnalysisConfig, attempt: int) -> None:
        self.store, self.config, self.analysis, self.attempt = store, config, analysis, attempt
        self.pool = ThreadPoolExecutor(WRITERS, thread_name_prefix="clip-writer")
        self.in_flight: list[list[Future[ClipScore]]] = []
        self.written: list[ClipScore] = []

    def submit(self, arm: Arm, clips: list[GeneratedClip], keys: dict[int, str]) -> None:
        threshold = self.config.evaluation.score_threshold
        self.in_flight.append([self.pool.submit(self.store.write, arm, clip, keys[clip.spec.index], threshold,
                                                self.analysis, self.attempt) for clip in clips])
        while len(self.in_flight) > 2:
            self._collect(self.in_flight.pop(0))

    def _collect(self, futures: list[Future[ClipScore]]) -> None:
        for future in futures:
            self.written.append(future.result())  # a write error ends the job (the clips before it are kept)

    def drain(self) -> list[ClipScore]:
        while self.in_flight:
            self._collect(self.in_flight.pop(0))
        return self.written

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def _generate_arm(arm: Arm, generator: ClipGenerator, pending: list[ClipSpec], keys: dict[int, str],
                  writers: _Writers, watch: InterruptWatch, device: torch.device) -> GenerationInfo:
    log.info("%s: %d clip(s) to generate on %s in %s, %d per batch", arm, len(pending), device,
             generator.precision, generator.batch_size)
    began = time.monotonic()
    for clips in generator.batches(pending, lambda: watch.pending() is not None):
        writers.submit(arm, clips, keys)
    return GenerationInfo(device=_device_name(device), precision=generator.precision,  # type: ignore[arg-type]
                          batch_size=generator.batch_size, top_k=generator.settings.top_k,
                          temperature=generator.settings.temperature, seconds=time.monotonic() - began)


def _device_name(device: torch.device) -> str:
    return f"cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else device.type


def _free_memory(device: torch.device) -> None:
    """Give back the memory of a model whose last reference was just dropped."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _write_figures(out_uri: str, clips: list[ClipScore], threshold: float, run_uri: str,
                   analysis: AnalysisConfig) -> dict[str, str]:
    """Render and write the plots; returns caption -> path relative to the report."""
    figures: list[tuple[str, str, bytes]] = []
    by_arm = {arm: [c for c in clips if c.arm == arm] for arm in ARMS}
    figures.append(("scores", "Score distributions, treatment vs control", plots.score_distributions(
        {arm: [c.score for c in group] for arm, group in by_arm.items()}, threshold)))
    names = list(clips[0].components) if clips else []
    figures.append(("components", "Mean score components per arm", plots.component_breakdown(
        {arm: {n: float(np.mean([c.components[n] for c in group])) for n in names}
         for arm, group in by_arm.items() if group})))
    ranked = sorted(clips, key=lambda c: c.score)
    for name, label, clip in (("spectrogram-best", "Best clip", ranked[-1]),
                              ("spectrogram-worst", "Worst clip", ranked[0])):
        audio = load_audio(join(out_uri, clip.audio))  # re-read: the job keeps no audio in memory
        events = detect(audio.samples, audio.sample_rate, analysis.detector).events
        title = f"{label}: {clip.arm} #{clip.index} (score {clip.score:.1f})"
        labelled = plots.LabelledClip(title, audio.samples, audio.sample_rate, events)
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


def _flags(overall: GroupSummary) -> list[str]:
    flags = []
    for arm, summary in (("treatment", overall.treatment), ("control", overall.control)):
        if bad := summary.non_finite:
            flags.append(f"non-finite audio: {bad} {arm} clip(s) had NaN/Inf logits or samples (scored 0, not "
                         "authentic); the comparison is suspect (try evaluation.precision fp32)")
    return flags


def run_evaluation(config: RunConfig, *, run_uri: str, dataset_uri: str, point: str,
                   checkpoint_uri: str | None = None, analysis: AnalysisConfig | None = None,
                   load_treatment: TreatmentLoader = _default_treatment_loader,
                   device: torch.device | None = None) -> EvalReport:
    """Evaluate (or resume evaluating) the newest checkpoint against the base model and write the report.

    Raises `ContractError` for clips too short to score, `InputError` for a missing dataset or checkpoint, and
    `EvaluationInterrupted` when a SIGTERM, spot notice or stop request ended it (finished clips kept)."""
    analysis = analysis or AnalysisConfig()
    evaluation = config.evaluation
    if evaluation.clip_seconds < analysis.detector.min_seconds:  # refuse before paying for generation
        raise ContractError("run config", [
            f"evaluation.clip_seconds {evaluation.clip_seconds:g} is shorter than the "
            f"{analysis.detector.min_seconds:g} s the log-drum detector needs; fix: raise "
            "evaluation.clip_seconds (10 s or more gives the tempo and groove measures room)"])
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    checkpoint_uri = checkpoint_uri or join(run_uri, CHECKPOINTS_DIR)
    out_uri = eval_uri(run_uri, point)
    attempt = int(os.environ.get("AWS_BATCH_JOB_ATTEMPT") or 1)
    _, dataset_sha256 = load_manifest(dataset_uri)  # InputError (exit 65) when the dataset is missing
    with _interrupt_watch(run_uri) as (watch, placement):
        treatment_model, manifest, manifest_sha256 = load_treatment(checkpoint_uri, config)
        treatment_uri = checkpoint_dir_uri(checkpoint_uri, manifest)
        specs = clip_specs(evaluation)
        settings = SamplingSettings.from_config(evaluation)
        # The control arm is the configured model at its pinned revision; half precision draws differently from
        # fp32, so a clip counts on resume only at the precision this attempt generates in.
        identities = {"treatment": manifest_sha256,
                      "control": f"{config.model.model_id}@{config.model.resolved_revision() or 'default'}"}
        precision = resolve_generation_precision(evaluation.precision, device)
        keys = {arm: {s.index: clip_key(arm, identities[arm], s, settings, precision, evaluation.score_threshold,
                                        analysis) for s in specs} for arm in ARMS}
        store = ClipStore(out_uri)
        done = store.finished({key: (arm, index) for arm in ARMS for index, key in keys[arm].items()})
        if done:
            log.info("resuming: %d of %d clips already written by earlier attempts", len(done), 2 * len(specs))
        log.info("evaluating %s (epoch %d, step %d) against %s on %d clips each, %s", treatment_uri,
                 manifest.epoch, manifest.step, config.model.model_id, evaluation.clips_per_model, device)
        generation: GenerationInfo | None = None
        model: MusicgenForConditionalGeneration | None = treatment_model
        del treatment_model
        writers = _Writers(store, config, analysis, attempt)
        tokenizer: PreTrainedTokenizerBase | None = None
        with _Heartbeats(run_uri, config.run_id, manifest, attempt, placement, watch,
                         lambda: len(writers.written)) as heartbeats:
            try:
                for arm in ARMS:
                    pending = [s for s in specs if (arm, s.index) not in done]
                    if pending and watch.pending() is None:
                        if model is None:
                            model = load_configured_musicgen(config.model)
                        tokenizer = tokenizer or load_tokenizer(config.model.model_id,
                                                                config.model.resolved_revision())
                        # the precision the clip keys name, so that keys and clips cannot disagree
                        generator = ClipGenerator(model, tokenizer, settings, device, precision,
                                                  evaluation.max_batch_size)
                        info = _generate_arm(arm, generator, pending, keys[arm], writers, watch, device)
                        del generator
                        generation = info if generation is None else \
                            info.model_copy(update={"seconds": generation.seconds + info.seconds})
                    model = None  # one model in memory at a time
                    _free_memory(device)
                if (cause := watch.pending()) is not None:
                    raise Interrupted(f"stop asked for ({cause.record_cause})")
            except Interrupted:
                cause = watch.pending()
                assert cause is not None
                kept = len(writers.drain())
                heartbeats.interrupted(cause)
                log.warning("stopping for %s: %d clip(s) of this attempt kept, %d from earlier ones; exit %d",
                            cause.name, kept, len(done), cause.exit_code)
                raise EvaluationInterrupted(cause, kept + len(done)) from None
            finally:
                writers.close()
            written = writers.drain()
    clips = sorted([*done.values(), *written], key=lambda c: (ARMS.index(c.arm), c.index))
    return _report(config, point, manifest, manifest_sha256, treatment_uri, dataset_sha256, clips, generation,
                   out_uri, run_uri, analysis)


def _report(config: RunConfig, point: str, manifest: CheckpointManifest, manifest_sha256: str,
            treatment_uri: str, dataset_sha256: str, clips: list[ClipScore], generation: GenerationInfo | None,
            out_uri: str, run_uri: str, analysis: AnalysisConfig) -> EvalReport:
    evaluation = config.evaluation
    model_id = config.model.model_id
    overall = summarise_group(treatment_uri, model_id, clips)
    report = EvalReport(
        run_id=config.run_id, point=point, epoch=epochs_completed(manifest), step=manifest.step,  # type: ignore[arg-type]
        score_threshold=evaluation.score_threshold, clip_seconds=evaluation.clip_seconds,
        guidance_scale=evaluation.guidance_scale, treatment=overall.treatment, control=overall.control,
        comparison=overall.comparison, prompt_sets=by_prompt_set(treatment_uri, model_id, clips),
        prompts=by_prompt(treatment_uri, model_id, clips), val_loss=manifest.val_loss,
        baseline_val_loss=manifest.baseline_val_loss, generation=generation,
        provenance=Provenance(checkpoint_uri=treatment_uri, checkpoint_sha256=manifest_sha256,
                              code_version=code_version(), dataset_manifest_sha256=dataset_sha256,
                              base_model=model_id, base_revision=config.model.resolved_revision()),
        flags=_flags(overall), clips=clips, attempts=sorted({c.attempt for c in clips}), created_at=datetime.now(UTC))
    images = _write_figures(out_uri, clips, evaluation.score_threshold, run_uri, analysis)
    storage.write_text(join(out_uri, report.html_report), render_report(report, images, config.decision),
                       "text/html; charset=utf-8")
    storage.write_text(join(out_uri, "report.json"), report.model_dump_json(indent=2), "application/json")
    t, c, comparison = report.treatment, report.control, report.comparison
    log.info("treatment %d/%d vs control %d/%d authentic; McNemar p = %.4g; report at %s", t.authentic, t.clips,
             c.authentic, c.clips, comparison.p_value, out_uri)
    return report
