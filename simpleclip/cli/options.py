"""Options that several ``simpleclip`` commands share, defined once so they read the same.

``--set KEY=VALUE`` is the one override syntax of the command line and of notebooks
(``simpleclip.config.load_config``); ``--checkpoint`` names a saved model folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path
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
    """``--checkpoint DIR``: one saved model folder (``parser`` may be an argument group)."""
    parser.add_argument(
        "--checkpoint",
        type=Path,
        required=required,
        help="a saved model folder (e.g. runs/demo/model)",
    )
