"""Paths as names: whether a name is a local path or a hub id, and how a path is printed.

A model name in a config (``text.name``, ``train.init_from``, a checkpoint) is either a local
folder or a Hugging Face hub id (``owner/model``); ``is_local_name`` is the one rule every
loader, the model card and the course use to tell them apart.

A notebook's output and a run's messages are read by others (the course book, a bug report), so
a path is printed relative to where the reader stands (the repository, or the working folder)
when it lies there or one level up (``runs/course-cpu``, ``../shared/data``), under ``~`` when it
is in the home folder (``~/.cache/simpleclip-offline``), and as given only otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

PATH_STARTS = ("/", ".", "~")  # a hub id starts with a letter or digit, never with these


def is_local_name(name: str | Path) -> bool:
    """Whether ``name`` means a local file or folder rather than a hub id.

    A name is local when it is written like a path (absolute, ``~/x``, ``./x``, ``../x``, a
    hidden ``.x``, or with a backslash) or when it exists on disk (a relative ``runs/demo``); a
    hub id such as ``"sentence-transformers/all-MiniLM-L6-v2"`` is neither. A folder named like
    a hub id in the working folder is therefore taken for the folder, as ``transformers`` does.
    """
    if isinstance(name, Path):
        return True
    return name.startswith(PATH_STARTS) or "\\" in name or Path(name).exists()


def shown_path(path: str | Path, base: str | Path | None = None) -> str:
    """``path`` as printed; ``base`` is the folder it is shown from (default: the working one).

    Anything that is not an absolute path (a hub id, a relative path) comes back unchanged.
    """
    text = str(path)
    if not text.startswith(("/", "~")):
        return text
    absolute = Path(text).expanduser().resolve()
    base = Path(base if base is not None else Path.cwd()).resolve()
    if absolute.is_relative_to(base.parent):
        return Path(os.path.relpath(absolute, base)).as_posix()
    home = Path.home().resolve()
    if absolute.is_relative_to(home):
        return "~/" + absolute.relative_to(home).as_posix()
    return text
