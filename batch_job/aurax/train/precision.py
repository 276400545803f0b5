"""Mixed precision: bf16 where the GPU has it, fp16 with dynamic loss scaling where it does not (T4), fp32
on the CPU (where exact, deterministic resume is proven)."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Literal

import torch

log = logging.getLogger(__name__)

Name = Literal["fp32", "fp16", "bf16"]


@dataclass(frozen=True)
class Precision:
    name: Name
    device_type: str

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        if self.name == "fp32":
            return contextlib.nullcontext()
        dtype = torch.float16 if self.name == "fp16" else torch.bfloat16
        return torch.autocast(device_type=self.device_type, dtype=dtype)

    @property
    def uses_loss_scaling(self) -> bool:
        return self.name == "fp16"

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Enabled only for fp16; a disabled scaler is a pass-through with an empty state."""
        return torch.amp.GradScaler(self.device_type, enabled=self.uses_loss_scaling)


def resolve_precision(requested: str, device: torch.device) -> Precision:
    """`auto`/`fp16`/`bf16`/`fp32` from the config, made concrete for this device."""
    if device.type != "cuda":
        if requested not in ("auto", "fp32"):
            log.warning("precision %s asked for, but training runs on %s: using fp32", requested, device.type)
        return Precision("fp32", device.type)
    bf16_ok = torch.cuda.is_bf16_supported(including_emulation=False)
    if requested == "auto":
        return Precision("bf16" if bf16_ok else "fp16", "cuda")
    if requested == "bf16" and not bf16_ok:
        log.warning("this GPU has no native bf16 (e.g. a T4): using fp16 with loss scaling instead")
        return Precision("fp16", "cuda")
    return Precision(requested, "cuda")  # type: ignore[arg-type]
