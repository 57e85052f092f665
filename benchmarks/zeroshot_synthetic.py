"""Zero-shot accuracy on the synthetic shapes with different prompt templates.

Loads a checkpoint, asks "which shape?", "which colour?" and "which colour-shape pair?" of the
single-shape pictures of a split, and of freshly drawn pictures of the pair held out of training
(purple triangle) and of the seen pairs, with the bare class name, one template and the template
ensembles of ``simpleclip.zeroshot``. Prints a Markdown table; ``--json`` also saves it.
Companion to ``notebooks/08_zero_shot_and_search.ipynb``.

    simpleclip demo                                   # trains runs/demo/model (~2 min on a CPU)
    python benchmarks/zeroshot_synthetic.py --checkpoint runs/demo/model --data data/synthetic
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from simpleclip.model import CLIPModel
from simpleclip.zeroshot.synthetic import format_table, synthetic_tasks, template_ablation


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkpoint", type=Path, default=Path("runs/demo/model"), help="a saved model folder"
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=Path("data/synthetic"),
        help="the synthetic set the model was trained on",
    )
    parser.add_argument("--split", default="test", help="whose pictures to classify")
    parser.add_argument(
        "--fresh",
        type=int,
        default=300,
        help="new pictures of the held-out pair, and of seen pairs",
    )
    parser.add_argument("--json", type=Path, default=None, help="also save the table here")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model = CLIPModel.load(args.checkpoint)
    table = template_ablation(model, synthetic_tasks(args.data, args.split, args.fresh))
    print(f"Zero-shot top-1 accuracy of {args.checkpoint} on {args.data} ({args.split} split):")
    print(format_table(table))
    print(f"({time.perf_counter() - start:.0f} s)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(table.reset_index().to_dict("records"), indent=2) + "\n")
        print(f"Wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
