"""Pictures: the similarity matrix and training curves.

The similarity matrix is CLIP's signature picture: N images against their N captions, each
cell the cosine similarity of one image and one caption. A trained model lights up the diagonal.
Beside it, the softmax over each row (scaled by the learned temperature) shows what the loss
actually sees. ``viz`` is for pictures only: training code never imports it.
Taught in ``notebooks/07_evaluation.ipynb``; CLIP paper, Figure 1.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.offsetbox import AnnotationBbox, OffsetImage


def plot_similarity_matrix(
    images: Sequence[np.ndarray],
    captions: Sequence[str],
    similarity: torch.Tensor,
    logit_scale: float | None = None,
    wrap: int = 34,
) -> Figure:
    """Cosine similarities of N images (columns) and N captions (rows); true pairs on the diagonal.

    Args:
        images: N pictures as HWC uint8 arrays (thumbnails along the top).
        captions: the N captions, caption i belonging to image i.
        similarity: (N, N) cosine similarities, ``[caption, image]``.
        logit_scale: if given, a second panel shows softmax(scale * cosine) per caption row.
        wrap: caption line width in characters.
    """
    n = len(images)
    sims = similarity.detach().float().cpu().numpy()
    panels = [("cosine similarity", sims, "RdBu_r", (-1, 1))]
    if logit_scale is not None:
        probs = torch.softmax(torch.from_numpy(sims) * float(np.exp(logit_scale)), dim=1).numpy()
        panels.append(("softmax over images (what the loss sees)", probs, "viridis", (0, 1)))
    cell = 0.9 if n <= 10 else 0.55
    fig, axes = plt.subplots(
        1, len(panels), figsize=(len(panels) * (n * cell + 1.5) + 3, n * cell + 2.5),
        squeeze=False,
    )  # fmt: skip
    for index, (ax, (title, values, cmap, limits)) in enumerate(zip(axes[0], panels, strict=True)):
        _heatmap(ax, values, cmap, limits, show_values=n <= 12)
        ax.set_title(title, pad=n * 6 + 40)
        labels = [textwrap.shorten(c, wrap * 2) for c in captions] if index == 0 else []
        ax.set_yticks(range(n), ["\n".join(textwrap.wrap(c, wrap)) for c in labels] or [""] * n,
                      fontsize=8)  # fmt: skip
        _thumbnails_on_top(ax, images)
    fig.tight_layout()
    return fig


def _heatmap(ax: Any, values: np.ndarray, cmap: str, limits: tuple, show_values: bool) -> None:
    n = len(values)
    ax.imshow(values, cmap=cmap, vmin=limits[0], vmax=limits[1])
    ax.set_xticks([])
    for i in range(n):  # outline the true pairs
        ax.add_patch(plt.Rectangle((i - 0.5, i - 0.5), 1, 1, fill=False, ec="black", lw=2))
    if show_values:
        for (row, col), value in np.ndenumerate(values):
            strong = abs(value - np.mean(limits)) > 0.3 * np.ptp(limits)
            ax.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if strong else "black")  # fmt: skip


def _thumbnails_on_top(ax: Any, images: Sequence[np.ndarray]) -> None:
    for col, image in enumerate(images):
        zoom = 36 / max(image.shape[:2])
        box = AnnotationBbox(OffsetImage(image, zoom=zoom), (col, -0.5), xybox=(0, 22),
                             xycoords="data", boxcoords="offset points", frameon=False,
                             annotation_clip=False)  # fmt: skip
        ax.add_artist(box)


def plot_training_curves(history: Sequence[dict]) -> Figure:
    """Loss per step, dev Recall@K per epoch and the learned temperature, from ``metrics.jsonl``."""
    fig, (loss_ax, recall_ax, temp_ax) = plt.subplots(1, 3, figsize=(15, 3.8))
    losses = [loss for record in history for loss in record.get("step_losses", [])]
    loss_ax.plot(losses, lw=1, color="tab:blue")
    loss_ax.set(title="training loss", xlabel="step", ylabel="contrastive loss")
    epochs = [record["epoch"] for record in history]
    for direction, style in (("t2i", "-"), ("i2t", "--")):
        for k, color in ((1, "tab:red"), (5, "tab:green"), (10, "tab:purple")):
            values = [100 * record["val"][direction][f"R@{k}"] for record in history]
            recall_ax.plot(epochs, values, style, color=color, label=f"{direction} R@{k}")
    recall_ax.set(title="dev recall", xlabel="epoch", ylabel="%", ylim=(0, 101))
    recall_ax.legend(fontsize=7, ncol=2)
    temp_ax.plot(epochs, [record["temperature"] for record in history], "o-", color="tab:orange")
    temp_ax.set(title="learned temperature", xlabel="epoch")
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write a PNG and close the figure (long runs must not accumulate open figures)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path
