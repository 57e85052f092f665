"""``simpleclip eval``: Recall@K of a checkpoint, or of pretrained CLIP zero-shot, on a split.

A thin wrapper over ``simpleclip.evaluate``: load the model (``--checkpoint``, or a hub or local
CLIP with ``--baseline``), encode the split on the GPU if there is one, print the Recall@K
table and write ``metrics_SPLIT.json``, which ``simpleclip push`` puts on the model card.
Taught in ``notebooks/07_evaluation.ipynb``.

Example:
    simpleclip eval --checkpoint runs/demo/model --data data/synthetic --split test
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from simpleclip.cli.options import add_checkpoint


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the ``eval`` command to ``commands`` (what ``add_subparsers`` returned)."""
    parser = commands.add_parser("eval", help="Recall@K of a checkpoint on a split")
    which = parser.add_mutually_exclusive_group(required=True)
    add_checkpoint(which, required=False)  # the group requires one of the two
    which.add_argument(
        "--baseline",
        metavar="NAME",
        help="instead, pretrained CLIP zero-shot: a hub id such as "
        "openai/clip-vit-base-patch32 (online once) or a local folder",
    )
    parser.add_argument("--data", type=Path, required=True, help="dataset folder")
    parser.add_argument("--split", default="test", help="train, dev (val), test, or all")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="metrics.json path (default: CHECKPOINT/metrics_SPLIT.json, "
        "or ./metrics_baseline_SPLIT.json)",
    )
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the table, write the metrics file."""
    from simpleclip.allocator import keep_freed_memory
    from simpleclip.device import select_device
    from simpleclip.evaluate import eval_split, evaluate, format_recall_table, save_metrics

    device = select_device("auto")
    if device.type == "cpu":
        keep_freed_memory()  # as training does: each batch reuses the last one's memory
    if args.baseline:
        from simpleclip.evaluate.baseline import load_baseline

        model = load_baseline(args.baseline)
        out = args.out or Path(f"metrics_baseline_{args.split}.json")
    else:
        from simpleclip.model import CLIPModel

        model = CLIPModel.load(args.checkpoint)
        out = args.out or args.checkpoint / f"metrics_{args.split}.json"
    dataset = eval_split(model, args.data, args.split)
    model.to(device)  # encoding a split is the slow part: use the GPU if any
    start = time.perf_counter()
    metrics = evaluate(model, dataset)
    metrics["eval_seconds"] = round(time.perf_counter() - start, 2)
    if args.baseline:
        metrics["baseline"] = args.baseline
        print(f"Zero-shot baseline: {args.baseline} (pretrained CLIP, not trained on this data)")
    print(format_recall_table(metrics))
    print(f"Wrote {save_metrics(metrics, out)}")
    return 0
