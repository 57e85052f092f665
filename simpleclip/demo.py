"""The demo: a tiny CLIP trained from scratch on the synthetic shapes, on a CPU, in about a minute.

It builds the synthetic set if missing, trains the ``synthetic_tiny`` config, evaluates the
test split, prints the Recall@K table and writes ``runs/demo/``: ``metrics.json``, the training
curves, the similarity-matrix picture and the trained model (``runs/demo/model``, reloadable
with ``CLIPModel.load``). All paths are relative to the current directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from simpleclip.config import Config, find_config, load_config
from simpleclip.data import CaptionDataset, build_transforms, denormalize, load_split
from simpleclip.data.dataset import find_images_dir
from simpleclip.evaluate import compute_embeddings, format_recall_table, retrieval_metrics
from simpleclip.model import CLIPModel
from simpleclip.train import train

DEMO_CONFIG = "synthetic_tiny"


def demo_config(out_dir: str | Path = "runs/demo", overrides: list[str] | None = None) -> Config:
    """The demo's config: the ``synthetic_tiny`` config writing to ``out_dir``."""
    return load_config(find_config(DEMO_CONFIG), [f"train.out_dir={out_dir}", *(overrides or [])])


def run_demo(
    out_dir: str | Path = "runs/demo", overrides: list[str] | None = None, progress: bool = True
) -> dict:
    """Train, evaluate on the test split, draw, save; returns the metrics (also in metrics.json)."""
    config = demo_config(out_dir, overrides)
    out_dir = Path(config.train.out_dir)
    result = train(config, progress=progress)
    model = CLIPModel.load(result.best_dir)
    root = Path(config.data.root)
    test_set = CaptionDataset(
        load_split(root, "test"),
        find_images_dir(root),
        model.tokenizer,
        build_transforms(model.image_encoder.preprocessing, train=False),
        max_length=config.data.max_length,
    )
    embeddings = compute_embeddings(model, test_set)
    metrics = retrieval_metrics(embeddings)
    metrics["train_seconds"] = round(result.seconds, 1)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    model.save(out_dir / "model")
    _draw(model, test_set, embeddings, result.history, out_dir)
    print(format_recall_table(metrics))
    print(
        f"Training took {result.seconds:.0f} s. Wrote {out_dir}/: metrics.json, "
        "training_curves.png, similarity_matrix.png, model/"
    )
    return metrics


def _draw(model: CLIPModel, test_set: CaptionDataset, embeddings, history, out_dir: Path) -> None:
    from simpleclip.viz import plot_similarity_matrix, plot_training_curves, save_figure

    save_figure(plot_training_curves(history), out_dir / "training_curves.png")
    n = min(8, len(test_set.image_names))
    captions = [int(np.flatnonzero(test_set.caption_image == i)[0]) for i in range(n)]
    pre = model.image_encoder.preprocessing
    pictures = [denormalize(test_set.load_image(i), pre) for i in range(n)]
    similarity = embeddings.text_embeds[captions] @ embeddings.image_embeds[:n].T  # (n, n)
    figure = plot_similarity_matrix(
        pictures,
        [test_set.captions[c] for c in captions],
        similarity,
        logit_scale=float(torch.clamp(model.logit_scale.detach(), max=np.log(100))),
    )
    save_figure(figure, out_dir / "similarity_matrix.png")
