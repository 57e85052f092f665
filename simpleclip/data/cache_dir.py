"""Where derived data (pre-resized pictures, encoder features) is cached for a dataset folder.

Next to the data, in ``root/.cache``, so deleting the dataset deletes its caches. A dataset on
read-only storage (a shared drive, a mounted archive) cannot hold it, so the cache then goes to
the user's cache folder, under a name derived from the dataset's absolute path.
Used by ``simpleclip.train``.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path


def user_cache_dir() -> Path:
    """``$SIMPLECLIP_CACHE``, else ``$XDG_CACHE_HOME/simpleclip``, else ``~/.cache/simpleclip``."""
    if os.environ.get("SIMPLECLIP_CACHE"):
        return Path(os.environ["SIMPLECLIP_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "simpleclip"


def data_cache_dir(root: str | Path) -> Path:
    """``root/.cache`` if it can be written, else a folder of its own in the user's cache."""
    root = Path(root).resolve()
    local = root / ".cache"
    if _writable(root) and (not local.is_dir() or _writable(local)):
        return local
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:12]
    return user_cache_dir() / "data" / f"{root.name}-{digest}"


def _writable(folder: Path) -> bool:
    """Writable, and not marked read-only (root may write anywhere, but should not here)."""
    return os.access(folder, os.W_OK) and bool(folder.stat().st_mode & stat.S_IWUSR)
