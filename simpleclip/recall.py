"""Recall@K as it is named and shown: which K, the metric keys, one row of a table.

The evaluation (``evaluate/retrieval.py``), the best-epoch rule (``train/loop.py``), the
training curves (``viz``), the terminal table and the model card's Markdown table all read the
same keys, ``metrics["t2i"]["R@5"]``; writing ``(1, 5, 10)`` in each of them would let them
drift apart. The numbers are computed in ``evaluate/retrieval.py`` and taught in
``notebooks/07_evaluation.ipynb``; the names live here, in the lowest layer, because the model
card and the figures sit below ``evaluate`` and read them too.
"""

from __future__ import annotations

from collections.abc import Mapping

KS = (1, 5, 10)  # the K of Recall@K every table and curve reports (as in the CLIP paper)
DIRECTIONS = ("t2i", "i2t")  # text -> image (a caption finds its photo), image -> text


def recall_key(k: int) -> str:
    """The metrics key of Recall@``k``: ``"R@5"``."""
    return f"R@{k}"


def recall_cells(direction_metrics: Mapping[str, float], ks: tuple[int, ...] = KS) -> list[str]:
    """One direction's recalls as the cells of a table row: percentages with one decimal.

    The terminal table pads these cells and the model card joins them with ``|``: one rule for
    what a recall looks like in print.
    """
    return [f"{100 * direction_metrics[recall_key(k)]:.1f}" for k in ks]
