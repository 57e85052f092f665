"""``simpleclip eval``: Recall@K of a model on a split: a run of ours, or a pretrained CLIP.

A thin wrapper over ``simpleclip.evaluate``: load the model (``--checkpoint``: a saved folder,
a CLIP in transformers' layout, or a Hub id such as ``openai/clip-vit-base-patch32``, which
scores OpenAI's CLIP zero-shot), encode the split on the GPU if there is one, print the
Recall@K table and write ``metrics_SPLIT.json``, which ``simpleclip push`` puts on the model
card. ``--baseline NAME`` is the old spelling of ``--checkpoint NAME``.
Taught in ``notebooks/07_evaluation.ipynb``.

Example:
    simpleclip eval --checkpoint runs/demo/model --data data/synthetic --split test
"""

from __future__ import annotations

import argparse
import sys
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
        "--baseline", metavar="NAME", help="the same as --checkpoint NAME (the old spelling)"
    )
    parser.add_argument("--data", type=Path, required=True, help="dataset folder")
    parser.add_argument("--split", default="test", help="train, dev (val), test, or all")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="metrics.json path (default: CHECKPOINT/metrics_SPLIT.json for a local folder, "
        "./metrics_OWNER--NAME_SPLIT.json for a Hub id)",
    )
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the table, write the metrics file."""
    from simpleclip.allocator import keep_freed_memory
    from simpleclip.device import select_device
    from simpleclip.evaluate import eval_split, evaluate, format_recall_table, save_metrics
    from simpleclip.model import CLIPModel
    from simpleclip.paths import is_local_name

    if args.baseline:
        print(
            f"--baseline is --checkpoint now: evaluating --checkpoint {args.baseline}",
            file=sys.stderr,
        )
        args.checkpoint = args.baseline
    device = select_device("auto")
    if device.type == "cpu":
        keep_freed_memory()  # as training does: each batch reuses the last one's memory
    model = CLIPModel.from_pretrained(args.checkpoint)
    if is_local_name(args.checkpoint):
        out = args.out or Path(args.checkpoint) / f"metrics_{args.split}.json"
    else:  # the Hub cache is no place for our files
        out = args.out or Path(f"metrics_{args.checkpoint.replace('/', '--')}_{args.split}.json")
    dataset = eval_split(model, args.data, args.split)
    model.to(device)  # encoding a split is the slow part: use the GPU if any
    start = time.perf_counter()
    metrics = evaluate(model, dataset)
    metrics["eval_seconds"] = round(time.perf_counter() - start, 2)
    print(format_recall_table(metrics))
    print(f"Wrote {save_metrics(metrics, out)}")
    return 0
