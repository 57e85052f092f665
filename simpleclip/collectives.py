"""Processes that train together: who am I, how many are we, and what all of us must agree on.

Under torchrun every rank runs the same program; these helpers ask the process group its size
and this process's rank, wait for each other, share a number or an object, and gather every
rank's embeddings (with their gradients) for the loss. Without a group
(one process, the usual case) each gives the single-process answer, so the code that calls them
has one path. The loss gathers every rank's embeddings with them (``simpleclip.loss``); the
trainer averages its logs with them. Starting the group and DDP live in ``train.distributed``.
Tested in ``tests/test_distributed.py`` (CPU, gloo, 2 processes).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist


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

    The backward sums the gradient of each slice over all ranks into its owner. With ``gather``
    every rank computes the same loss L, so rank r's embeddings receive N·dL/de_r, and DDP's
    average (÷N) leaves exactly the single-process gradient (with ``local``, the ranks' losses
    sum to N·L: the same). A tempting shortcut, gathering without gradients and putting the
    local tensor back in its slot, gives only dL/de_r: after the average, 1/N of the right
    encoder gradient, while ``logit_scale``'s stays whole. (``torch.distributed.nn.functional
    .all_gather`` does the same as ours, but is deprecated in torch 2.14, the version pinned
    here; ours fits in a few lines.) Every rank must pass the same shape.

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
