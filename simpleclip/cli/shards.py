"""``simpleclip shards``: write a caption set as webdataset tar shards (img2dataset's layout).

A thin wrapper over ``simpleclip.data.shard_writer.write_shards``: one folder of shards per
split, then the settings that train from them. webdataset is an optional extra: ``pip install
"simpleclip[scale]"``. The road from Flickr8k to several machines: ``docs/scale.md``.

Example:
    simpleclip shards --data data/flickr8k --split train --out data/flickr8k-shards
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the ``shards`` command to ``commands`` (what ``add_subparsers`` returned)."""
    parser = commands.add_parser(
        "shards", help="write a caption set as webdataset tar shards (img2dataset's layout)"
    )
    parser.add_argument("--data", type=Path, required=True, help="the caption set's folder")
    parser.add_argument(
        "--split", default="train", help="train, dev, test, train+dev or all (default: train)"
    )
    parser.add_argument("--out", type=Path, required=True, help="shards go to OUT/SPLIT/")
    parser.add_argument(
        "--per-shard", type=int, default=1000, help="pictures per shard (default: 1000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="split seed of sets without one")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Write the shards and print how to train from them."""
    from simpleclip.data.shard_writer import write_shards

    start = time.perf_counter()
    paths = write_shards(args.data, args.split, args.out, args.per_shard, args.seed)
    seconds = time.perf_counter() - start
    size = sum(p.stat().st_size for p in paths) / 1e6
    last = f"{len(paths) - 1:05d}"
    pattern = f"{paths[0].parent}/{{00000..{last}}}.tar" if len(paths) > 1 else str(paths[0])
    print(f"Wrote {len(paths)} shards ({size:.1f} MB) to {paths[0].parent} in {seconds:.1f} s.")
    print(f"Train from them: --set data.format=webdataset --set 'data.shards={pattern}'")
    return 0
