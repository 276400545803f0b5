"""`aurax job train`: fine-tune MusicGen's decoder on precomputed EnCodec codes, surviving spot reclaims.

Why an explicit loop rather than transformers' `Trainer` or an Accelerate loop: the job must resume
bit-identically from a checkpoint taken at *any* optimizer step, including one forced by a spot notice or
SIGTERM between two steps, and must write its state atomically to S3. `Trainer` checkpoints only at its own
save points (its `save_steps`), keeps the data position as "batches to skip" through its dataloader and
writes to a local folder; Accelerate's `save_state` writes every rank's RNG files to a folder without a
verified manifest. Neither gives "epoch + index in the epoch's permutation" as first-class state, nor a
manifest-then-pointer commit to S3. The loop here is short (`loop.py`), and every piece of state it needs
is explicit in the checkpoint (`CheckpointManifest`, `trainer_state.pt`), torchtitan style. Data-parallel
training uses plain `torch.distributed` + DDP (`distributed.py`), the same code on CPU (gloo) and CUDA (nccl).

Modules: `data` (labels with the delay pattern, crops, epoch order, each rank's share of a step and its
micro-batches, text conditioning), `plan` (micro-batch, accumulation and activation checkpointing from the
GPU's memory), `schedule` (the learning-rate schedule, saved in checkpoints and checked on resume), `guards`
(which values are divergence), `progress` (the counters heartbeats carry for the idle watch), `trainable`
(which parameters train: full decoder or LoRA), `precision` (fp16/bf16/fp32), `checkpoint` (atomic, verified
save/resume; `load_trained_model` for the evaluation) (SIGTERM, spot notices and stop requests: `aurax.interrupts`),
`faults` (test-only fault injection), `distributed`, `loop` (the training loop), `options`.
"""
