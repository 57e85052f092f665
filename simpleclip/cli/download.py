"""``simpleclip download``: download a real dataset (Flickr8k) and describe it.

A thin wrapper over ``simpleclip.data.download.download_flickr8k``: fetch and check the
archives, unpack them into the Flickr8k layout, print a summary. Taught in
``notebooks/01_flickr8k_dataset.ipynb``.

Example:
    simpleclip download flickr8k --root data/flickr8k
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the ``download`` command to ``commands`` (what ``add_subparsers`` returned)."""
    parser = commands.add_parser("download", help="download a real dataset")
    parser.add_argument("dataset", choices=["flickr8k"], help="which dataset")
    parser.add_argument("--root", type=Path, default=Path("data/flickr8k"), help="target folder")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Download (or find) the dataset and describe it."""
    from simpleclip.data.download import download_flickr8k
    from simpleclip.data.summary import describe_dataset

    root = download_flickr8k(args.root)
    print(describe_dataset(root))
    return 0
