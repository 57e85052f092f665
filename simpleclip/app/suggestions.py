"""What the app suggests for a picture folder: labels, prompt templates, an example description.

A suggestion must fit what the folder holds: "a big red circle on the left" invites a search
over the synthetic shapes, but over a folder of photos it reads as a broken example. The
synthetic set is recognised by its ``synthetic.json``; a folder of photos with a Flickr8k-style
caption file beside it (``captions.txt`` or ``Flickr8k.token.txt``) offers one of its own
captions, any other folder a generic photo caption. No Gradio here: ``page`` shows these, and
``tests/test_app.py`` checks them. Taught in ``notebooks/08_zero_shot_and_search.ipynb``.
"""

from __future__ import annotations

from pathlib import Path

from simpleclip.data import read_captions
from simpleclip.data.dataset import CAPTION_FILES
from simpleclip.data.synthetic import COLORS, SHAPES, is_synthetic
from simpleclip.zeroshot.caption_labels import FLICKR_LABELS

SYNTHETIC_LABELS = [f"{color} {kind}" for color in COLORS for kind in SHAPES]
# The classes measured on Flickr8k's captions (notebook 08), then other everyday things.
EVERYDAY = ["cat", "horse", "bird", "group of people", "car", "boat", "street", "mountain"]
GENERIC_LABELS = [*FLICKR_LABELS, *EVERYDAY]
SYNTHETIC_QUERY = "a big red circle on the left"  # the shapes set's captions read like this
PHOTO_QUERY = "a dog running on the beach"  # for photos without a caption file


def default_labels(folder: str | Path | None) -> list[str]:
    """The 30 colour-shape names for the synthetic set, otherwise a generic everyday list."""
    return SYNTHETIC_LABELS if folder and is_synthetic(folder) else GENERIC_LABELS


def default_templates(folder: str | Path | None) -> str:
    """The name of the template set in ``TEMPLATE_SETS`` that suits the folder."""
    return "shapes ensemble" if folder and is_synthetic(folder) else "clip ensemble"


def example_query(folder: str | Path | None) -> str:
    """A description worth typing for ``folder``: the shapes example for the synthetic set,
    the dataset's first caption for a captioned folder of photos, else a generic photo caption.
    """
    if not folder:
        return PHOTO_QUERY
    if is_synthetic(folder):
        return SYNTHETIC_QUERY
    return _first_caption(Path(folder)) or PHOTO_QUERY


def _first_caption(folder: Path) -> str:
    """The first caption of a caption file in ``folder`` or beside it, as a search phrase
    ("A girl going into a wooden building ." -> "a girl going into a wooden building"); ``""``
    when there is none or it cannot be read (a suggestion never stops the app)."""
    for place in (folder, folder.parent):
        for name in CAPTION_FILES:
            if (place / name).is_file():
                try:
                    caption = str(read_captions(place / name)["caption"].iloc[0])
                except Exception:  # damaged, empty or foreign file: fall back to a generic one
                    return ""
                caption = caption.strip().rstrip(" .")
                return caption[:1].lower() + caption[1:]
    return ""
