"""Progress bars: plain text ones, in a terminal and in a notebook alike.

Long work (encoding a split, an epoch, indexing a folder, a download) shows a tqdm bar. We use
tqdm's text bar, not ``tqdm.auto``'s Jupyter widget: a widget is stored in the notebook as a
"0%" placeholder that every viewer without its widget state (GitHub, the course book,
``nbconvert``) shows as a stalled bar, while a text bar ends on its last line ("100%"). Jupyter
redraws a text bar in place, so it reads the same while it runs.

Libraries draw bars of their own: transformers shows "Loading weights" for every model.
``quiet_library_bars`` turns that one off while our loaders run, and puts it back as it was.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm as progress_bar

__all__ = ["progress_bar", "quiet_library_bars"]


@contextmanager
def quiet_library_bars() -> Iterator[None]:
    """No transformers progress bars inside the block (our own loaders say what they load)."""
    from transformers.utils import logging

    was_enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            logging.enable_progress_bar()
