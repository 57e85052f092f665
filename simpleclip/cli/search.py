"""``simpleclip search``: find pictures in a folder with a sentence, from the terminal.

A thin wrapper over ``simpleclip.search.ImageIndex``: load a checkpoint, index the folder (or
reuse the cache), print the best files with their scores and what was skipped, and optionally
save the best pictures as a grid. Taught in ``notebooks/07_evaluation.ipynb``.

Example:
    simpleclip search --checkpoint runs/demo/model --images data/synthetic/Images \\
        "a big red circle on the left" --top-k 9 --grid search.png
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from simpleclip.cli.options import add_checkpoint


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the ``search`` command to ``commands`` (what ``add_subparsers`` returned)."""
    parser = commands.add_parser("search", help="find pictures in a folder with a sentence")
    parser.add_argument("query", help='what to look for, e.g. "a dog running on the beach"')
    add_checkpoint(parser)
    parser.add_argument(
        "--images", type=Path, required=True, help="a folder of pictures (sub-folders included)"
    )
    parser.add_argument("--top-k", type=int, default=9, help="how many pictures to show")
    parser.add_argument("--grid", type=Path, default=None, help="also save them as a PNG grid")
    parser.add_argument("--batch-size", type=int, default=64, help="pictures per forward pass")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="index cache folder (default: $SIMPLECLIP_CACHE/search or ~/.cache/simpleclip/search)",
    )
    parser.add_argument("--no-cache", action="store_true", help="encode everything again")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Index the folder (or reuse the cache), print the best pictures, optionally draw them."""
    from simpleclip.model import CLIPModel
    from simpleclip.search import ImageIndex

    if args.top_k < 1:
        raise ValueError(f"--top-k must be at least 1, got {args.top_k}.")
    model = CLIPModel.from_pretrained(args.checkpoint)
    index = ImageIndex.build(
        model,
        args.images,
        batch_size=args.batch_size,
        cache=not args.no_cache,
        cache_dir=args.cache_dir,
    )
    hits = index.search(args.query, top_k=args.top_k)
    print(f"Best matches for {args.query!r}:")
    for rank, hit in enumerate(hits, 1):
        print(f"{rank:>4}  {hit.score:+.3f}  {hit.path.relative_to(index.root)}")
    print(index.summary())
    for skipped in index.skipped[:5]:
        print(f"  skipped {skipped.path.relative_to(index.root)}: {skipped.reason}")
    if len(index.skipped) > 5:
        print(f"  ... and {len(index.skipped) - 5} more")
    if args.grid:
        import numpy as np

        from simpleclip.data.images import thumbnail
        from simpleclip.viz import plot_text_to_images, save_figure

        pictures = [np.asarray(thumbnail(hit.path)) for hit in hits]  # HWC uint8
        labels = [hit.path.name for hit in hits]
        figure = plot_text_to_images(args.query, pictures, [h.score for h in hits], labels=labels)
        print(f"Wrote {save_figure(figure, args.grid)}")
    return 0
