"""Attention on the decoder and text encoder (EnCodec stays eager), every value the model and training
sections accept loading and training a step on the tiny model, and fully dropped prompts (all-masked
cross-attention rows) giving finite losses and gradients in fp32 and bf16 on the CPU, fp16 on a GPU."""

from __future__ import annotations

import os
import typing
from pathlib import Path

import pytest
import torch

from aurax.model import (
    attention_of,
    disable_activation_checkpointing,
    enable_activation_checkpointing,
    load_configured_musicgen,
)
from aurax.train.data import delay_pattern_labels
from aurax.train.precision import Precision, resolve_precision
from aurax.train.trainable import make_trainable
from aurax_contracts import TINY_MODEL_ID, RunConfig
from aurax_contracts.config import MUSICGEN_SMALL, MUSICGEN_SMALL_REVISION, ModelConfig, TrainingConfig

ROOT = Path(__file__).resolve().parents[2]


def choices(section: type, field: str) -> tuple:
    return typing.get_args(section.model_fields[field].annotation)


def config(training: dict[str, object] | None = None, **model: object) -> RunConfig:
    return RunConfig.model_validate({"run_id": "walk", "model": {"model_id": TINY_MODEL_ID, **model},
                                     "training": training or {}})


def train_one_step(run: RunConfig, checkpointing: bool, precision: Precision, dropped: bool = True,
                   device: str = "cpu") -> tuple[float, bool]:
    """One optimizer step; the first example's prompt is dropped entirely (all-zero mask)."""
    model = load_configured_musicgen(run.model)
    make_trainable(model, run)
    (enable_activation_checkpointing if checkpointing else disable_activation_checkpointing)(model.decoder)
    if run.training.compile:  # as the training loop compiles: each decoder layer on its own
        for layer in model.decoder.model.decoder.layers:
            layer.compile()
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    labels = delay_pattern_labels(torch.randint(0, 64, (3, 4, 12), generator=generator)).to(device)
    hidden = torch.randn(3, 5, 64, generator=generator).to(device)
    mask = torch.ones(3, 5, dtype=torch.long, device=device)
    if dropped:
        hidden[0], mask[0] = 0.0, 0
    scaler = precision.grad_scaler()
    with precision.autocast():
        loss = model(attention_mask=mask, encoder_outputs=(hidden,), labels=labels).loss
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    finite = all(torch.isfinite(p.grad).all() for p in params if p.grad is not None)
    scaler.step(optimizer)
    scaler.update()
    return float(loss.detach()), finite


@pytest.mark.parametrize("attention", choices(ModelConfig, "attention"))
def test_each_attention_value_applies_to_decoder_and_text_encoder_and_keeps_encodec_eager(attention: str) -> None:
    model = load_configured_musicgen(config(attention=attention).model)
    expected = "eager" if attention == "eager" else "sdpa"
    assert attention_of(model) == expected and model.config.text_encoder._attn_implementation == expected
    assert model.config.audio_encoder._attn_implementation == "eager"


@pytest.mark.parametrize(("field", "value"), [
    *[("attention", v) for v in choices(ModelConfig, "attention")],
    *[("precision", v) for v in choices(ModelConfig, "precision")],
    *[("finetune", v) for v in choices(ModelConfig, "finetune")],
    *[("activation_checkpointing", v) for v in choices(TrainingConfig, "activation_checkpointing")],
    ("decoder_dropout", 0.3),
    *[("compile", v) for v in (False, True)],
])
def test_every_value_the_config_accepts_loads_and_trains_a_step(field: str, value: object) -> None:
    in_model = field in ModelConfig.model_fields
    run = config({} if in_model else {field: value}, **({field: value} if in_model else {}))
    checkpointing = field == "activation_checkpointing" and value == "on"
    loss, finite = train_one_step(run, checkpointing, resolve_precision(run.model.precision, torch.device("cpu")))
    assert finite and 3.0 < loss < 5.5


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_fully_dropped_prompts_give_finite_loss_and_gradients_on_the_cpu(attention: str, dtype: str) -> None:
    loss, finite = train_one_step(config(attention=attention), checkpointing=True, precision=Precision(dtype, "cpu"))
    assert finite and torch.isfinite(torch.tensor(loss))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 attention kernels run on a GPU (the GPU benchmark "
                                                          "runs this test on the lent H200)")
@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_fully_dropped_prompts_give_finite_loss_and_gradients_on_a_gpu(dtype: str) -> None:
    loss, finite = train_one_step(config(attention="sdpa"), checkpointing=True, precision=Precision(dtype, "cuda"),
                                  device="cuda")
    assert finite and torch.isfinite(torch.tensor(loss))


def test_the_decoder_dropout_is_the_recipes_and_overrides_the_checkpoints() -> None:
    assert ModelConfig().decoder_dropout == 0.0  # audiocraft trained MusicGen without dropout
    model = load_configured_musicgen(config(decoder_dropout=0.25).model)
    layer = model.decoder.model.decoder.layers[0]
    assert model.config.decoder.dropout == layer.dropout == 0.25


def test_the_hub_revision_is_pinned_and_the_image_bakes_the_same_one() -> None:
    assert len(MUSICGEN_SMALL_REVISION) == 40 and int(MUSICGEN_SMALL_REVISION, 16) >= 0
    assert ModelConfig().resolved_revision() == MUSICGEN_SMALL_REVISION
    assert ModelConfig(model_id=MUSICGEN_SMALL, revision="abc123").resolved_revision() == "abc123"
    assert ModelConfig(model_id="facebook/musicgen-medium").resolved_revision() is None  # its main branch
    assert ModelConfig(model_id=TINY_MODEL_ID).resolved_revision() is None
    assert ModelConfig(model_id=str(ROOT)).resolved_revision() is None  # a local folder has no revisions
    from unittest import mock

    import aurax.model

    with mock.patch.object(aurax.model.MusicgenConfig, "from_pretrained", side_effect=RuntimeError("stop")) as load:
        with pytest.raises(RuntimeError):
            aurax.model.load_musicgen(MUSICGEN_SMALL)  # prepare and evaluate call it without a revision
    assert load.call_args.kwargs["revision"] == MUSICGEN_SMALL_REVISION  # the one the offline image holds
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"BAKED_MODEL_REVISION={MUSICGEN_SMALL_REVISION}" in dockerfile
    assert "revision='${BAKED_MODEL_REVISION}'" in dockerfile


def test_transformers_is_within_the_declared_range() -> None:
    """CI runs tests/model once more against the floor (`make test-floor`, AURAX_EXPECT_TRANSFORMERS)."""
    import tomllib

    import transformers
    from packaging.requirements import Requirement

    declared = next(Requirement(r) for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["job"] if r.startswith("transformers"))
    assert declared.specifier.contains(transformers.__version__), (transformers.__version__, str(declared))
    if expected := os.environ.get("AURAX_EXPECT_TRANSFORMERS"):
        assert transformers.__version__ == expected
