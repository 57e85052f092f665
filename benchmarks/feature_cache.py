"""Frozen encoders: training on cached features versus recomputing them every epoch.

Trains the same config twice with both encoders frozen, once recomputing the encoders' features
at every step and once from ``train.cache_features`` (features computed once, heads trained on
them), and prints one JSON line per run plus the ratio of per-epoch training time. The cached
run's ``total_seconds`` includes computing the cache once.

    python benchmarks/feature_cache.py --config synthetic_tiny --epochs 3
    python benchmarks/feature_cache.py --smoke          # CI: tiny data, 2 epochs
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from simpleclip.cache import data_cache_dir
from simpleclip.config import load_config
from simpleclip.train import train


def run(config_name: str, overrides: list[str], cached: bool, out: Path) -> dict:
    config = load_config(
        config_name,
        [
            *overrides,
            "image.trainable=false",
            "text.trainable=false",
            f"train.cache_features={str(cached).lower()}",
            f"train.out_dir={out}",
        ],
    )
    for stale in data_cache_dir(config.data.root).glob("*features-*.pt"):  # time the cache too
        stale.unlink()
    start = time.perf_counter()
    result = train(config, progress=False)
    total = time.perf_counter() - start
    epochs = [record["epoch_seconds"] for record in result.history]
    validation = result.history[-1]["val"]
    return {
        "features": "cached" if cached else "recomputed",
        "epochs": len(epochs),
        "epoch_seconds": round(sum(epochs) / len(epochs), 3),
        "total_seconds": round(total, 1),
        "t2i_R@5": round(validation["t2i"]["R@5"], 3),
        "i2t_R@5": round(validation["i2t"]["R@5"], 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="synthetic_tiny")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--smoke", action="store_true", help="tiny data, 2 epochs (CI)")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="feature-cache-"))
    overrides = [f"train.epochs={2 if args.smoke else args.epochs}", *args.overrides]
    if args.smoke:
        overrides += [f"data.root={tmp}/data", "data.synthetic_images=120", "train.batch_size=32"]
    try:
        recomputed = run(args.config, overrides, cached=False, out=tmp / "recomputed")
        print(json.dumps(recomputed), flush=True)
        cached = run(args.config, overrides, cached=True, out=tmp / "cached")
        print(json.dumps(cached), flush=True)
        ratio = recomputed["epoch_seconds"] / max(cached["epoch_seconds"], 1e-6)
        print(json.dumps({"epoch_speedup": round(ratio, 1)}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
