"""The ``simpleclip`` command line (also ``python -m simpleclip``).

Each sub-command is a thin wrapper over a package function, so everything it does can also be
done from Python or a notebook. Heavy imports happen inside the commands, keeping ``--help`` fast.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="simpleclip", description="Learn CLIP by building it: data, training, evaluation."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    synth = commands.add_parser(
        "make-synthetic", help="write the built-in synthetic shapes set (Flickr8k layout)"
    )
    synth.add_argument("--out", type=Path, default=Path("data/synthetic"), help="target folder")
    synth.add_argument("--images", type=int, default=2500, help="number of pictures")
    synth.add_argument("--size", type=int, default=64, help="picture side in pixels")
    synth.add_argument("--seed", type=int, default=0, help="same seed, same bytes")
    synth.set_defaults(run=run_make_synthetic)

    download = commands.add_parser("download", help="download a real dataset")
    download.add_argument("dataset", choices=["flickr8k"], help="which dataset")
    download.add_argument("--root", type=Path, default=Path("data/flickr8k"), help="target folder")
    download.set_defaults(run=run_download)
    return parser


def run_make_synthetic(args: argparse.Namespace) -> int:
    from simpleclip.data import make_synthetic
    from simpleclip.data.summary import describe_dataset

    existed = args.out.exists()
    start = time.perf_counter()
    root = make_synthetic(args.out, n_images=args.images, image_size=args.size, seed=args.seed)
    seconds = time.perf_counter() - start
    if existed:
        print(f"Reusing the synthetic set already in {root} (same parameters).")
    else:
        print(f"Wrote {args.images} images to {root} in {seconds:.1f} s "
              f"({args.images / seconds:.0f} images/s).")
    print(describe_dataset(root))
    return 0


def run_download(args: argparse.Namespace) -> int:
    from simpleclip.data.download import download_flickr8k
    from simpleclip.data.summary import describe_dataset

    root = download_flickr8k(args.root)
    print(describe_dataset(root))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code. Expected errors print one clear line."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (FileNotFoundError, FileExistsError, ValueError, RuntimeError) as err:
        print(f"simpleclip {args.command}: error: {err}", file=sys.stderr)
        return 1
