"""Training on several GPUs: torchrun's process group, DDP and the data sampler.

``torchrun --nproc_per_node=N -m simpleclip train ...`` starts N copies of the program, one per
GPU, and hands each its ``RANK`` (0..N-1 over all machines), ``LOCAL_RANK`` (its GPU on this
machine) and ``WORLD_SIZE`` in environment variables. Each rank trains on its own share of the
data (``DistributedSampler``) and DistributedDataParallel (DDP) averages the gradients during
``backward``. For most models that is all; CLIP needs one thing more. A pair's negatives are the
other captions of the batch, and one rank alone sees only its own B pairs, so the loss gathers
every rank's embeddings first: ``simpleclip.loss.clip_loss(..., gather=True)``, which lives
with the loss, as in open_clip. The checkpoint keeps every rank's RNG (``train.checkpoint``).
Without torchrun every helper here gives the single-process answer, so the trainer has one path;
rank, world size and the small collectives (``is_main``, ``barrier``...) are in
``simpleclip.collectives``, below the loss that needs them.
References: PyTorch's DDP notes; nanoGPT ``train.py`` (compile first, wrap in DDP second).
Tested in ``tests/test_distributed.py`` (CPU, gloo, 2 processes).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, DistributedSampler

from simpleclip.collectives import world_size


def launched_by_torchrun() -> bool:
    """True in a process that torchrun started as one of several (``WORLD_SIZE`` > 1)."""
    return ranks_launched() > 1


def ranks_launched() -> int:
    """How many ranks torchrun started (``WORLD_SIZE``), known before the group is joined."""
    return int(os.environ.get("WORLD_SIZE", "1"))


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


def wrap(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` in DDP when several ranks train, so ``backward`` averages the gradients.

    DDP only syncs what it sees: gradients must come from a ``backward`` after a forward
    through the wrapper (not through ``module`` itself). In one process, ``module`` as it is.
    Wrap a module that is already compiled (nanoGPT's order): DDP must stay the outermost
    module, as ``torch.compile(DDP(...))`` is no longer a DDP, and GradCache's micro-batches
    could not call its ``no_sync`` (an all-reduce after every micro-batch instead of one).
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
