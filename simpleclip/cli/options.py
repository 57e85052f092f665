"""Options that several ``simpleclip`` commands share, defined once so they read the same.

``--set KEY=VALUE`` is the one override syntax of the command line and of notebooks
(``simpleclip.config.load_config``); ``--checkpoint`` names a model: a saved folder, a pretrained
CLIP in transformers' layout, or a Hub id (``CLIPModel.from_pretrained``).
"""

from __future__ import annotations

import argparse
from typing import Any


def add_overrides(parser: argparse.ArgumentParser) -> None:
    """``--set KEY=VALUE`` (repeatable), collected in ``args.overrides``."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override, e.g. --set train.epochs=3 (repeatable)",
    )


def add_checkpoint(parser: argparse.ArgumentParser | Any, required: bool = True) -> None:
    """``--checkpoint NAME``: one model (``parser`` may be an argument group)."""
    parser.add_argument(
        "--checkpoint",
        metavar="NAME",
        required=required,
        help="a saved model folder (e.g. runs/demo/model), a CLIP folder in transformers' "
        "layout, or a Hub id such as openai/clip-vit-base-patch32 (downloaded once)",
    )
