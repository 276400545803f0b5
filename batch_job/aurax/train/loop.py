"""The training loop: resume, train to `--until-epoch`, checkpoint on every trigger, stop cleanly.

One optimizer step consumes `training.batch_size` consecutive examples of the epoch's permutation, whatever
the number of GPUs: rank r takes its contiguous share (`data.rank_positions`) in balanced micro-batches of the
size `plan` chose for the GPU's memory. Each micro-batch's loss (MusicGen's per-codebook mean) is weighted by
its share of the step's counted tokens, so the step's loss and gradient are those of one pass over the whole
step, whatever the split (up to float rounding); dropout draws from generators seeded by data position. The
position after a step is therefore exact (`index_in_epoch`), and a resumed run repeats the uninterrupted one
step for step (bit-identical on the CPU, where torch is deterministic and the plan is fixed by the config).

Checkpoint triggers: every `interval_steps` steps, every `interval_minutes` (agreed by all ranks), each epoch
end, and at once for SIGTERM, a spot notice or a stop request (see `interrupts`). Before the run's first step
the untouched model's validation loss is measured once (the baseline the decision compares against). Guards
(`guards`): a loss, learning rate or loss scale that no record can hold exits 76 without saving;
`max_overflow_steps` skipped steps in a row (fp16 overflows, or any non-finite gradient, which is never
applied) exits 76 too; a loss above `monitoring.loss_warn` writes a `JobWarning`.

Host synchronisation: one device-to-host read per optimizer step (the step's loss and gradient norm together;
under fp16 the loss scale after its update too). The loop adds none per micro-batch: a step's micro-batches go to
the GPU through pinned memory before its first forward pass. (transformers itself checks the cross-attention mask
for padding once per forward pass, `masking_utils._ignore_bidirectional_mask_sdpa`: one short wait per
micro-batch that only a hand-built 4-D mask would avoid.)
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import time
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from aurax_contracts import ContractError, DatasetManifest, JobExit, RunConfig, parse_run_config
from aurax_contracts.artifacts import LrSchedule, TrainingPlan
from aurax_contracts.metrics import (
    CheckpointSaved,
    Diverged,
    Heartbeat,
    Interruption,
    JobWarning,
    MetricRecord,
    TrainingSetup,
    TrainStep,
    ValLoss,
    utc_now,
)

from .. import storage
from ..dataset.shards import Clip, load_split
from ..errors import InputError
from ..interrupts import (
    CAUSE_CODES,
    CODE_CAUSES,
    Cause,
    ImdsClient,
    InterruptWatch,
    Placement,
    read_placement,
    spot_notice_source,
)
from ..metrics_sink import MetricsSink
from ..model import (
    attention_of,
    codec_info,
    disable_activation_checkpointing,
    enable_activation_checkpointing,
    load_configured_musicgen,
    load_tokenizer,
)
from . import faults
from .checkpoint import (
    CheckpointContent,
    CheckpointStore,
    Position,
    RunRecord,
    SavedCheckpoint,
    SkippedCheckpoint,
    VerifiedCheckpoint,
    check_same_training,
)
from .data import (
    Batch,
    ExampleSource,
    TextConditioning,
    delay_pattern_labels,
    epoch_order,
    micro_batch_seed,
    rank_positions,
    split_micro_batches,
)
from .distributed import DistContext, init_distributed
from .guards import Divergence, loss_divergence, recordable_grad_norm, recordable_throughput, step_divergence
from .options import TrainOptions
from .plan import (
    GIB,
    MEMORY_MARGIN,
    MemoryFit,
    accumulation_for,
    choose,
    configured_choice,
    largest_rank_share,
    measure_fit,
    memory_budget,
)
from .precision import Precision, resolve_precision
from .progress import ProgressCounter
from .schedule import lr_factor, planned_schedule, resume_schedule
from .trainable import load_trainable_state, make_trainable, trainable_state

log = logging.getLogger(__name__)

#: A checkpoint save slower than this could not finish inside the 2-minute spot notice.
SLOW_CHECKPOINT_SECONDS = 90.0


class CheckpointFailed(Exception):
    """Rank 0 could not write a checkpoint (S3 failing after boto3's own retries); raised on every rank."""


def run_training(options: TrainOptions) -> int:
    """Train in this process (one rank of a data-parallel group, or alone)."""
    config = parse_run_config(storage.read_text(options.config_uri), options.config_uri)
    if not 1 <= options.until_epoch <= config.training.total_epochs:
        problem = (f"{options.until_epoch} is outside 1..{config.training.total_epochs} (training.total_epochs); "
                   "fix: pass an epoch count in that range")
        raise ContractError("--until-epoch", [problem])
    ctx = init_distributed()
    try:
        return Trainer(options, config, ctx).run()
    finally:
        ctx.close()


@dataclass
class StepResult:
    loss: float
    grad_norm: float
    skipped: bool
    divergence: Divergence | None = None
    """Set when the loss cannot be recorded; the update was not applied."""


def batch_loss(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """MusicGen's loss on `batch` (the mean over codebooks of each codebook's mean cross-entropy over its counted
    labels), a 0-d tensor on the batch's device. No key/value cache: training has no use for one, and building it
    makes `torch.compile` recompile every layer (its guards follow the cache's state) until it gives up."""
    return model(attention_mask=batch.attention_mask, encoder_outputs=(batch.encoder_hidden,), labels=batch.labels,
                 use_cache=False).loss


def make_optimizer(params: list[torch.nn.Parameter], config: RunConfig, device: torch.device
                   ) -> tuple[torch.optim.Optimizer, str]:
    """AdamW, fused into one kernel per step on CUDA (and with fp16's loss scaler, no host sync for its
    overflow check), the multi-tensor `foreach` implementation elsewhere."""
    t = config.training
    if device.type == "cuda":
        return torch.optim.AdamW(params, lr=t.learning_rate, betas=t.adam_betas, weight_decay=t.weight_decay,
                                 fused=True), "adamw-fused"
    return torch.optim.AdamW(params, lr=t.learning_rate, betas=t.adam_betas, weight_decay=t.weight_decay,
                             foreach=True), "adamw-foreach"


def _seed_generators(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    def __init__(self, options: TrainOptions, config: RunConfig, ctx: DistContext) -> None:
        self.options = options
        self.config = config
        self.ctx = ctx
        self.attempt = int(os.environ.get("AWS_BATCH_JOB_ATTEMPT") or 1)
        self.sink: MetricsSink | None = None
        self.position = Position()
        self.last_saved: SavedCheckpoint | VerifiedCheckpoint | None = None
        self.last_saved_position = Position()  # the untrained start needs no checkpoint
        self.progress = ProgressCounter()
        self.record = RunRecord()

    # ---- records -------------------------------------------------------------------------------------
    def emit(self, kind: type[MetricRecord], **fields: object) -> None:
        if self.sink is not None:
            self.sink.emit(kind(run_id=self.config.run_id, time=utc_now(), attempt=self.attempt, **fields))

    def _flush(self) -> None:
        if self.sink is not None:
            self.sink.flush()

    # ---- setup ---------------------------------------------------------------------------------------
    def _load_split(self, split: str) -> tuple[list[Clip], DatasetManifest]:
        """One split through the local shard cache (a resumed attempt on the same host reads it from disk).
        Rank 0 fills the cache before the other ranks read it."""
        cache = self.options.work_dir / "dataset-cache"
        if not self.ctx.is_main:
            self.ctx.broadcast(None)
        loaded = load_split(self.options.dataset_uri, split, cache)
        if self.ctx.is_main:
            self.ctx.broadcast(None)
        return loaded

    def _load_data(self) -> tuple[list[Clip], list[Clip], DatasetManifest]:
        train, manifest = self._load_split("train")
        if manifest.fingerprint != self.config.dataset_fingerprint():
            raise InputError(f"the dataset at {self.options.dataset_uri} was prepared for another config "
                             f"(fingerprint {manifest.fingerprint[:12]}, this config needs "
                             f"{self.config.dataset_fingerprint()[:12]}); fix: run `aurax job prepare` with this "
                             "config, or pass the --dataset-uri it wrote")
        validation, _ = self._load_split("validation")
        if not train:
            raise InputError(f"the dataset at {self.options.dataset_uri} has no training clips; "
                             "re-run `aurax job prepare`")
        return train, validation, manifest

    def _find_checkpoint(self, store: CheckpointStore) -> tuple[VerifiedCheckpoint | None, list[SkippedCheckpoint]]:
        """Rank 0 finds (and downloads) the newest verified checkpoint; the others use its local copy.
        Returns it and the newer ones skipped as corrupt (an interrupted save without manifest is no alert)."""
        search = store.find_latest() if self.ctx.is_main else None
        corrupt: list[SkippedCheckpoint] = []
        if search is not None:
            for skipped in search.skipped:
                log.warning("checkpoint %s skipped: %s", skipped.name, skipped.reason)
            corrupt = [s for s in search.skipped if s.had_manifest]
        found = self.ctx.broadcast(search.found if search is not None else None)
        if found is not None:
            check_same_training(found, self.config)
        return found, corrupt

    def _schedule(self, train_clips: int, found: VerifiedCheckpoint | None) -> tuple[LrSchedule, str | None]:
        tcfg, world = self.config.training, self.ctx.world_size
        if tcfg.batch_size < world:
            raise ContractError("training.batch_size", [
                f"{tcfg.batch_size} examples per step cannot be shared by {world} GPUs; fix: set batch_size to at "
                f"least {world}"])
        steps_per_epoch = train_clips // tcfg.batch_size
        if steps_per_epoch == 0:
            raise ContractError("training.batch_size", [
                f"one optimizer step needs {tcfg.batch_size} clips but the training split has {train_clips}; "
                "fix: lower training.batch_size"])
        wanted = planned_schedule(tcfg, steps_per_epoch)
        saved = found.manifest.schedule if found is not None else None
        return resume_schedule(saved, wanted, self.position.step, tcfg.allow_schedule_change)

    def run(self) -> int:
        cfg, opts, ctx = self.config, self.options, self.ctx
        train_clips, val_clips, manifest = self._load_data()
        store = CheckpointStore(opts.checkpoint_uri, opts.work_dir, cfg.checkpoint.keep_last)
        found, corrupt = self._find_checkpoint(store)
        if found is not None:
            self.position = found.position
            self.last_saved, self.last_saved_position = found, found.position
            log.info("resuming from %s (step %d, epoch %d, index %d)", found.uri, self.position.step,
                     self.position.epoch, self.position.index_in_epoch)
        if self.position.next_epoch >= opts.until_epoch:
            log.info("already trained to epoch %d (asked: until %d): nothing to do", self.position.next_epoch,
                     opts.until_epoch)
            return JobExit.SUCCEEDED
        schedule, schedule_change = self._schedule(len(train_clips), found)

        imds = ImdsClient.from_env() if ctx.is_main else None
        placement = read_placement(imds)
        if ctx.is_main:
            self.sink = MetricsSink(opts.metrics_uri, self.attempt, opts.metrics_flush_seconds)
        for skipped in corrupt:
            self.emit(JobWarning, code="checkpoint-corrupt", message=f"checkpoint {skipped.name} skipped: "
                      f"{skipped.reason}; resumed from {found.name if found else 'scratch'}")
        if schedule_change:
            log.warning("learning-rate schedule changed: %s", schedule_change)
            self.emit(JobWarning, code="schedule-changed", step=self.position.step, epoch=self.position.epoch,
                      message=schedule_change[:2000])
        if "AWS_BATCH_JOB_ID" in os.environ and imds is not None and not placement.reachable:
            log.warning("instance metadata did not answer at %s: spot notices are seen only once it does; in a "
                        "container IMDSv2 needs the launch template's HttpPutResponseHopLimit >= 2", imds.endpoint)
        watch = InterruptWatch(spot_notice_source(imds, placement), opts.stop_request_uri if ctx.is_main else None)
        watch.start()
        deterministic = torch.are_deterministic_algorithms_enabled()
        if ctx.device.type == "cpu":  # exact resume is proven on the CPU; CUDA kernels are left fast
            torch.use_deterministic_algorithms(True)
        try:
            return self._train(train_clips, val_clips, manifest, store, found, watch, placement, schedule)
        except CheckpointFailed as exc:
            # A transient storage fault in a weeks-long run: exit 75, which Batch retries from the last good
            # checkpoint (65, "bad input", would end the run). A lasting one uses up the job's attempts.
            log.error("%s; exiting %d so that Batch retries from the last good checkpoint", exc,
                      JobExit.INTERRUPTED)
            return JobExit.INTERRUPTED
        finally:
            torch.use_deterministic_algorithms(deterministic)
            watch.stop()
            if self.sink is not None:
                self.sink.close()

    # ---- the plan --------------------------------------------------------------------------------------
    def _plan(self, model: torch.nn.Module, text: TextConditioning, segment_frames: int, precision: Precision,
              optimizer_name: str) -> TrainingPlan:
        """Micro-batch and activation checkpointing for this GPU (rank 0 decides, every rank follows), applied
        to the model."""
        tcfg, ctx, device = self.config.training, self.ctx, self.ctx.device
        per_rank = largest_rank_share(tcfg.batch_size, ctx.world_size)
        probes: dict[str, float] = {}
        budget = None
        if device.type != "cuda":
            choice = accumulation_for(per_rank, tcfg.micro_batch_size or per_rank)
            checkpointing = tcfg.activation_checkpointing == "on"
            chosen_by = "config" if tcfg.micro_batch_size else "cpu"
        else:
            decision = None
            budget = memory_budget(device)  # on every rank: AURAX_GPU_MEMORY_GIB caps each process
            if ctx.is_main:
                fits, probes = self._probe(model, text, segment_frames, precision)
                params = sum(p.numel() for p in model.parameters() if p.requires_grad)
                usable, optimizer_bytes = budget * MEMORY_MARGIN, 8.0 * params  # AdamW's two fp32 moments
                if tcfg.micro_batch_size:
                    choice = configured_choice(per_rank, tcfg.micro_batch_size, fits, usable, optimizer_bytes)
                else:
                    choice = choose(per_rank, fits, usable, optimizer_bytes)
                checkpointing = choice.activation_checkpointing
                decision = (choice.micro_batch_size, checkpointing, budget, probes)
            micro, checkpointing, budget, probes = ctx.broadcast(decision)
            choice = accumulation_for(per_rank, micro)
            chosen_by = "config" if tcfg.micro_batch_size else "memory-probe"
        if checkpointing:
            enable_activation_checkpointing(model.decoder)
        else:
            disable_activation_checkpointing(model.decoder)
        return TrainingPlan(
            batch_size=tcfg.batch_size, world_size=ctx.world_size, micro_batch_size=choice.micro_batch_size,
            accumulation_steps=choice.accumulation_steps, activation_checkpointing=checkpointing,
            attention=attention_of(model), precision=precision.name, optimizer=optimizer_name,  # type: ignore[arg-type]
            compiled=tcfg.compile, decoder_dropout=float(model.config.decoder.dropout),
            device=torch.cuda.get_device_name(device) if device.type == "cuda" else device.type,
            device_memory_gib=round(budget / GIB, 2) if budget else None, chosen_by=chosen_by,
            probe_peak_gib=probes)

    def _probe(self, model: torch.nn.Module, text: TextConditioning, segment_frames: int,
               precision: Precision) -> tuple[list[MemoryFit], dict[str, float]]:
        """Memory of a forward and backward pass on a worst-case example (a full segment, the longest prompt),
        for each checkpointing mode the config allows."""
        tcfg, device = self.config.training, self.ctx.device
        modes = {"auto": (False, True), "on": (True,), "off": (False,)}[tcfg.activation_checkpointing]
        longest = max(text.states.values(), key=lambda state: state.shape[0])
        books = model.config.decoder.num_codebooks
        vocab = model.config.decoder.vocab_size
        generator = torch.Generator().manual_seed(0)

        def run_pass(micro: int) -> None:
            codes = torch.randint(0, vocab, (micro, books, segment_frames), generator=generator)
            batch = Batch(delay_pattern_labels(codes), longest.expand(micro, -1, -1).clone(),
                          torch.ones(micro, longest.shape[0], dtype=torch.long)).to(device)
            model.train()
            with precision.autocast():
                loss = batch_loss(model, batch)
            loss.backward()
            del loss, batch
            model.zero_grad(set_to_none=True)

        fits, peaks = [], {}
        with torch.random.fork_rng(devices=[device]):
            for checkpointing in modes:
                if checkpointing:
                    enable_activation_checkpointing(model.decoder)
                else:
                    disable_activation_checkpointing(model.decoder)
                fit, measured = measure_fit(checkpointing, run_pass, device)
                fits.append(fit)
                peaks.update(measured)
        torch.cuda.empty_cache()
        log.info("memory probe: %s", peaks)
        return fits, peaks

    # ---- training --------------------------------------------------------------------------------------
    def _train(self, train_clips: list[Clip], val_clips: list[Clip], manifest: DatasetManifest,
               store: CheckpointStore, found: VerifiedCheckpoint | None, watch: InterruptWatch,
               placement: Placement, schedule: LrSchedule) -> int:
        cfg, opts, ctx, tcfg = self.config, self.options, self.ctx, self.config.training
        device = ctx.device
        torch.backends.cudnn.benchmark = False

        model = load_configured_musicgen(cfg.model)
        codec = codec_info(model)
        if (codec.num_codebooks, codec.codebook_size) != (manifest.num_codebooks, manifest.codebook_size):
            raise InputError(f"the dataset's codes ({manifest.num_codebooks} codebooks of {manifest.codebook_size}) "
                             f"do not fit {cfg.model.model_id} ({codec.num_codebooks} of {codec.codebook_size}); "
                             "re-run `aurax job prepare` with this model")
        segment_frames = max(1, round(tcfg.segment_seconds * manifest.frame_rate))
        make_trainable(model, cfg)
        model.to(device)
        text = TextConditioning.encode(model, load_tokenizer(cfg.model.model_id, cfg.model.resolved_revision()),
                                       [c.prompt for c in (*train_clips, *val_clips)], device)
        precision = resolve_precision(cfg.model.precision, device)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer, optimizer_name = make_optimizer(params, cfg, device)
        plan = self._plan(model, text, segment_frames, precision, optimizer_name)
        if tcfg.compile:  # per layer (torchtitan's regional compilation): fewer recompiles than the whole model
            for layer in model.decoder.model.decoder.layers:
                layer.compile()
        model.train()
        wrapped: torch.nn.Module = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            gradient_as_bucket_view=True) if ctx.distributed else model
        scaler = precision.grad_scaler()
        overflow_run = 0
        if found is not None:
            load_trainable_state(model, found.load_tensors(), found.uri)
            state = found.load_trainer_state()
            optimizer.load_state_dict(state["optimizer"])
            if precision.uses_loss_scaling and state["scaler"]:
                scaler.load_state_dict(state["scaler"])
            overflow_run = int(state["overflow_run"])
        _seed_everything(tcfg.seed * 1000 + ctx.rank)
        self.record = RunRecord(schedule=schedule, plan=plan, model_revision=cfg.model.resolved_revision(),
                                baseline_val_loss=found.manifest.baseline_val_loss if found is not None else None)
        self.emit(TrainingSetup, step=self.position.step, epoch=self.position.epoch, plan=plan, schedule=schedule)
        log.info("plan: %s", plan.model_dump_json())

        source = ExampleSource(train_clips, text, segment_frames, tcfg.seed, tcfg.condition_dropout)
        val_source = ExampleSource(val_clips, text, segment_frames, tcfg.seed, 0.0)
        interval_steps = opts.checkpoint_every_steps or cfg.checkpoint.interval_steps
        steps_per_epoch, per_step = schedule.steps_per_epoch, tcfg.batch_size
        steps_this_attempt = 0
        last_save_time = faults.clock(ctx.rank, 0)

        def heartbeat() -> None:
            self.emit(Heartbeat, step=self.position.step, epoch=self.position.epoch, phase="train",
                      instance_type=placement.instance_type, availability_zone=placement.availability_zone,
                      batch_job_id=os.environ.get("AWS_BATCH_JOB_ID"), total_steps=schedule.total_steps,
                      progress=self.progress.snapshot())

        def tick() -> None:
            heartbeat()
            watch.check_stop_request()

        def save(trigger: str, val_loss: float | None = None) -> None:
            """Rank 0 commits a checkpoint; every rank learns whether it did (`CheckpointFailed` if not)."""
            nonlocal last_save_time
            failure = None
            if ctx.is_main:
                content = CheckpointContent(
                    tensors=trainable_state(model), config=cfg,
                    trainer_state={"optimizer": optimizer.state_dict(),
                                   "scaler": scaler.state_dict() if precision.uses_loss_scaling else None,
                                   "overflow_run": overflow_run})
                try:
                    saved = store.save(content, self.position, run_id=cfg.run_id, trigger=trigger,
                                       world_size=ctx.world_size, val_loss=val_loss, record=self.record,
                                       progress=self.progress.checkpoint_bytes_done)
                except storage.StorageError as exc:
                    failure = f"checkpoint of step {self.position.step} ({trigger}) not written: {exc}"
            if ctx.is_main and failure is None:
                self.last_saved = saved
                self.emit(CheckpointSaved, step=self.position.step, epoch=self.position.epoch, uri=saved.uri,
                          sha256=saved.manifest_sha256, seconds=saved.seconds, bytes=saved.bytes, trigger=trigger)
                log.info("checkpoint %s saved (%s, %.1f s, %d bytes)", saved.uri, trigger, saved.seconds, saved.bytes)
                if saved.seconds > SLOW_CHECKPOINT_SECONDS:
                    self.emit(JobWarning, code="slow-checkpoint", step=self.position.step, epoch=self.position.epoch,
                              message=f"checkpoint took {saved.seconds:.0f} s, longer than a spot notice allows "
                                      f"({SLOW_CHECKPOINT_SECONDS:.0f} s)")
            failure = ctx.broadcast(failure)  # also the barrier: every rank leaves the save together
            if failure is not None:
                raise CheckpointFailed(failure)
            self.last_saved_position = self.position
            last_save_time = faults.clock(ctx.rank, steps_this_attempt)

        def stop(cause: Cause) -> int:
            steps_lost = 0
            if self.position != self.last_saved_position:
                try:
                    save("interruption")
                except CheckpointFailed as exc:
                    log.error("emergency checkpoint failed: %s", exc)
                    steps_lost = self.position.step - self.last_saved_position.step
            self.emit(Interruption, step=self.position.step, epoch=self.position.epoch, cause=cause.record_cause,
                      steps_lost=steps_lost)
            self._flush()
            log.warning("stopping for %s at step %d: exit %d", cause.name, self.position.step, cause.exit_code)
            return cause.exit_code

        def diverged(found: Divergence, step: int) -> int:
            last = self.last_saved.uri if self.last_saved is not None else None
            self.emit(Diverged, step=step, epoch=self.position.epoch, cause=found.cause, last_good_checkpoint=last,
                      value=found.value)
            self._flush()
            log.error("training diverged (%s) at step %d; last good checkpoint: %s", found.describe(), step, last)
            return JobExit.DIVERGED

        def agree(checkpoint_due: bool = False) -> tuple[Cause | None, bool]:
            """Every rank's stop cause and checkpoint clock, combined in one collective: all ranks act alike."""
            cause_code, due = ctx.max_ints([CAUSE_CODES[watch.pending()], int(checkpoint_due)])
            return CODE_CAUSES[cause_code], bool(due)

        if self.sink is not None:
            heartbeat()
            watch.check_stop_request()
            self.sink.start_ticker(tick)
        if (cause := agree()[0]) is not None:
            return stop(cause)
        if found is None and val_clips:  # the untouched model's validation loss, before the first step
            baseline = self._validate(model, val_source, len(val_clips), precision, plan.micro_batch_size)
            if baseline is not None:
                if divergence := loss_divergence(baseline):
                    return diverged(divergence, 0)
                self.record = replace(self.record, baseline_val_loss=baseline)
                self.emit(ValLoss, step=0, epoch=0, val_loss=baseline, baseline=True)
                log.info("baseline validation loss (untouched model) %.6f", baseline)
            if (cause := agree()[0]) is not None:
                return stop(cause)
        high_loss = False
        window_start, window_samples = time.monotonic(), 0
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for epoch in range(self.position.next_epoch, opts.until_epoch):
            if self.position.epoch != epoch:
                self.position = Position(self.position.step, epoch, 0, False)
            order = epoch_order(tcfg.seed, epoch, len(train_clips))
            while self.position.index_in_epoch + per_step <= steps_per_epoch * per_step:
                step = self.position.step + 1
                start = self.position.index_in_epoch
                lr = tcfg.learning_rate * lr_factor(schedule, step - 1)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                pieces = split_micro_batches(rank_positions(start, per_step, ctx.world_size, ctx.rank),
                                             plan.micro_batch_size)
                micro = [source.train_batch(epoch, order, piece) for piece in pieces]
                seeds = [micro_batch_seed(tcfg.seed, epoch, piece.start) for piece in pieces]
                step_tokens = source.train_tokens(epoch, order, range(start, start + per_step))
                result = self._step(wrapped, micro, seeds, step_tokens, optimizer, scaler, precision, params, step)
                if result.divergence is not None:
                    return diverged(result.divergence, step)
                overflow_run = overflow_run + 1 if result.skipped or faults.overflow_at(step) else 0
                self.position = Position(step, epoch, start + per_step, False)
                self.progress.step_done()
                steps_this_attempt += 1
                window_samples += per_step
                scale = faults.loss_scale(scaler.get_scale()) if precision.uses_loss_scaling else None
                if divergence := step_divergence(result.loss, lr, scale):
                    return diverged(divergence, step)
                if overflow_run >= tcfg.max_overflow_steps:
                    return diverged(Divergence("overflow-collapse", float(overflow_run)), step)
                if overflow_run == max(1, tcfg.max_overflow_steps // 2):
                    self.emit(JobWarning, code="overflow-steps", step=step, epoch=epoch,
                              message=f"{overflow_run} steps in a row skipped for a non-finite gradient (loss scale "
                                      f"{scale if scale is not None else 'n/a'}); divergence at "
                                      f"{tcfg.max_overflow_steps}")
                if result.loss > cfg.monitoring.loss_warn and not high_loss:
                    self.emit(JobWarning, code="high-loss", step=step, epoch=epoch,
                              message=f"training loss {result.loss:.3f} above {cfg.monitoring.loss_warn}")
                high_loss = result.loss > cfg.monitoring.loss_warn
                if step % tcfg.log_every_steps == 0:
                    elapsed = time.monotonic() - window_start
                    memory = None
                    if device.type == "cuda":
                        memory = torch.cuda.max_memory_allocated(device) / GIB
                        torch.cuda.reset_peak_memory_stats(device)
                    self.emit(TrainStep, step=step, epoch=epoch, loss=result.loss,
                              grad_norm=recordable_grad_norm(result.grad_norm), lr=lr,
                              samples_per_s=recordable_throughput(window_samples, elapsed), loss_scale=scale,
                              gpu_memory_gib=memory)
                    window_start, window_samples = time.monotonic(), 0
                    log.info("step %d epoch %d loss %.6f grad_norm %.4f lr %.3g", step, epoch, result.loss,
                             result.grad_norm, lr)
                if self.sink is not None:
                    self.sink.maybe_flush()
                faults.after_step(step)
                # At an epoch's last step the epoch-end checkpoint follows right after validation.
                epoch_done = self.position.index_in_epoch + per_step > steps_per_epoch * per_step
                by_steps = not epoch_done and bool(interval_steps) and step % interval_steps == 0
                clock_due = faults.clock(ctx.rank, steps_this_attempt) - last_save_time >= \
                    cfg.checkpoint.interval_minutes * 60
                cause, due = agree(not epoch_done and clock_due)
                if cause is not None:
                    return stop(cause)
                if by_steps:
                    save("steps")
                elif due:
                    save("interval")
            if (cause := agree()[0]) is not None:  # save before validation, which may outlast a spot notice
                return stop(cause)
            val_loss = self._validate(model, val_source, len(val_clips), precision, plan.micro_batch_size)
            if val_loss is not None:
                if divergence := loss_divergence(val_loss):
                    return diverged(divergence, self.position.step)
                self.emit(ValLoss, step=self.position.step, epoch=epoch, val_loss=val_loss)
                log.info("epoch %d validation loss %.6f", epoch, val_loss)
            self.position = Position(self.position.step, epoch, self.position.index_in_epoch, True)
            save("final" if epoch + 1 == tcfg.total_epochs else "epoch", val_loss)
            if (cause := agree()[0]) is not None:
                return stop(cause)
        if self.sink is not None:
            heartbeat()  # the attempt's final progress, however short the attempt was
        return JobExit.SUCCEEDED

    def _step(self, wrapped: torch.nn.Module, micro: list[Batch], seeds: list[int], step_tokens: int,
              optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, precision: Precision,
              params: list[torch.nn.Parameter], step: int) -> StepResult:
        """One optimizer step over this rank's micro-batches. Each micro-batch's mean loss is weighted by its
        share of the step's counted tokens (over all ranks), and by the world size that DDP's gradient average
        divides by: the gradient is that of the whole step's loss, whatever the split. A loss that cannot be
        recorded (NaN, inf, out of range) returns before the update."""
        ctx = self.ctx
        optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), dtype=torch.float32, device=ctx.device)
        # Every micro-batch is on the device before the first forward pass: a copy made between passes would be a
        # host synchronisation per micro-batch (a copy from pageable memory waits for the stream's queued work).
        batches = [batch.to(ctx.device) for batch in micro]
        for index, (batch, seed) in enumerate(zip(batches, seeds, strict=True)):
            _seed_generators(seed)
            last = index == len(micro) - 1
            sync = contextlib.nullcontext() if last or not ctx.distributed else wrapped.no_sync()
            with sync:
                with precision.autocast():
                    loss = batch_loss(wrapped, batch)
                if faults.nan_at(step):
                    loss = loss * float("nan")
                share = loss.float() * (batch.tokens / step_tokens)
                scaler.scale(share * ctx.world_size).backward()
            total += share.detach()
        faults.hang_at(step)
        step_loss_tensor = ctx.sum(total)
        scaler.unscale_(optimizer)
        norm_tensor = torch.nn.utils.clip_grad_norm_(params, self.config.training.grad_clip_norm)
        loss_value, grad_norm = torch.stack([step_loss_tensor, norm_tensor.float()]).tolist()  # the step's sync
        step_loss = faults.loss_at(step, loss_value)
        if divergence := loss_divergence(step_loss):
            return StepResult(step_loss, math.inf, False, divergence)
        # A non-finite gradient norm means an overflowed (fp16) or broken gradient: never applied. Under fp16 the
        # scaler skips it (its found-inf check runs on the device with the fused optimizer) and lowers its scale.
        skipped = not math.isfinite(grad_norm)
        if precision.uses_loss_scaling:
            scaler.step(optimizer)
            scaler.update()
        elif not skipped:
            optimizer.step()
        return StepResult(step_loss, grad_norm, skipped)

    def _validate(self, model: torch.nn.Module, source: ExampleSource, count: int, precision: Precision,
                  micro_batch_size: int) -> float | None:
        """Mean validation loss over all ranks (each takes every world_size-th clip), weighted by counted tokens
        as the training loss is; None without clips. Each batch counts as progress for the idle watch."""
        if count == 0:
            return None
        ctx = self.ctx
        mine = list(range(ctx.rank, count, ctx.world_size))
        sums = torch.zeros(2, dtype=torch.float64, device=ctx.device)
        model.eval()
        with torch.no_grad():
            for begin in range(0, len(mine), micro_batch_size):
                batch = source.eval_batch(mine[begin:begin + micro_batch_size]).to(ctx.device)
                with precision.autocast():
                    loss = batch_loss(model, batch)
                sums[0] += loss.double() * batch.tokens  # Python numbers: no host-to-device copy per batch
                sums[1] += batch.tokens
                self.progress.validation_batch_done()
        model.train()
        total_loss, tokens = ctx.sum(sums).tolist()
        return total_loss / tokens

