"""Where and in which precision to run: CUDA, then Apple's MPS, then the CPU.

On CUDA, mixed precision: bf16 where the GPU supports it (no loss scaling needed), else fp16
with a gradient scaler. On the CPU everything stays in fp32, which is what CPUs are fast at.
Training and inference read the same choice from here, so evaluation runs as training did.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import get_args

import torch

from simpleclip.config import PrecisionName

PRECISIONS = get_args(PrecisionName)  # ("auto", "fp32", "bf16", "fp16")


def select_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; anything else is passed to ``torch.device``."""
    if name != "auto":
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {name!r} asked for, but CUDA is not available here.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass(frozen=True)
class Precision:
    dtype: torch.dtype | None  # autocast dtype; None runs in fp32
    use_scaler: bool  # fp16 needs loss scaling to keep small gradients from vanishing

    def autocast(self, device: torch.device) -> AbstractContextManager:
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(device.type, dtype=self.dtype)


def select_precision(device: torch.device, name: str = "auto") -> Precision:
    """Resolve ``auto``/``fp32``/``bf16``/``fp16`` for ``device``."""
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {name!r}")
    if name == "auto":
        if device.type != "cuda":
            return Precision(None, False)
        name = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if name == "fp32":
        return Precision(None, False)
    if name == "bf16":
        return Precision(torch.bfloat16, False)
    return Precision(torch.float16, device.type == "cuda")
