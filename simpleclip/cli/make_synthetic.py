"""``simpleclip make-synthetic``: write the built-in synthetic shapes set (Flickr8k layout).

A thin wrapper over ``simpleclip.data.make_synthetic``; prints how fast it wrote and a summary
of the set. Same seed, same bytes; an existing set with the same parameters is reused. Taught in
``notebooks/01_flickr8k_dataset.ipynb``.

Example:
    simpleclip make-synthetic --out data/synthetic --images 2500
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the ``make-synthetic`` command to ``commands`` (what ``add_subparsers`` returned)."""
    parser = commands.add_parser(
        "make-synthetic", help="write the built-in synthetic shapes set (Flickr8k layout)"
    )
    parser.add_argument("--out", type=Path, default=Path("data/synthetic"), help="target folder")
    parser.add_argument("--images", type=int, default=2500, help="number of pictures")
    parser.add_argument("--size", type=int, default=64, help="picture side in pixels")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same bytes")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Write (or reuse) the set and describe it."""
    from simpleclip.data import make_synthetic
    from simpleclip.data.summary import describe_dataset

    existed = args.out.exists()
    start = time.perf_counter()
    root = make_synthetic(args.out, n_images=args.images, image_size=args.size, seed=args.seed)
    seconds = time.perf_counter() - start
    if existed:
        print(f"Reusing the synthetic set already in {root} (same parameters).")
    else:
        print(
            f"Wrote {args.images} images to {root} in {seconds:.1f} s "
            f"({args.images / seconds:.0f} images/s)."
        )
    print(describe_dataset(root))
    return 0
