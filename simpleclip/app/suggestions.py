"""What the app suggests for a picture folder: labels and prompt templates.

A suggestion must fit what the folder holds: colour-shape names for the synthetic shapes
(recognised by their ``synthetic.json``), everyday words for photos. No Gradio here: ``page``
shows these, and ``tests/test_app.py`` checks them. Taught in
``notebooks/08_zero_shot_and_search.ipynb``.
"""

from __future__ import annotations

from pathlib import Path

from simpleclip.data.synthetic import COLORS, SHAPES

SYNTHETIC_LABELS = [f"{color} {kind}" for color in COLORS for kind in SHAPES]
GENERIC_LABELS = [
    "dog",
    "cat",
    "horse",
    "bird",
    "child",
    "man",
    "woman",
    "group of people",
    "bicycle",
    "car",
    "boat",
    "ball",
    "beach",
    "snow",
    "water",
    "grass",
    "street",
    "mountain",
]


def is_synthetic(folder: str | Path) -> bool:
    """True for the built-in shapes set (its ``synthetic.json`` is beside ``Images/``)."""
    folder = Path(folder)
    return (folder / "synthetic.json").is_file() or (folder.parent / "synthetic.json").is_file()


def default_labels(folder: str | Path | None) -> list[str]:
    """The 30 colour-shape names for the synthetic set, otherwise a generic everyday list."""
    return SYNTHETIC_LABELS if folder and is_synthetic(folder) else GENERIC_LABELS


def default_templates(folder: str | Path | None) -> str:
    """The name of the template set in ``TEMPLATE_SETS`` that suits the folder."""
    return "shapes ensemble" if folder and is_synthetic(folder) else "clip ensemble"
