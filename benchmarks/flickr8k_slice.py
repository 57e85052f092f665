"""Real photos, real pretrained weights, no internet: the Flickr8k-slice ablation on a CPU.

Trains on the train+dev images of the 1,000-photo Flickr8k slice (866 images, 4,330 captions)
and evaluates Recall@1/5/10 both ways on its 125 test images (625 captions), for each text
encoder and each row of the ablation: frozen encoders with a linear or an MLP head, each with
one positive per row and with the multi-positive loss, no head, and partial fine-tuning of the
encoders' last block. Frozen rows train on cached features (``train.cache_features``): the
encoders run once, timed on their own as "encode features"; each row's time is its training and
evaluation.

    python ../shared/tools/get_offline_weights.py --mpnet     # once: real weights, offline
    python benchmarks/flickr8k_slice.py                       # the whole ablation, both encoders
    python benchmarks/flickr8k_slice.py --text minilm --smoke # CI: 1 epoch, the default row
    python benchmarks/flickr8k_slice.py --figures docs/flickr8k_slice   # + notebook 07 pictures

Prints one JSON line per row and a Markdown table; ``--out`` also saves the rows as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from simpleclip.cache import data_cache_dir
from simpleclip.config import Config, load_config
from simpleclip.evaluate import compute_embeddings, eval_split, retrieval_metrics
from simpleclip.evaluate.figures import draw_evaluation_figures
from simpleclip.model import CLIPModel, build_model
from simpleclip.recall import KS, recall_key
from simpleclip.train import train
from simpleclip.train.data import build_datasets
from simpleclip.train.features import cached_features, embed_features

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "flickr8k_1k"
WEIGHTS = Path("~/.cache/simpleclip-offline").expanduser()
TEXT_ENCODERS = {"minilm": "all-MiniLM-L6-v2", "mpnet": "all-mpnet-base-v2"}
CONFIGS = {"minilm": "flickr8k_slice_effnet_minilm", "mpnet": "flickr8k_slice_effnet_mpnet"}
PARTIAL = [  # the last EfficientNet block (with its 1x1 head conv) and the last text layer
    "image.unfreeze_last=1",
    "text.unfreeze_last=1",
    "train.cache_features=false",
    "data.pairs=one_per_image",
    "train.batch_size=64",
    "train.epochs=4",
    "data.crop_scale=[0.9,1.0]",
    "data.color_jitter=0.0",
    "text.lr=5e-5",
]
ROWS = {  # row name -> overrides of the config (which is the "frozen, mlp head" row)
    "frozen, linear head, one positive": ["head.kind=linear", "loss.multi_positive=false"],
    "frozen, linear head": ["head.kind=linear"],
    "frozen, mlp head, one positive": ["loss.multi_positive=false"],
    "frozen, mlp head": [],
    "frozen, no head": ["head.kind=none"],
    "partial fine-tune, mlp head": PARTIAL,
}
SMOKE_ROWS = ["frozen, mlp head"]
TABLE_RECIPE = [  # the table's common recipe; the MPNet config now ships issue 17's winner
    "data.train_split=train+dev",
    "data.val_split=none",
    "data.pairs=all",
    "head.kind=mlp",
    "head.embed_dim=256",
    "train.epochs=5",
]


def missing_assets(data: Path, text_keys: list[str]) -> list[str]:
    """What this benchmark needs and cannot find, with how to get it."""
    missing = []
    if not (data / "Images").is_dir():
        missing.append(f"the Flickr8k slice at {data} (pass --data)")
    wanted = [WEIGHTS / "efficientnet_lite0" / "model.safetensors"]
    wanted += [WEIGHTS / TEXT_ENCODERS[key] / "config.json" for key in text_keys]
    for path in wanted:
        if not path.is_file():
            flag = " --mpnet" if "mpnet" in str(path) else ""
            missing.append(f"{path.parent} (python ../shared/tools/get_offline_weights.py{flag})")
    return missing


def row_config(text_key: str, overrides: list[str], data: Path, out: Path, args) -> Config:
    return load_config(
        CONFIGS[text_key],
        [
            f"data.root={data}",
            f"train.out_dir={out}",
            f"train.threads={args.threads}",
            *TABLE_RECIPE,
            *overrides,
            *(["train.epochs=1"] if args.smoke else []),
        ],
    )


def test_embeddings(config: Config, model: CLIPModel):
    """Test-split embeddings; frozen encoders read their cached features."""
    dataset = eval_split(model, config.data.root, "test")
    if config.train.cache_features:
        cache = data_cache_dir(config.data.root)
        return embed_features(model, cached_features(model, dataset, cache), dataset)
    return compute_embeddings(model, dataset)


def encode_features(config: Config) -> float:
    """Fill the feature cache for the train and test splits; returns the seconds it took."""
    start = time.perf_counter()
    torch.set_num_threads(config.train.threads)
    model = build_model(config)
    root, cache = Path(config.data.root), data_cache_dir(config.data.root)
    train_set, _ = build_datasets(config, model, root)  # as train() reads it: the same cache
    cached_features(model, train_set, cache)
    cached_features(model, eval_split(model, root, "test"), cache)
    return time.perf_counter() - start


def run_row(text_key: str, row: str, data: Path, tmp: Path, args) -> dict:
    out = tmp / f"{text_key}-{list(ROWS).index(row)}"
    config = row_config(text_key, ROWS[row], data, out, args)
    record: dict = {"text": TEXT_ENCODERS[text_key], "row": row}
    start = time.perf_counter()
    try:
        result = train(config, progress=False)
    except ValueError as err:  # e.g. no head with 1280-d images and 384-d captions
        return {**record, "skipped": str(err).split(";")[0]}
    metrics = retrieval_metrics(test_embeddings(config, result.model))
    record["seconds"] = round(time.perf_counter() - start, 1)
    for direction in ("t2i", "i2t"):
        record[direction] = [round(100 * metrics[direction][recall_key(k)], 1) for k in KS]
    record["test"] = f"{metrics['n_images']} images, {metrics['n_captions']} captions"
    record["model"] = str(result.out_dir / "best")
    return record


def markdown(rows: list[dict]) -> str:
    ks = "/".join(map(str, KS))
    lines = [
        f"| text encoder | setting | t2i R@{ks} | i2t R@{ks} | seconds |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['text']} | {r['row']} | n/a: {r['skipped']} | | |")
        elif "row" in r:
            t2i, i2t = ("/".join(f"{x:.1f}" for x in r[d]) for d in ("t2i", "i2t"))
            lines.append(f"| {r['text']} | {r['row']} | {t2i} | {i2t} | {r['seconds']} |")
        else:
            lines.append(f"| {r['text']} | encode features (once) | | | {r['seconds']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="the Flickr8k slice folder")
    parser.add_argument("--text", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=None)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    parser.add_argument("--smoke", action="store_true", help="1 epoch of the default row (CI)")
    parser.add_argument("--out", type=Path, default=None, help="save the rows as JSON here")
    parser.add_argument(
        "--figures",
        type=Path,
        default=None,
        help="draw notebook 07's pictures of the best model here",
    )
    args = parser.parse_args(argv)
    missing = missing_assets(args.data, args.text)
    if missing:
        print("Missing: " + "; ".join(missing), file=sys.stderr)
        return 2
    rows_wanted = args.rows or (SMOKE_ROWS if args.smoke else list(ROWS))
    rows: list[dict] = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="flickr8k-slice-") as tmp:
        for text_key in args.text:
            config = row_config(text_key, [], args.data, Path(tmp) / "features", args)
            seconds = encode_features(config)
            rows.append({"text": TEXT_ENCODERS[text_key], "seconds": round(seconds, 1)})
            print(json.dumps(rows[-1]), flush=True)
            for row in rows_wanted:
                rows.append(run_row(text_key, row, args.data, Path(tmp), args))
                print(json.dumps(rows[-1]), flush=True)
        if args.figures:
            best = max((r for r in rows if "t2i" in r), key=lambda r: r["t2i"][1])
            draw_figures(Path(best["model"]), args.data, args.figures)
    total = time.perf_counter() - start
    print(markdown(rows))
    print(f"Total: {total:.0f} s ({torch.get_num_threads()} threads).")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"rows": rows, "total_seconds": round(total)}, indent=2))
    return 0


def draw_figures(model_dir: Path, data: Path, out: Path) -> None:
    """Notebook 07's real pictures: similarity matrix, retrieval grids, failure cases."""
    model = CLIPModel.load(model_dir)
    dataset = eval_split(model, data, "test")
    for path in draw_evaluation_figures(model, dataset, compute_embeddings(model, dataset), out):
        print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
