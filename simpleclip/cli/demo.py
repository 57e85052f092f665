"""``simpleclip demo``: train a tiny CLIP on the synthetic shapes, on a CPU, in about a minute.

A thin wrapper over ``simpleclip.demo.run_demo``, which builds the set if missing, trains,
evaluates, draws and saves ``runs/demo/``. Taught in ``notebooks/06_training.ipynb``.

Example:
    simpleclip demo --set train.epochs=5
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from simpleclip.cli.options import add_overrides


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the ``demo`` command to ``commands`` (what ``add_subparsers`` returned)."""
    parser = commands.add_parser("demo", help="train a tiny CLIP on synthetic shapes (CPU, ~1 min)")
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder")
    add_overrides(parser)
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the demo; it prints its own table and what it wrote."""
    from simpleclip.demo import run_demo

    run_demo(args.out, args.overrides)
    return 0
