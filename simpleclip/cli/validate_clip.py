"""``simpleclip validate-clip``: our CLIP against ``transformers`` on real weights (online).

A thin wrapper over ``simpleclip.clip_arch.validate.run``. Its options live here, not beside
the check, so that ``simpleclip --help`` does not import torch. Offline it stops at once with
a message (exit code 2). Taught in ``notebooks/09_clip_from_scratch.ipynb``.

Example:
    simpleclip validate-clip --model openai/clip-vit-base-patch32
"""

from __future__ import annotations

import argparse
from typing import Any

COCO_CATS = "http://images.cocodataset.org/val2017/000000039769.jpg"  # two cats on a sofa


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the ``validate-clip`` command to ``commands`` (what ``add_subparsers`` returned)."""
    parser = commands.add_parser(
        "validate-clip",
        help="compare our CLIP with transformers' on real weights (online)",
        description="Check our CLIP against transformers on the real pretrained weights "
        "(needs the internet).",
    )
    parser.add_argument(
        "--model", default="openai/clip-vit-base-patch32", help="hub model id or local folder"
    )
    parser.add_argument("--image", default=COCO_CATS, help="path or URL of a photo of cats")
    parser.add_argument("--cache-dir", default=None, help="Hugging Face cache folder")
    parser.add_argument(
        "--atol", type=float, default=1e-4, help="largest accepted difference of features"
    )
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """0 if everything matches, 1 if not, 2 if the model or the photo cannot be loaded."""
    from simpleclip.clip_arch import validate

    return validate.run(args)
