"""Which parameters train: the decoder (and the text-to-decoder projection, when the model has one) in a
full fine-tune, or LoRA adapters on the decoder's attention projections. The text encoder and the codec
stay frozen in both cases."""

from __future__ import annotations

import torch
from transformers import MusicgenForConditionalGeneration

from aurax_contracts import RunConfig

from ..errors import InputError

#: The decoder's attention projections (self- and cross-attention) that LoRA adapts.
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


def make_trainable(model: MusicgenForConditionalGeneration, config: RunConfig) -> None:
    """Freeze everything, then unfreeze (or add, for LoRA) what the config trains. Deterministic: LoRA's
    random initialisation draws from a generator seeded by `config.training.seed`."""
    model.requires_grad_(False)
    if config.model.finetune == "full":
        model.decoder.requires_grad_(True)
        if getattr(model, "enc_to_dec_proj", None) is not None:
            model.enc_to_dec_proj.requires_grad_(True)
        return
    from peft import LoraConfig, inject_adapter_in_model

    rank = config.model.lora_rank
    lora = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=LORA_TARGETS, bias="none")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.training.seed)
        inject_adapter_in_model(lora, model.decoder)
    for name, param in model.named_parameters():
        param.requires_grad_("lora_" in name)


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The trained tensors by parameter name (contiguous CPU copies, ready for safetensors)."""
    return {name: param.detach().to("cpu", copy=True).contiguous()
            for name, param in model.named_parameters() if param.requires_grad}


def load_trainable_state(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Copy saved trained tensors into `model`; the names must be exactly the model's trainable set."""
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    missing, unexpected = sorted(set(params) - set(tensors)), sorted(set(tensors) - set(params))
    if missing or unexpected:
        raise InputError(f"{source} does not fit this model: {len(missing)} trainable tensors missing "
                         f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}); "
                         "it was saved for another model or fine-tune mode; use the config it was trained with")
    with torch.no_grad():
        for name, param in params.items():
            if tensors[name].shape != param.shape:
                raise InputError(f"{source}: tensor {name} has shape {tuple(tensors[name].shape)}, the model "
                                 f"expects {tuple(param.shape)}; use the config it was trained with")
            param.copy_(tensors[name])


def merge_lora(model: torch.nn.Module) -> None:
    """Fold LoRA adapters into their base weights (inference only)."""
    for module in model.modules():
        if hasattr(module, "merge") and hasattr(module, "lora_A"):
            module.merge()
