"""The training loop: resume, train to `--until-epoch`, checkpoint on every trigger, stop cleanly.

One optimizer step consumes `batch_size * grad_accum_steps * world_size` consecutive examples of the
epoch's permutation; rank r takes micro-batch slots r, r + W, ... of them. The position after a step is
therefore exact (`index_in_epoch`), and with the RNG states restored a resumed run repeats the
uninterrupted one step for step (bit-identical on the CPU, where torch is deterministic).

Checkpoint triggers: every `interval_steps` steps, every `interval_minutes`, each epoch end, and at once for
SIGTERM, a spot notice or a stop request (see `interrupts`). Guards: a NaN/Inf loss exits 76 without saving;
`max_overflow_steps` skipped steps in a row (fp16 overflows, or any non-finite gradient, which is never
applied) exits 76 too; a loss above
`monitoring.loss_warn` writes a `JobWarning`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from aurax_contracts import ContractError, DatasetManifest, JobExit, RunConfig, parse_run_config
from aurax_contracts.metrics import (
    CheckpointSaved,
    Diverged,
    Heartbeat,
    Interruption,
    JobWarning,
    MetricRecord,
    TrainStep,
    ValLoss,
    utc_now,
)

from .. import storage
from ..dataset.shards import Clip, load_split
from ..errors import InputError
from ..metrics_sink import MetricsSink
from ..model import codec_info, load_musicgen, load_tokenizer
from . import faults
from .checkpoint import (
    CheckpointContent,
    CheckpointStore,
    Position,
    SavedCheckpoint,
    SkippedCheckpoint,
    VerifiedCheckpoint,
    capture_rng,
    check_same_training,
    restore_rng,
)
from .data import Batch, ExampleSource, TextConditioning, epoch_order, micro_batch_positions
from .distributed import DistContext, init_distributed
from .interrupts import CAUSE_CODES, CODE_CAUSES, Cause, ImdsClient, InterruptWatch, Placement, read_placement
from .options import TrainOptions
from .precision import Precision, resolve_precision
from .schedule import cosine_with_warmup
from .trainable import load_trainable_state, make_trainable, trainable_state

log = logging.getLogger(__name__)

#: A checkpoint save slower than this could not finish inside the 2-minute spot notice.
SLOW_CHECKPOINT_SECONDS = 90.0


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

        imds = ImdsClient.from_env() if ctx.is_main else None
        placement = read_placement(imds)
        if ctx.is_main:
            self.sink = MetricsSink(opts.metrics_uri, self.attempt, opts.metrics_flush_seconds)
        for skipped in corrupt:
            self.emit(JobWarning, code="checkpoint-corrupt", message=f"checkpoint {skipped.name} skipped: "
                      f"{skipped.reason}; resumed from {found.name if found else 'scratch'}")
        # Off EC2 (no metadata service answered) there is no spot notice to poll for. Under Batch this is EC2
        # whatever the first answer was: keep polling, since a reclaim need not send a SIGTERM first.
        on_batch = "AWS_BATCH_JOB_ID" in os.environ
        if on_batch and imds is not None and not placement.reachable:
            log.warning("instance metadata did not answer at %s: spot notices are seen only once it does; in a "
                        "container IMDSv2 needs the launch template's HttpPutResponseHopLimit >= 2", imds.endpoint)
        watch = InterruptWatch(imds if placement.reachable or on_batch else None,
                               opts.stop_request_uri if ctx.is_main else None)
        watch.start()
        deterministic = torch.are_deterministic_algorithms_enabled()
        if ctx.device.type == "cpu":  # exact resume is proven on the CPU; CUDA kernels are left fast
            torch.use_deterministic_algorithms(True)
        try:
            return self._train(train_clips, val_clips, manifest, store, found, watch, placement)
        finally:
            torch.use_deterministic_algorithms(deterministic)
            watch.stop()
            if self.sink is not None:
                self.sink.close()

    def _train(self, train_clips: list[Clip], val_clips: list[Clip], manifest: DatasetManifest,
               store: CheckpointStore, found: VerifiedCheckpoint | None, watch: InterruptWatch,
               placement: Placement) -> int:
        cfg, opts, ctx, tcfg = self.config, self.options, self.ctx, self.config.training
        device = ctx.device
        torch.backends.cudnn.benchmark = False

        model = load_musicgen(cfg.model.model_id, attention=cfg.model.attention)
        codec = codec_info(model)
        if (codec.num_codebooks, codec.codebook_size) != (manifest.num_codebooks, manifest.codebook_size):
            raise InputError(f"the dataset's codes ({manifest.num_codebooks} codebooks of {manifest.codebook_size}) "
                             f"do not fit {cfg.model.model_id} ({codec.num_codebooks} of {codec.codebook_size}); "
                             "re-run `aurax job prepare` with this model")
        segment_frames = max(1, round(tcfg.segment_seconds * manifest.frame_rate))
        make_trainable(model, cfg)
        model.to(device)
        text = TextConditioning.encode(model, load_tokenizer(cfg.model.model_id),
                                       [c.prompt for c in (*train_clips, *val_clips)], device)
        if tcfg.gradient_checkpointing:
            model.decoder.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        wrapped: torch.nn.Module = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None) if ctx.distributed else model

        precision = resolve_precision(cfg.model.precision, device)
        optimizer = torch.optim.AdamW(params, lr=tcfg.learning_rate, betas=tcfg.adam_betas,
                                      weight_decay=tcfg.weight_decay)
        per_step = tcfg.batch_size * tcfg.grad_accum_steps * ctx.world_size
        steps_per_epoch = len(train_clips) // per_step
        if steps_per_epoch == 0:
            problem = (f"one optimizer step needs {per_step} clips (batch_size x grad_accum_steps x "
                       f"{ctx.world_size} GPUs) but the training split has {len(train_clips)}; "
                       "fix: lower batch_size or grad_accum_steps")
            raise ContractError("training", [problem])
        total_steps = steps_per_epoch * tcfg.total_epochs
        scheduler = cosine_with_warmup(optimizer, tcfg.warmup_steps, total_steps)
        scaler = precision.grad_scaler()
        overflow_run = 0
        if found is not None:
            load_trainable_state(model, found.load_tensors(), found.uri)
            state = found.load_trainer_state()
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if precision.uses_loss_scaling and state["scaler"]:
                scaler.load_state_dict(state["scaler"])
            overflow_run = int(state["overflow_run"])
            if ctx.rank < len(state["rng"]):
                restore_rng(state["rng"][ctx.rank])
            else:
                log.warning("checkpoint saved with %d ranks, now %d: rank %d starts a fresh RNG stream",
                            len(state["rng"]), ctx.world_size, ctx.rank)
                _seed_everything(tcfg.seed * 1000 + ctx.rank + self.position.step)
        else:
            _seed_everything(tcfg.seed * 1000 + ctx.rank)

        source = ExampleSource(train_clips, text, segment_frames, tcfg.seed, tcfg.condition_dropout)
        val_source = ExampleSource(val_clips, text, segment_frames, tcfg.seed, 0.0)
        interval_steps = opts.checkpoint_every_steps or cfg.checkpoint.interval_steps
        last_save_time = time.monotonic()

        def heartbeat() -> None:
            self.emit(Heartbeat, step=self.position.step, epoch=self.position.epoch, phase="train",
                      instance_type=placement.instance_type, availability_zone=placement.availability_zone,
                      batch_job_id=os.environ.get("AWS_BATCH_JOB_ID"), total_steps=total_steps)

        def tick() -> None:
            heartbeat()
            watch.check_stop_request()

        def save(trigger: str, val_loss: float | None = None) -> None:
            nonlocal last_save_time
            rng_states = ctx.gather(capture_rng())
            name = None
            if ctx.is_main:
                content = CheckpointContent(
                    tensors=trainable_state(model), config=cfg,
                    trainer_state={"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                   "scaler": scaler.state_dict() if precision.uses_loss_scaling else None,
                                   "rng": rng_states, "overflow_run": overflow_run})
                saved = store.save(content, self.position, run_id=cfg.run_id, trigger=trigger,
                                   world_size=ctx.world_size, val_loss=val_loss)
                self.last_saved, name = saved, saved.name
                self.emit(CheckpointSaved, step=self.position.step, epoch=self.position.epoch, uri=saved.uri,
                          sha256=saved.manifest_sha256, seconds=saved.seconds, bytes=saved.bytes, trigger=trigger)
                log.info("checkpoint %s saved (%s, %.1f s, %d bytes)", saved.uri, trigger, saved.seconds, saved.bytes)
                if saved.seconds > SLOW_CHECKPOINT_SECONDS:
                    self.emit(JobWarning, code="slow-checkpoint", step=self.position.step, epoch=self.position.epoch,
                              message=f"checkpoint took {saved.seconds:.0f} s, longer than a spot notice allows "
                                      f"({SLOW_CHECKPOINT_SECONDS:.0f} s)")
            ctx.broadcast(name)
            self.last_saved_position = self.position
            last_save_time = time.monotonic()

        def stop(cause: Cause) -> int:
            steps_lost = 0
            if self.position != self.last_saved_position:
                try:
                    save("interruption")
                except storage.StorageError as exc:
                    log.error("emergency checkpoint failed: %s", exc)
                    steps_lost = self.position.step - self.last_saved_position.step
            self.emit(Interruption, step=self.position.step, epoch=self.position.epoch, cause=cause.record_cause,
                      steps_lost=steps_lost)
            self._flush()
            log.warning("stopping for %s at step %d: exit %d", cause.name, self.position.step, cause.exit_code)
            return cause.exit_code

        def diverged(cause: str, step: int) -> int:
            last = self.last_saved.uri if self.last_saved is not None else None
            self.emit(Diverged, step=step, epoch=self.position.epoch, cause=cause, last_good_checkpoint=last)
            self._flush()
            log.error("training diverged (%s) at step %d; last good checkpoint: %s", cause, step, last)
            return JobExit.DIVERGED

        def agreed_cause() -> Cause | None:
            return CODE_CAUSES[ctx.max_int(CAUSE_CODES[watch.pending()])]

        if self.sink is not None:
            heartbeat()
            watch.check_stop_request()
            self.sink.start_ticker(tick)
        high_loss = False
        window_start, window_samples = time.monotonic(), 0
        for epoch in range(self.position.next_epoch, opts.until_epoch):
            if self.position.epoch != epoch:
                self.position = Position(self.position.step, epoch, 0, False)
            order = epoch_order(tcfg.seed, epoch, len(train_clips))
            while self.position.index_in_epoch + per_step <= steps_per_epoch * per_step:
                if cause := agreed_cause():
                    return stop(cause)
                step = self.position.step + 1
                start = self.position.index_in_epoch
                micro = [source.train_batch(epoch, order, positions) for positions in micro_batch_positions(
                    start, tcfg.batch_size, tcfg.grad_accum_steps, ctx.world_size, ctx.rank)]
                lr = scheduler.get_last_lr()[0]
                result = self._step(wrapped, micro, optimizer, scaler, precision, params, step)
                if not math.isfinite(result.loss):
                    return diverged("nan-loss" if math.isnan(result.loss) else "inf-loss", step)
                scheduler.step()
                overflow_run = overflow_run + 1 if result.skipped or faults.overflow_at(step) else 0
                self.position = Position(step, epoch, start + per_step, False)
                window_samples += per_step
                if overflow_run >= tcfg.max_overflow_steps:
                    return diverged("overflow-collapse", step)
                if overflow_run == max(1, tcfg.max_overflow_steps // 2):
                    self.emit(JobWarning, code="overflow-steps", step=step, epoch=epoch,
                              message=f"{overflow_run} steps in a row skipped for a non-finite gradient (loss scale "
                                      f"{scaler.get_scale():g}); divergence at {tcfg.max_overflow_steps}")
                if result.loss > cfg.monitoring.loss_warn and not high_loss:
                    self.emit(JobWarning, code="high-loss", step=step, epoch=epoch,
                              message=f"training loss {result.loss:.3f} above {cfg.monitoring.loss_warn}")
                high_loss = result.loss > cfg.monitoring.loss_warn
                if step % tcfg.log_every_steps == 0:
                    elapsed = max(time.monotonic() - window_start, 1e-9)
                    self.emit(TrainStep, step=step, epoch=epoch, loss=result.loss,
                              grad_norm=result.grad_norm, lr=lr,
                              samples_per_s=window_samples / elapsed,
                              loss_scale=scaler.get_scale() if precision.uses_loss_scaling else None)
                    window_start, window_samples = time.monotonic(), 0
                    log.info("step %d epoch %d loss %.6f grad_norm %.4f lr %.3g", step, epoch, result.loss,
                             result.grad_norm, lr)
                if self.sink is not None:
                    self.sink.maybe_flush()
                faults.after_step(step)
                # At an epoch's last step the epoch-end checkpoint follows right after validation.
                epoch_done = self.position.index_in_epoch + per_step > steps_per_epoch * per_step
                if not epoch_done and interval_steps and step % interval_steps == 0:
                    save("steps")
                elif not epoch_done and time.monotonic() - last_save_time >= cfg.checkpoint.interval_minutes * 60:
                    save("interval")
            if cause := agreed_cause():  # save before validation, which may outlast a spot notice's 2 minutes
                return stop(cause)
            val_loss = self._validate(model, val_source, len(val_clips), precision)
            if val_loss is not None:
                self.emit(ValLoss, step=self.position.step, epoch=epoch, val_loss=val_loss)
                log.info("epoch %d validation loss %.6f", epoch, val_loss)
            self.position = Position(self.position.step, epoch, self.position.index_in_epoch, True)
            save("final" if epoch + 1 == tcfg.total_epochs else "epoch", val_loss)
            if cause := agreed_cause():
                return stop(cause)
        return JobExit.SUCCEEDED

    def _step(self, wrapped: torch.nn.Module, micro: list[Batch], optimizer: torch.optim.Optimizer,
              scaler: torch.amp.GradScaler, precision: Precision, params: list[torch.nn.Parameter],
              step: int) -> StepResult:
        """One optimizer step over `grad_accum_steps` micro-batches; NaN loss returns before the update."""
        tcfg, ctx = self.config.training, self.ctx
        optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), dtype=torch.float64)
        for index, batch in enumerate(micro):
            batch = batch.to(ctx.device)
            last = index == len(micro) - 1
            sync = contextlib.nullcontext() if last or not ctx.distributed else wrapped.no_sync()
            with sync:
                with precision.autocast():
                    loss = wrapped(attention_mask=batch.attention_mask, encoder_outputs=(batch.encoder_hidden,),
                                   labels=batch.labels).loss
                if faults.nan_at(step):
                    loss = loss * float("nan")
                scaler.scale(loss / len(micro)).backward()
            total += loss.detach().double().cpu()
        step_loss = float(ctx.mean(total / len(micro)))
        if not math.isfinite(step_loss):
            return StepResult(step_loss, math.inf, False)
        scaler.unscale_(optimizer)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, tcfg.grad_clip_norm))
        if precision.uses_loss_scaling:  # the scaler skips an overflowed step and lowers its scale
            scale_before = scaler.get_scale()
            scaler.step(optimizer)
            scaler.update()
            skipped = scaler.get_scale() < scale_before
        else:  # nothing else would stop an inf/NaN gradient from turning the weights (and the next save) to NaN
            skipped = not math.isfinite(grad_norm)
            if not skipped:
                optimizer.step()
        # A skipped step has an inf (or NaN) gradient norm: recorded as inf; a run of them is divergence.
        return StepResult(step_loss, grad_norm if math.isfinite(grad_norm) else math.inf, skipped)

    def _validate(self, model: torch.nn.Module, source: ExampleSource, count: int,
                  precision: Precision) -> float | None:
        """Mean validation loss over all ranks (each takes every world_size-th clip); None without clips."""
        if count == 0:
            return None
        ctx, batch_size = self.ctx, self.config.training.batch_size
        mine = list(range(ctx.rank, count, ctx.world_size))
        sums = torch.zeros(2, dtype=torch.float64)
        model.eval()
        with torch.no_grad():
            for begin in range(0, len(mine), batch_size):
                batch = source.eval_batch(mine[begin:begin + batch_size]).to(ctx.device)
                with precision.autocast():
                    loss = model(attention_mask=batch.attention_mask, encoder_outputs=(batch.encoder_hidden,),
                                 labels=batch.labels).loss
                sums += torch.tensor([float(loss) * len(batch), len(batch)], dtype=torch.float64)
        model.train()
        totals = ctx.mean(sums)
        return float(totals[0] / totals[1])


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
