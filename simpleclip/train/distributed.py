"""Training on several GPUs: torchrun's process group, DDP helpers and the gathered CLIP loss.

``torchrun --nproc_per_node=N -m simpleclip train ...`` starts N copies of the program, one per
GPU, and hands each its ``RANK`` (0..N-1 over all machines), ``LOCAL_RANK`` (its GPU on this
machine) and ``WORLD_SIZE`` in environment variables. Each rank trains on its own share of the
data (``DistributedSampler``) and DistributedDataParallel (DDP) averages the gradients during
``backward``. For most models that is all; CLIP needs one thing more. A pair's negatives are the
other captions of the batch, and one rank alone sees only its own B pairs. So before the loss
every rank all-gathers the embeddings of all ranks, with gradients flowing back to their owners:
the loss sees N·B pairs, and the gradients equal those of one process with the whole batch.
Without torchrun every helper here gives the single-process answer, so the trainer has one path.
References: open_clip ``loss.py`` (``gather_features``, ``local_loss``); PyTorch's DDP notes.
Tested in ``tests/test_distributed.py`` (CPU, gloo, 2 processes).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, DistributedSampler

from simpleclip.loss import clip_loss, contrastive_logits


def launched_by_torchrun() -> bool:
    """True in a process that torchrun started as one of several (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@contextmanager
def process_group(device: torch.device) -> Iterator[torch.device]:
    """Join torchrun's process group for the block; yields the device this rank should use.

    CUDA ranks use the NCCL backend and GPU ``LOCAL_RANK``; CPU ranks use gloo. A group that
    already exists (a test that made one) is used and left alone; outside torchrun nothing
    happens and ``device`` comes back unchanged.
    """
    if not launched_by_torchrun():
        yield device
        return
    if device.type not in ("cuda", "cpu"):
        raise ValueError(f"Training with several processes needs CUDA or the CPU, not {device}.")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    join = not dist.is_initialized()
    if join:  # reads MASTER_ADDR, MASTER_PORT, RANK and WORLD_SIZE from the environment
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield device
    finally:
        if join:
            dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank in the group, 0 when there is no group."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of processes training together, 1 when there is no group."""
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Rank 0 writes files, logs and progress bars; the other ranks only train."""
    return rank() == 0


def barrier() -> None:
    """Wait until every rank got here (nothing to wait for in one process)."""
    if is_distributed():
        dist.barrier()


@contextmanager
def main_process_first() -> Iterator[None]:
    """Rank 0 runs the block first (building a cache file), the others after it (reading it)."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def wrap(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` in DDP when several ranks train, so ``backward`` averages the gradients.

    DDP only syncs what it sees: gradients must come from a ``backward`` after a forward
    through the wrapper (not through ``module`` itself). In one process, ``module`` as it is.
    """
    if world_size() == 1:
        return module
    return DistributedDataParallel(
        module, device_ids=[device.index] if device.type == "cuda" else None
    )


def shard_sampler(dataset: Dataset, seed: int, epoch: int) -> DistributedSampler | None:
    """This rank's share of a shuffled epoch, disjoint from the others'; None in one process.

    The order depends on (seed, epoch) only, so every rank agrees and resumes reproduce it.
    ``drop_last`` gives every rank the same number of batches (ranks must step together).
    """
    if world_size() == 1:
        return None
    sampler = DistributedSampler(dataset, shuffle=True, seed=seed, drop_last=True)
    sampler.set_epoch(epoch)
    return sampler


class _AllGatherWithGrad(torch.autograd.Function):
    """``all_gather`` whose backward sends every rank's gradient of a slice to its owner."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        return all_gather(tensor)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)  # the sum over ranks of dL_r / d(gathered batch)
        return grad.chunk(world_size())[rank()]  # this rank's slice of that sum


def all_gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's ``tensor`` concatenated in rank order; gradients flow back to their owners.

    The backward sums the gradient of each slice over all ranks into its owner. Every rank
    computes the same loss L on the gathered batch, so rank r's embeddings receive N·dL/de_r,
    and DDP's average (÷N) leaves exactly the single-process gradient. A tempting shortcut,
    gathering without gradients and putting the local tensor back in its slot, gives only
    dL/de_r: after the average, 1/N of the right encoder gradient, while ``logit_scale``'s
    stays whole. (``torch.distributed.nn.functional.all_gather`` does the same as ours, but
    is deprecated in torch 2.14, the version pinned here; ours fits in a few lines.)

    Shapes:
        (B, E) on each of N ranks -> (N·B, E).
    """
    if world_size() == 1:
        return tensor
    return _AllGatherWithGrad.apply(tensor)


def all_gather(tensor: torch.Tensor) -> torch.Tensor:
    """Like ``all_gather_with_grad``, without gradients (ids). Shapes: (B,) -> (N·B,)."""
    if world_size() == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def gathered_clip_loss(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    logit_scale: torch.Tensor,
    *,
    image_ids: torch.Tensor | None = None,
    text_ids: torch.Tensor | None = None,
    local: bool = False,
) -> torch.Tensor:
    """``clip_loss`` over the pairs of all ranks; each rank passes its own B pairs.

    ``local=False`` ("gather"): every rank computes the whole (N·B, N·B) loss, the same value
    everywhere. ``local=True`` (open_clip's ``local_loss``): rank r computes only its own B
    rows, in both directions, against all N·B columns, with targets offset by r·B: (B, N·B)
    logits, N times less loss compute and memory. The ranks' losses then differ, but their
    mean is the full loss, and DDP's gradient average gives the full loss's gradient. The ids
    are gathered too, so a picture on rank 0 and its duplicate on rank 1 are positives.

    Shapes:
        image_embeds (B, E), text_embeds (B, E), ids (B,) -> ().
    """
    all_images, all_texts = all_gather_with_grad(image_embeds), all_gather_with_grad(text_embeds)
    ids = {"image_ids": image_ids, "text_ids": text_ids}
    ids = {name: all_gather(value) for name, value in ids.items() if value is not None}
    if not local:
        return clip_loss(all_images, all_texts, logit_scale, **ids)
    offset = rank() * len(image_embeds)  # where this rank's pairs sit in the gathered batch
    logits_per_image = contrastive_logits(image_embeds, all_texts, logit_scale)[0]  # (B, N·B)
    logits_per_text = contrastive_logits(text_embeds, all_images, logit_scale)[0]  # (B, N·B)
    targets = _local_targets(offset, len(image_embeds), list(ids.values()), image_embeds.device)
    if targets.is_floating_point():  # at least float32, as in clip_loss
        targets = targets.to(torch.promote_types(logits_per_image.dtype, torch.float32))
    return (
        F.cross_entropy(logits_per_image, targets) + F.cross_entropy(logits_per_text, targets)
    ) / 2


def _local_targets(
    offset: int, size: int, all_ids: list[torch.Tensor], device: torch.device
) -> torch.Tensor:
    """Rows offset..offset+size of ``multi_positive_targets`` (or of the diagonal, no ids).

    Shapes: ids (N·B,) -> (B,) class indices, or (B, N·B) soft targets.
    """
    rows = torch.arange(offset, offset + size, device=device)
    if not all_ids:
        return rows  # pair i of this rank matches column offset + i
    columns = torch.arange(len(all_ids[0]), device=device)
    positives = rows[:, None] == columns[None, :]  # (B, 1) == (1, N·B) -> (B, N·B)
    for ids in all_ids:
        positives |= ids[rows, None] == ids[None, :]
    positives = positives.float()
    return positives / positives.sum(dim=1, keepdim=True)


def mean_over_ranks(value: torch.Tensor) -> float:
    """The mean of a scalar over all ranks, the same on every rank (for logs and NaN checks)."""
    if world_size() == 1:
        return value.item()
    total = value.detach().float().clone()
    dist.all_reduce(total)
    return total.item() / world_size()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (e.g. the dev metrics that only rank 0 computes)."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_rng_states() -> torch.Tensor:
    """Every rank's CPU RNG state, for a checkpoint that resumes each rank bit-exactly.

    Shapes: -> (N ranks, state bytes), uint8, on the CPU.
    """
    state = torch.get_rng_state()
    if world_size() == 1:
        return state[None]
    states: list[Any] = [None] * world_size()
    dist.all_gather_object(states, state)  # works for gloo and NCCL, on CPU tensors
    return torch.stack(states)


def set_rng_state(states: torch.Tensor) -> None:
    """Restore this rank's row of ``gather_rng_states``; another number of ranks gets row 0.

    With a different number of ranks the run goes on, but it is no longer bit-exact.
    """
    row = states[rank()] if len(states) == world_size() else states[0]
    torch.set_rng_state(row.clone())  # a copy: torch 2.14 crashes on a row with a storage offset
