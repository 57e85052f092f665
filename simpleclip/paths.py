"""How messages and notebooks print a path: short, and naming no machine's folders.

A notebook's output and a run's messages are read by others (the course book, a bug report), so
a path is printed relative to where the reader stands (the repository, or the working folder)
when it lies there or one level up (``runs/course-cpu``, ``../shared/data``), under ``~`` when it
is in the home folder (``~/.cache/simpleclip-offline``), and as given only otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path


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
