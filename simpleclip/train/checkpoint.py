"""What a training run saves beyond the model: every rank's random state, and a full disk.

``last/`` holds every rank's CPU RNG state (``gather_rng_states``) so a resumed run draws the
same dropout masks and augmentations as an uninterrupted one; the folder itself is written
atomically by ``simpleclip.checkpoint``. A disk that fills up mid-write becomes one
``DiskFullError`` line saying what was kept. Taught in ``notebooks/06_training.ipynb``.
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from simpleclip.collectives import rank, world_size


def gather_rng_states() -> torch.Tensor:
    """Every rank's CPU RNG state, for a checkpoint that resumes each rank bit-exactly.

    A collective under torchrun: every rank must call it, though only rank 0 saves.

    Shapes: -> (N ranks, state bytes), uint8, on the CPU.
    """
    state = torch.get_rng_state()
    if world_size() == 1:
        return state[None]
    states: list[Any] = [None] * world_size()
    dist.all_gather_object(states, state)  # works for gloo and NCCL, on CPU tensors
    return torch.stack(states)


def restore_rng_state(states: torch.Tensor) -> None:
    """Restore this rank's row of ``gather_rng_states``; another number of ranks gets row 0.

    With a different number of ranks the run goes on, but it is no longer bit-exact.
    """
    row = states[rank()] if len(states) == world_size() else states[0]
    torch.set_rng_state(row.clone())  # a copy: torch 2.14 crashes on a row with a storage offset


class DiskFullError(RuntimeError):
    """The disk filled up while a run wrote its files; what was kept is said in the message."""


def is_disk_full(err: BaseException) -> bool:
    """``err`` says the disk is full: ENOSPC, torch's zip writer's "unexpected pos" (what
    ``torch.save`` raises when a write comes up short), or safetensors' writer, whose error is
    neither an OSError nor a RuntimeError and carries the OS message as text."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if isinstance(err, RuntimeError) and "unexpected pos" in str(err):
        return True
    return "No space left on device" in str(err) or "os error 28" in str(err)


@contextmanager
def disk_full_guard(folder: str | Path, kept: str) -> Iterator[None]:
    """Turn a full disk inside the block into one ``DiskFullError`` line: the folder, the free
    space left, and ``kept`` (what survived, e.g. "last/ still holds epoch 3")."""
    try:
        yield
    except Exception as err:  # safetensors' SafetensorError derives from Exception only
        if not is_disk_full(err):
            raise
        try:
            free = f"{shutil.disk_usage(folder).free / 1e6:.0f} MB free"
        except OSError:
            free = "free space unknown"
        raise DiskFullError(
            f"The disk holding {folder} is full ({free}); {kept}. Free some space, then "
            "continue with --resume."
        ) from err
