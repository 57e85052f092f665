"""``simpleclip train``: train a CLIP model from a config, then print its last Recall@K.

A thin wrapper over ``simpleclip.train.train``: a named config (``simpleclip/configs/``) or a
YAML file, with ``--set`` overrides; ``--frozen`` and ``--cache-features`` are shorthands for
the overrides that freeze both encoders. Under ``torchrun`` every process trains and rank 0
reports. Taught in ``notebooks/06_training.ipynb``.

Example:
    simpleclip train --config synthetic_tiny --set train.epochs=3
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from simpleclip.cli.options import add_overrides


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the ``train`` command to ``commands`` (what ``add_subparsers`` returned)."""
    parser = commands.add_parser("train", help="train a CLIP model from a config")
    parser.add_argument(
        "--config",
        default="synthetic_tiny",
        help="a YAML file, or a name in simpleclip/configs/ (default: synthetic_tiny)",
    )
    add_overrides(parser)
    parser.add_argument(
        "--frozen",
        action="store_true",
        help="freeze both encoders: train only the heads and the temperature",
    )
    parser.add_argument(
        "--cache-features",
        action="store_true",
        help="implies --frozen: encode the data once, then train only the heads",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue from OUT_DIR/last exactly where it stopped"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run already in OUT_DIR (without it, or --resume, it is refused)",
    )
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Train; rank 0 prints the last validation table and what the run folder holds."""
    from simpleclip.config import load_config
    from simpleclip.evaluate import format_recall_table
    from simpleclip.train import train
    from simpleclip.train.run_dir import BEST, HISTORY, LAST

    frozen = ["image.trainable=false", "text.trainable=false"]
    frozen = frozen if args.frozen or args.cache_features else []
    frozen += ["train.cache_features=true"] if args.cache_features else []
    config = load_config(args.config, [*frozen, *args.overrides])
    result = train(config, resume=args.resume, overwrite=args.overwrite)
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 reports for everyone
        return 0
    if result.history and result.history[-1]["val"] is not None:
        print(format_recall_table(result.history[-1]["val"]))
    kept = [name for name in (BEST, LAST, HISTORY) if (result.out_dir / name).exists()]
    print(f"Done in {result.seconds:.0f} s: {result.out_dir}/{', '.join(kept)}")
    return 0
