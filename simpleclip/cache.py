"""Where caches live and how a cache knows it is stale: one folder rule, one fingerprint each.

Everything simpleclip derives and keeps (pre-resized pictures, encoder features, search
indexes) goes in a named sub-folder of one user cache folder, ``$SIMPLECLIP_CACHE`` if set, else
``$XDG_CACHE_HOME/simpleclip``, else ``~/.cache/simpleclip``: ``data/`` for dataset caches that
cannot live beside read-only data, ``search/`` for picture indexes. A cache file is named by a
digest of what it was computed from: ``weights_fingerprint`` for a model's tensors (any dtype,
bfloat16 included) and ``file_stamp`` for a file's size and modification time. A stale or
damaged file is then never read, only ignored. Used by ``train.data``, ``train.features`` and
``search``; taught in ``notebooks/06_training.ipynb``.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any

import torch
from torch import nn

CACHE_ENV = "SIMPLECLIP_CACHE"  # overrides the whole cache folder, e.g. for a fast local disk


def user_cache_dir(kind: str = "") -> Path:
    """The user's simpleclip cache folder, or its ``kind`` sub-folder (``"data"``, ``"search"``).

    ``$SIMPLECLIP_CACHE``, else ``$XDG_CACHE_HOME/simpleclip``, else ``~/.cache/simpleclip``.
    """
    if os.environ.get(CACHE_ENV):
        root = Path(os.environ[CACHE_ENV]).expanduser()
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "simpleclip"
    return root / kind if kind else root


def data_cache_dir(root: str | Path) -> Path:
    """Where a dataset's caches go: ``root/.cache`` if it can be written, else the user cache.

    Next to the data, deleting the dataset deletes its caches. Data on read-only storage (a
    shared drive, a mounted archive) gets a folder of its own in ``user_cache_dir("data")``,
    named after the folder and a digest of its absolute path.
    """
    root = Path(root).resolve()
    local = root / ".cache"
    if _writable(root) and (not local.is_dir() or _writable(local)):
        return local
    return user_cache_dir("data") / f"{root.name}-{digest(str(root))[:12]}"


def _writable(folder: Path) -> bool:
    """Writable, and not marked read-only (root may write anywhere, but should not here)."""
    return os.access(folder, os.W_OK) and bool(folder.stat().st_mode & stat.S_IWUSR)


def digest(*parts: str | bytes) -> str:
    """SHA-256 of some strings or bytes, as hex; each part is length-prefixed, so
    ``("ab", "c")`` and ``("a", "bc")`` differ."""
    sha = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        sha.update(len(data).to_bytes(8, "little") + data)
    return sha.hexdigest()


def weights_fingerprint(*modules: nn.Module) -> str:
    """A digest of every tensor in the modules' state dicts: names, dtypes, shapes and bytes.

    The raw bytes are hashed (``view(torch.uint8)``), so any dtype works, bfloat16 too (numpy has
    none). The dtype is part of the fingerprint: a bf16 copy of a model computes other numbers
    than its fp32 original, so it gets another fingerprint.
    """
    parts = []
    for number, module in enumerate(modules):
        for name, tensor in module.state_dict().items():
            flat = tensor.detach().cpu().contiguous().reshape(-1)
            parts.append(f"{number}.{name}:{flat.dtype}:{tuple(tensor.shape)}")
            parts.append(flat.view(torch.uint8).numpy().tobytes())
    return digest(*parts)


def file_stamp(path: str | Path) -> tuple[int, int]:
    """(size in bytes, modification time in ns): rewriting a file changes its stamp.

    Much cheaper than hashing the contents, and what ``make`` and ``rsync`` trust too.
    """
    info = Path(path).stat()
    return info.st_size, info.st_mtime_ns


def read_cache_file(path: str | Path) -> Any | None:
    """``torch.load`` of plain tensors and containers; None for a missing, damaged or foreign file.

    A cache is only ever a shortcut: whatever is wrong with the file, the caller recomputes.
    """
    try:
        return torch.load(path, weights_only=True)
    except Exception:  # FileNotFoundError, a truncated zip, pickled objects from elsewhere
        return None
