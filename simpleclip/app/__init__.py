"""A small web app to play with a trained CLIP: search pictures with words, label a picture.

Tab "Search" ranks the pictures of a folder against a typed description; tab "Classify" gives
the five best labels of an uploaded picture out of an editable list. One module per job:
``handlers`` (the logic, no Gradio, tested directly), ``suggestions`` (labels, templates and an
example description that fit the folder), ``page`` (the Gradio page and server) and ``access``
(which folders and checkpoints the server may open: the server decides, never the page).
Started by ``simpleclip app``; what it exposes: ``docs/app.md``; taught in
``notebooks/08_zero_shot_and_search.ipynb``.
"""

from simpleclip.app.access import AllowedPaths, PathNotAllowed, check_exposure, exposure_line
from simpleclip.app.handlers import ClipApp, find_checkpoints, find_image_folders
from simpleclip.app.page import MAX_UPLOAD_BYTES, build_blocks, launch
from simpleclip.app.suggestions import (
    GENERIC_LABELS,
    SYNTHETIC_LABELS,
    default_labels,
    default_templates,
    example_query,
)

__all__ = [
    "GENERIC_LABELS",
    "MAX_UPLOAD_BYTES",
    "SYNTHETIC_LABELS",
    "AllowedPaths",
    "ClipApp",
    "PathNotAllowed",
    "build_blocks",
    "check_exposure",
    "default_labels",
    "default_templates",
    "example_query",
    "exposure_line",
    "find_checkpoints",
    "find_image_folders",
    "launch",
]
