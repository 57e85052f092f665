"""Shards versus folder: training throughput, and recall with the same seed and pairs.

Throughput (the default): the same config trained from a caption folder and from the same
split written as webdataset shards (``simpleclip shards``), side by side in one run, modes
alternating in rounds. Each round trains ``--epochs`` epochs per mode in a fresh ``train``;
pairs/s of the epochs after the first are kept (the first pays for start-up), medians over
rounds. Modes: ``folder`` (the default road: pictures decoded once into the image cache),
``folder-decode`` (``data.image_cache=false``: the JPEG decoded at every step, as a stream
must) and ``shards``. One JSON line per mode, then the ratios.

    python benchmarks/shards_throughput.py --data ../shared/data/flickr8k_1k --rounds 3
    python benchmarks/shards_throughput.py --recall --seeds 0 1 2   # synthetic, dev recall
    python benchmarks/shards_throughput.py --smoke                  # CI: tiny synthetic set

``--recall``: the synthetic demo set (2,500 pictures) trained from its folder and from its
shards with the same seed and the same number of pairs per epoch (one caption per picture,
``synthetic_tiny``); the dev recall of each after the last epoch, per seed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from simpleclip.config import load_config
from simpleclip.data import make_synthetic
from simpleclip.data.shard_writer import write_shards
from simpleclip.train import train

SLICE = Path(__file__).resolve().parents[2] / "shared" / "data" / "flickr8k_1k"
MODES = {
    "folder": ["data.format=folder", "data.image_cache=true"],
    "folder-decode": ["data.format=folder", "data.image_cache=false"],
    "shards": ["data.format=webdataset"],
}


def run(overrides: list[str], out: Path) -> list[dict]:
    """One ``train`` run of the tiny config; its per-epoch records."""
    config = load_config("synthetic_tiny", [*overrides, f"train.out_dir={out}"])
    return train(config, progress=False).history


def throughput(args: argparse.Namespace, tmp: Path) -> None:
    start = time.perf_counter()
    shards = write_shards(args.data, args.split, tmp / "shards", args.per_shard)
    print(f"# wrote {len(shards)} shards in {time.perf_counter() - start:.1f} s", flush=True)
    common = [
        f"data.root={args.data}",
        "data.synthetic_images=0",
        f"data.train_split={args.split}",
        "data.val_split=none",
        f"data.shards={shards[0].parent}/{{00000..{len(shards) - 1:05d}}}.tar",
        f"data.num_workers={args.workers}",
        f"train.batch_size={args.batch_size}",
        f"train.epochs={args.epochs}",
        f"train.threads={args.threads}",
        *args.overrides,
    ]
    speeds: dict[str, list[float]] = {mode: [] for mode in MODES}
    for round_ in range(args.rounds):
        for mode, settings in MODES.items():
            history = run([*common, *settings], tmp / f"{mode}-{round_}")
            speeds[mode] += [r["pairs_per_second"] for r in history[1:]]
    rows = {}
    for mode, values in speeds.items():
        rows[mode] = statistics.median(values)
        row = {"mode": mode, "pairs_per_s": round(rows[mode], 1), "epochs_kept": len(values)}
        print(json.dumps({**row, "batch_size": args.batch_size, "rounds": args.rounds}))
    print(
        json.dumps(
            {
                "shards_vs_folder": round(rows["shards"] / rows["folder"], 2),
                "shards_vs_folder_decode": round(rows["shards"] / rows["folder-decode"], 2),
            }
        )
    )


def recall(args: argparse.Namespace, tmp: Path) -> None:
    """Folder and shards, the same seed and pairs: the dev recall of the last epoch."""
    root = make_synthetic(tmp / "synthetic", n_images=args.pictures, seed=0)
    shards = write_shards(root, "train", tmp / "shards", args.per_shard)
    pattern = f"{shards[0].parent}/{{00000..{len(shards) - 1:05d}}}.tar"
    for seed in args.seeds:
        for mode, settings in (("folder", []), ("shards", [f"data.shards={pattern}"])):
            history = run(
                [
                    f"data.root={root}",
                    "data.synthetic_images=0",
                    f"data.format={'webdataset' if mode == 'shards' else 'folder'}",
                    f"train.seed={seed}",
                    f"train.epochs={args.epochs}",
                    *settings,
                    *args.overrides,
                ],
                tmp / f"{mode}-{seed}",
            )
            val = history[-1]["val"]
            row = {"mode": mode, "seed": seed, "steps": history[-1]["step"]}
            for direction in ("t2i", "i2t"):
                for k in (1, 5):
                    row[f"{direction}_R@{k}"] = round(100 * val[direction][f"R@{k}"], 1)
            print(json.dumps(row), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SLICE, help="a caption folder")
    parser.add_argument("--split", default="train")
    parser.add_argument("--per-shard", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0, help="data.num_workers")
    parser.add_argument("--threads", type=int, default=2, help="train.threads")
    parser.add_argument("--recall", action="store_true", help="synthetic recall, not speed")
    parser.add_argument("--pictures", type=int, default=2500, help="--recall: synthetic set")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--smoke", action="store_true", help="tiny synthetic set (CI)")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="shards-bench-"))
    try:
        if args.recall:
            recall(args, tmp)
            return 0
        if args.smoke:
            args.data = make_synthetic(tmp / "synthetic", n_images=120, seed=0)
            args.per_shard, args.batch_size, args.epochs, args.rounds = 24, 16, 2, 1
        elif not (args.data / "Images").is_dir():
            parser.error(f"no caption folder at {args.data} (the Flickr8k slice); pass --data")
        throughput(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
