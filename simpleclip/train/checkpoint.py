"""Checkpoint folders that are never half-written, and the random state a resume needs.

A folder is first written under a temporary name, then swapped in with renames: the old
version is moved aside, the new one takes its name, the old one is deleted. Whenever the
process dies, either ``DIR`` or ``DIR.old`` is a complete checkpoint, and
``readable_directory`` finds it. Used by ``CLIPModel.save`` and the trainer, which also saves
every rank's CPU RNG state (``gather_rng_states``) so a resumed run draws the same dropout
masks and augmentations as an uninterrupted one. Taught in ``notebooks/06_training.ipynb``.
"""

from __future__ import annotations

import errno
import os
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from simpleclip.train.distributed import rank, world_size


@contextmanager
def atomic_directory(target: str | Path) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces ``target`` in one swap.

    Raises inside the block leave ``target`` untouched and remove the temporary folder.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    old = target.with_name(target.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def readable_directory(directory: str | Path, required: str) -> Path:
    """``directory``, or its ``.old`` twin if a crash interrupted the swap.

    Raises:
        FileNotFoundError: neither holds ``required``; the message says what was expected.
    """
    directory = Path(directory)
    if (directory / required).is_file():
        return directory
    old = directory.with_name(directory.name + ".old")
    if (old / required).is_file():
        warnings.warn(f"{directory} is incomplete; using the previous save {old}.", stacklevel=2)
        return old
    raise FileNotFoundError(
        f"No checkpoint in {directory}: expected {directory / required}. Point to a folder "
        "written by CLIPModel.save or `simpleclip train` (e.g. runs/demo/model)."
    )


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
    """``err`` says the disk is full: ENOSPC, or torch's zip writer's "unexpected pos" (what
    ``torch.save`` raises when a write comes up short)."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(err, RuntimeError) and "unexpected pos" in str(err)


@contextmanager
def disk_full_guard(folder: str | Path, kept: str) -> Iterator[None]:
    """Turn a full disk inside the block into one ``DiskFullError`` line: the folder, the free
    space left, and ``kept`` (what survived, e.g. "last/ still holds epoch 3")."""
    try:
        yield
    except (OSError, RuntimeError) as err:
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
