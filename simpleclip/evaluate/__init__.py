"""Step 7 of the course: how good is a trained CLIP? Taught in ``notebooks/07_evaluation.ipynb``.

- ``retrieval``: the split a model is scored on (``eval_split``) and Recall@K in both
  directions, the standard Flickr8k measure;
- ``figures``: the evaluation pictures of a model on a test split (similarity matrix, retrieval
  grids, worst failures).

OpenAI's pretrained CLIP is scored like any model, zero-shot on the same split, for comparison:
``simpleclip eval --checkpoint openai/clip-vit-base-patch32`` (``CLIPModel.from_pretrained``).
"""

from simpleclip.evaluate.retrieval import (
    KS,
    Embeddings,
    compute_embeddings,
    eval_split,
    evaluate,
    format_recall_table,
    recall_from_ranks,
    retrieval_metrics,
    retrieval_ranks,
    save_metrics,
)

__all__ = [
    "KS",
    "Embeddings",
    "compute_embeddings",
    "eval_split",
    "evaluate",
    "format_recall_table",
    "recall_from_ranks",
    "retrieval_metrics",
    "retrieval_ranks",
    "save_metrics",
]
