"""Checkpoint folders that are never half-written.

A folder is first written under a temporary name, then swapped in with renames: the old
version is moved aside, the new one takes its name, the old one is deleted. Whenever the
process dies, either ``DIR`` or ``DIR.old`` is a complete checkpoint, and
``readable_directory`` finds it. Used by ``CLIPModel.save`` and the trainer.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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
