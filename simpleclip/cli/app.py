"""``simpleclip app``: the web app (search pictures with words, label a picture) on 127.0.0.1.

A thin wrapper over ``simpleclip.app``: refuse to expose every path to a network unless asked,
build the ``ClipApp`` from the runs and data folders, say who can reach it and what they can
open, then serve until Ctrl-C. What it exposes: ``docs/app.md``; taught in
``notebooks/08_zero_shot_and_search.ipynb``.

Example:
    simpleclip app --checkpoint runs/demo/model --images data/synthetic/Images
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the ``app`` command to ``commands`` (what ``add_subparsers`` returned)."""
    parser = commands.add_parser(
        "app", help="a web app: search pictures with words, label a picture (127.0.0.1)"
    )
    parser.add_argument(  # not options.add_checkpoint: here a list of choices, not one model
        "--checkpoint",
        type=Path,
        action="append",
        help="model folder to start with and allow (repeatable; default: the first in --runs-dir)",
    )
    parser.add_argument(
        "--images",
        type=Path,
        action="append",
        help="picture folder to start with and allow (repeatable; default: the first */Images)",
    )
    parser.add_argument(
        "--runs-dir",
        "--runs",
        type=Path,
        default=Path("runs"),
        help="checkpoints offered and allowed in the app: every model folder under it",
    )
    parser.add_argument(
        "--data-dir",
        "--data",
        type=Path,
        default=Path("data"),
        help="picture folders offered in the app (each DATA_DIR/*/Images); all under it allowed",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on; 0.0.0.0 opens it to your network"
    )
    parser.add_argument("--port", type=int, default=7860, help="port to listen on")
    parser.add_argument(
        "--allow-any-path",
        action="store_true",
        help="let the page open any folder or checkpoint this process can read (see docs/app.md)",
    )
    parser.add_argument(
        "--i-know-this-exposes-files",
        action="store_true",
        help="needed with --allow-any-path on a --host other than 127.0.0.1",
    )
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Check the exposure, build the app, say what it serves, serve it."""
    from simpleclip.app import ClipApp, check_exposure, exposure_line, launch

    exposed = args.i_know_this_exposes_files
    check_exposure(args.host, args.allow_any_path, exposed)
    app = ClipApp(
        args.runs_dir,
        args.data_dir,
        checkpoint=args.checkpoint,
        images=args.images,
        allow_any_path=args.allow_any_path,
    )
    print(exposure_line(args.host, args.port, app.access))
    print(f"Checkpoints offered: {len(app.checkpoints)}, picture folders: {len(app.folders)}.")
    launch(app, host=args.host, port=args.port, i_know_this_exposes_files=exposed)
    return 0
