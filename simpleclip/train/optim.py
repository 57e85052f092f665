"""Optimizer and learning-rate schedule for CLIP training.

Three parameter groups with their own learning rates: a pretrained image backbone and text
transformer want small steps, the freshly initialised heads and temperature larger ones.
Weight decay applies to weight matrices only: never to biases, normalisation parameters or
``logit_scale`` (decaying the log-temperature would pull the temperature towards 1) or
SigLIP's ``logit_bias`` (0-d like every bias: decay would pull it from -10 towards 0).
Warm-up then cosine decay, as in the CLIP paper (Section 2.5). Taught in
``notebooks/06_training.ipynb``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from simpleclip.config import Config


def make_optimizer(model: nn.Module, config: Config) -> torch.optim.AdamW:
    """AdamW over the trainable parameters of ``model`` (a ``CLIPModel``)."""
    lrs = {"image_encoder": config.image.lr, "text_encoder": config.text.lr}
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        lr = lrs.get(name.split(".", 1)[0], config.head.lr)
        decay = param.ndim >= 2 and name != "logit_scale"
        groups.setdefault((lr, decay), []).append(param)
    if not groups:
        raise ValueError("Nothing to train: every parameter is frozen.")
    param_groups = [
        {"params": params, "lr": lr, "weight_decay": config.train.weight_decay if decay else 0.0}
        for (lr, decay), params in groups.items()
    ]
    return torch.optim.AdamW(param_groups, betas=(0.9, 0.98), eps=1e-6)


def warmup_cosine(warmup_steps: int, total_steps: int):
    """Multiplier of the base learning rate at each step: linear ramp, then half a cosine."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def make_scheduler(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step schedule; call ``scheduler.step()`` after every optimizer step."""
    warmup_steps = min(warmup_steps, max(1, total_steps // 10))  # short runs: short warm-up
    return torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(warmup_steps, total_steps))
