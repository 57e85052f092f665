"""The gradients of one training batch: all at once, or micro-batch by micro-batch (GradCache).

The contrastive loss couples every pair of the batch with every other one, so plain gradient
accumulation (sum the losses of small batches) is *not* the loss of the big batch: each small
batch would only see its own negatives. GradCache gets the big batch's exact gradients with
the memory of a small one, in three passes:

1. embed each micro-batch without a graph (cheap), remembering the RNG state it started from;
2. compute the loss of the whole batch on those embeddings and its gradient with respect to
   them, d loss / d embeddings (and the loss's own parameters' gradients: ``logit_scale``,
   and SigLIP's ``logit_bias``);
3. embed each micro-batch again, now with a graph and the same RNG state (the same dropout
   masks), and push its slice of the cached gradient back through the encoders.

The price is one more forward pass per micro-batch (roughly a third more compute, as a
backward costs about two forwards).
Under torchrun, step 2's loss gathers all ranks' embeddings, and DDP averages the gradients
once, at the last micro-batch (``no_sync`` before it; the towers are compiled before they are
wrapped in DDP, so the wrapper the loop holds is the DDP). BatchNorm layers see micro-batch
statistics (and update their running statistics twice per micro-batch): exact equality
holds for encoders without BatchNorm, such as ViTs and transformers.
References: Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under Memory
Limited Setup" (arXiv:2101.06983); open_clip ``train.py`` (``accum_freq``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, get_args

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from simpleclip.collectives import mean_over_ranks, world_size
from simpleclip.config import DistributedLoss, TrainConfig

# (image_embeds, text_embeds, batch) -> 0-d loss; the batch supplies the ids.
LossFn = Callable[[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]], torch.Tensor]
Autocast = Callable[[], AbstractContextManager]


class Towers(nn.Module):
    """Both encoders (with their heads) in one ``forward``: the module DDP wraps.

    DDP only averages the gradients of a backward that follows a forward through it, and
    ``CLIPModel.forward`` returns logits; the loss needs the embeddings.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Shapes: a batch of B pairs -> image_embeds (B, E), text_embeds (B, E).

        A tower whose features are cached (``train.features``) runs only its head.
        """
        if "image_features" in batch:
            image_embeds = self.model.project_image(batch["image_features"])
        else:
            image_embeds = self.model.encode_image(batch["images"])
        if "text_features" in batch:
            text_embeds = self.model.project_text(batch["text_features"])
        else:
            text_embeds = self.model.encode_text(batch["input_ids"], batch["attention_mask"])
        return image_embeds, text_embeds


def check_train_options(train: TrainConfig) -> None:
    """Refuse ``micro_batch_size`` and ``distributed_loss`` values that cannot work."""
    if train.distributed_loss not in get_args(DistributedLoss):  # a TrainConfig built by hand
        raise ValueError(
            f"train.distributed_loss must be 'gather' or 'local', got {train.distributed_loss!r}."
        )
    micro, batch = train.micro_batch_size, train.batch_size
    if micro < 0 or micro > batch or (micro > 0 and batch % micro):
        divisors = [d for d in range(1, batch + 1) if batch % d == 0][-8:]
        raise ValueError(
            f"train.micro_batch_size={micro} does not divide train.batch_size={batch} into "
            f"equal micro-batches. Use a divisor of {batch} (e.g. "
            f"{', '.join(map(str, divisors))}), or 0 to encode the whole batch at once."
        )


def full_backward(
    towers: nn.Module, batch: dict, loss_fn: LossFn, scaler: Any, autocast: Autocast
) -> float:
    """Embed the whole batch, compute the loss, backward. Returns the loss (mean over ranks).

    A NaN or infinite loss is returned without a backward.
    """
    with autocast():
        image_embeds, text_embeds = towers(batch)  # (B, E) each
        loss = loss_fn(image_embeds, text_embeds, batch)
    value = mean_over_ranks(loss)  # every rank gets the same value, so they all skip or not
    if math.isfinite(value):
        scaler.scale(loss).backward()
    return value


def grad_cache_backward(
    towers: nn.Module,
    batch: dict,
    loss_fn: LossFn,
    loss_params: list[torch.Tensor],
    scaler: Any,
    autocast: Autocast,
    micro_batch_size: int,
) -> float:
    """The gradients of the whole batch's loss, computed micro-batch by micro-batch.

    Same return value and NaN behaviour as ``full_backward``; the parameters' ``.grad`` end up
    the same too (to float rounding), including those of ``loss_params``: the parameters the
    loss reads directly (``logit_scale``; SigLIP's ``logit_bias``), which no tower computes.
    """
    chunks = split_batch(batch, micro_batch_size)
    device = next(t for t in batch.values()).device
    # 1. Embeddings of every micro-batch, no graph; note the RNG state each one starts from.
    rng_states, image_parts, text_parts = [], [], []
    with torch.no_grad():
        for chunk in chunks:
            rng_states.append(_rng_state(device))
            with autocast():
                image_embeds, text_embeds = towers(chunk)
            image_parts.append(image_embeds)
            text_parts.append(text_embeds)
    # 2. The whole batch's loss, with the embeddings as leaves: d loss / d embeddings.
    image_embeds = torch.cat(image_parts).requires_grad_()  # (B, E)
    text_embeds = torch.cat(text_parts).requires_grad_()  # (B, E)
    with autocast():
        loss = loss_fn(image_embeds, text_embeds, batch)
    value = mean_over_ranks(loss)
    if not math.isfinite(value):
        return value
    params = [p for p in loss_params if p.requires_grad]
    grads = torch.autograd.grad(scaler.scale(loss), [image_embeds, text_embeds, *params])
    image_grads, text_grads = grads[0].split(micro_batch_size), grads[1].split(micro_batch_size)
    # 3. Again with a graph and the same RNG (same dropout); backpropagate the cached slices.
    for i, chunk in enumerate(chunks):
        last = i == len(chunks) - 1
        with _sync_gradients_if(last, towers):
            _set_rng_state(rng_states[i], device)
            with autocast():
                image_embeds, text_embeds = towers(chunk)
            roots, root_grads = [image_embeds, text_embeds], [image_grads[i], text_grads[i]]
            if last:  # the loss parameters' gradients, inside DDP's synced backward
                roots += params
                root_grads += grads[2:]
            torch.autograd.backward(roots, root_grads)
    return value


def split_batch(batch: dict[str, torch.Tensor], size: int) -> list[dict[str, torch.Tensor]]:
    """Consecutive micro-batches of ``size`` pairs (the last may be smaller)."""
    parts = {key: value.split(size) for key, value in batch.items()}
    count = len(next(iter(parts.values())))
    return [{key: value[i] for key, value in parts.items()} for i in range(count)]


def _sync_gradients_if(sync: bool, towers: nn.Module) -> AbstractContextManager:
    """DDP averages gradients in every backward unless told not to: only once, at the end.

    Several ranks without an outer DDP are refused: ``torch.compile`` applied after wrapping
    hides the DDP, which then silently all-reduces after every micro-batch.
    """
    if not isinstance(towers, DistributedDataParallel):
        if world_size() > 1:
            raise TypeError(
                f"With {world_size()} ranks the towers must be a DistributedDataParallel (compile "
                f"first, wrap second: distributed.wrap(torch.compile(...))), not {type(towers)}."
            )
        return nullcontext()
    return nullcontext() if sync else towers.no_sync()  # grads stay local until the last one


def _rng_state(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The generators dropout draws from: the CPU one, and the accelerator's if any."""
    if device.type == "cuda":
        return torch.get_rng_state(), torch.cuda.get_rng_state(device)
    if device.type == "mps":
        return torch.get_rng_state(), torch.mps.get_rng_state()
    return torch.get_rng_state(), None


def _set_rng_state(state: tuple[torch.Tensor, torch.Tensor | None], device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if device.type == "cuda":
        torch.cuda.set_rng_state(state[1], device)
    elif device.type == "mps":
        torch.mps.set_rng_state(state[1])
