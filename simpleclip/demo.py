"""The demo: a tiny CLIP trained from scratch on the synthetic shapes, on a CPU, in about a minute.

It builds the synthetic set if missing, trains the ``synthetic_tiny`` config, evaluates the
test split, prints the Recall@K table and writes ``runs/demo/``: ``metrics.json``, the training
curves, the similarity-matrix picture and the trained model (``runs/demo/model``, reloadable
with ``CLIPModel.load``), replacing an earlier demo run there (it says so). All paths are
relative to the current directory.
"""

from __future__ import annotations

from pathlib import Path

from simpleclip.config import Config, find_config, load_config
from simpleclip.evaluate import (
    compute_embeddings,
    eval_split,
    format_recall_table,
    retrieval_metrics,
    save_metrics,
)
from simpleclip.model import CLIPModel
from simpleclip.train import train
from simpleclip.train.run_dir import CURVES_FIGURE, FINAL_MODEL, SIMILARITY_FIGURE, TEST_METRICS

DEMO_CONFIG = "synthetic_tiny"
DEMO_DIR = "runs/demo"  # relative to the current folder


def demo_config(out_dir: str | Path = DEMO_DIR, overrides: list[str] | None = None) -> Config:
    """The demo's config: the ``synthetic_tiny`` config writing to ``out_dir``."""
    return load_config(find_config(DEMO_CONFIG), [f"train.out_dir={out_dir}", *(overrides or [])])


def run_demo(
    out_dir: str | Path = DEMO_DIR, overrides: list[str] | None = None, progress: bool = True
) -> dict:
    """Train, evaluate on the test split, draw, save; returns the metrics (also in metrics.json)."""
    from simpleclip.evaluate.figures import draw_similarity_matrix
    from simpleclip.viz import plot_training_curves, save_figure

    config = demo_config(out_dir, overrides)
    out_dir = Path(config.train.out_dir)
    result = train(config, progress=progress, overwrite=True)  # prints that it replaces one
    model = CLIPModel.load(result.best_dir)
    test_set = eval_split(model, config.data.root, "test")
    embeddings = compute_embeddings(model, test_set)
    metrics = retrieval_metrics(embeddings)
    metrics["train_seconds"] = round(result.seconds, 1)
    save_metrics(metrics, out_dir / TEST_METRICS)
    model.save(out_dir / FINAL_MODEL)
    save_figure(plot_training_curves(result.history), out_dir / CURVES_FIGURE)
    draw_similarity_matrix(model, test_set, embeddings, out_dir / SIMILARITY_FIGURE)
    print(format_recall_table(metrics))
    written = f"{TEST_METRICS}, {CURVES_FIGURE}, {SIMILARITY_FIGURE}, {FINAL_MODEL}/"
    print(f"Training took {result.seconds:.0f} s. Wrote {out_dir}/: {written}")
    return metrics
