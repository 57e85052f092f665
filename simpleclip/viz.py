"""Pictures: the similarity matrix, training curves, retrieval grids and the embedding map.

The similarity matrix is CLIP's signature picture: N images against their N captions, each
cell the cosine similarity of one image and one caption. A trained model lights up the diagonal.
Below it, the softmax over each row (scaled by the learned temperature) shows what the loss
actually sees. Retrieval grids show a query's top-k answers; the embedding map projects images
and captions together to 2-D. ``viz`` is for pictures only: training code never imports it.
Taught in ``notebooks/07_evaluation.ipynb``; CLIP paper, Figure 1.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.offsetbox import AnnotationBbox, OffsetImage

from simpleclip.recall import KS, recall_key

# The similarity matrix is drawn for a notebook column: at most 10.5 inches wide (1,050 px at
# the inline backend's 100 dpi), thumbnails at least 68 px wide for up to 12 pictures.
MATRIX_WIDTH = 10.5  # inches, labels included
MATRIX_FONT = 9  # points: captions and the values in the cells
_CHAR_WIDTH = 0.55 * MATRIX_FONT / 72  # inches per character of a caption, on average


def plot_similarity_matrix(
    images: Sequence[np.ndarray],
    captions: Sequence[str],
    similarity: torch.Tensor,
    logit_scale: float | None = None,
) -> Figure:
    """Cosine similarities of N images (columns) and N captions (rows); true pairs on the diagonal.

    The panels are stacked, the pictures along the top, the captions (wrapped, shortened) as
    row labels, so that 8 to 12 pictures stay readable in a notebook column: the figure is 10.5
    inches wide, each thumbnail at least 68 px wide at 100 dpi up to 12 pictures.

    Args:
        images: N pictures as HWC uint8 arrays (thumbnails along the top).
        captions: the N captions, caption i belonging to image i.
        similarity: (N, N) cosine similarities, ``[caption, image]``.
        logit_scale: if given, a second panel below shows softmax(scale * cosine) per caption
            row: what the contrastive loss sees.
    """
    n = len(images)
    sims = similarity.detach().float().cpu().numpy()
    panels = [("cosine similarity of each caption (row) and picture (column)", sims, "RdBu_r")]
    if logit_scale is not None:
        probs = torch.softmax(torch.from_numpy(sims) * float(np.exp(logit_scale)), dim=1).numpy()
        panels.append(
            ("softmax over the pictures of each row (what the loss sees)", probs, "viridis")
        )
    cell_w = min(0.95, (MATRIX_WIDTH - 2.0) / max(n, 1))  # column width = thumbnail size
    cell_h = 0.55 if n <= 8 else 0.42  # row height: three caption lines, or two
    label_w, title_h, gap = MATRIX_WIDTH - n * cell_w - 0.15, 0.35, 0.2
    lines = max(1, int(cell_h * 72 / (MATRIX_FONT * 1.25)))  # caption lines that fit a row
    labels = [_wrapped(c, int(label_w / _CHAR_WIDTH), lines) for c in captions]
    height = len(panels) * (title_h + n * cell_h) + (len(panels) - 1) * gap + cell_w + 0.1
    fig = plt.figure(figsize=(MATRIX_WIDTH, height))

    def box(bottom: float, tall: float) -> tuple[float, float, float, float]:  # inches -> figure
        return (label_w / MATRIX_WIDTH, bottom / height, n * cell_w / MATRIX_WIDTH, tall / height)

    top = height
    for index, (title, values, cmap) in enumerate(panels):
        top -= title_h + (gap if index else 0)
        fig.text(label_w / MATRIX_WIDTH, (top + 0.08) / height, title, fontsize=11)
        if index == 0:  # the pictures, above the first panel
            top -= cell_w
            _thumbnail_strip(fig.add_axes(box(top, cell_w)), images)
        top -= n * cell_h
        ax = fig.add_axes(box(top, n * cell_h))
        _heatmap(ax, values, cmap, (-1, 1) if index == 0 else (0, 1), show_values=n <= 12)
        ax.set_yticks(range(n), labels, fontsize=MATRIX_FONT)
    return fig


def _wrapped(caption: str, width: int, lines: int) -> str:
    """A caption in at most ``lines`` lines of ``width`` characters, shortened with "..."."""
    return "\n".join(textwrap.wrap(caption, width, max_lines=lines, placeholder=" ..."))


def _heatmap(ax: Any, values: np.ndarray, cmap: str, limits: tuple, show_values: bool) -> None:
    n = len(values)
    shown = ax.imshow(values, cmap=cmap, vmin=limits[0], vmax=limits[1], aspect="auto")
    ax.set_xticks([])
    for i in range(n):  # outline the true pairs
        ax.add_patch(plt.Rectangle((i - 0.5, i - 0.5), 1, 1, fill=False, ec="black", lw=2))
    if show_values:
        for (row, col), value in np.ndenumerate(values):
            red, green, blue, _ = shown.cmap(shown.norm(value))
            dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5  # perceived brightness
            ax.text(
                col,
                row,
                f"{value:.2f}",
                ha="center",
                va="center",
                fontsize=MATRIX_FONT,
                color="white" if dark else "black",
            )


def _thumbnail_strip(ax: Any, images: Sequence[np.ndarray], fill: float = 0.96) -> None:
    """One picture per column, centred on it, its aspect kept, ``fill`` of the column wide."""
    ax.set(xlim=(-0.5, len(images) - 0.5), ylim=(0, 1))
    ax.axis("off")
    width, height = ax.get_position().size * ax.figure.get_size_inches()  # inches
    column = width / len(images)
    for col, image in enumerate(images):
        rows, cols = image.shape[:2]
        inches = fill * min(column / cols, height / rows)  # per pixel
        half_w, half_h = inches * cols / column / 2, inches * rows / height / 2  # data units
        extent = (col - half_w, col + half_w, 0.5 - half_h, 0.5 + half_h)
        ax.imshow(image, extent=extent, aspect="auto")


def plot_training_curves(history: Sequence[dict]) -> Figure:
    """Loss per step, dev Recall@K per epoch and the learned temperature, from ``metrics.jsonl``."""
    fig, (loss_ax, recall_ax, temp_ax) = plt.subplots(1, 3, figsize=(15, 3.8))
    losses = [loss for record in history for loss in record.get("step_losses", [])]
    loss_ax.plot(losses, lw=1, color="tab:blue")
    loss_ax.set(title="training loss", xlabel="step", ylabel="contrastive loss")
    epochs = [record["epoch"] for record in history]
    scored = [record for record in history if record["val"] is not None]  # val_split=none: no
    for direction, style in (("t2i", "-"), ("i2t", "--")):
        for k, color in zip(KS, ("tab:red", "tab:green", "tab:purple"), strict=True):
            values = [100 * record["val"][direction][recall_key(k)] for record in scored]
            label = f"{direction} {recall_key(k)}"
            recall_ax.plot([r["epoch"] for r in scored], values, style, color=color, label=label)
    recall_ax.set(title="dev recall", xlabel="epoch", ylabel="%", ylim=(0, 101))
    recall_ax.legend(fontsize=7, ncol=2)
    temp_ax.plot(epochs, [record["temperature"] for record in history], "o-", color="tab:orange")
    temp_ax.set(title="learned temperature", xlabel="epoch")
    fig.tight_layout()
    return fig


def plot_text_to_images(
    query: str,
    images: Sequence[np.ndarray],
    scores: Sequence[float],
    labels: Sequence[str] | None = None,
    correct: Sequence[bool] | None = None,
    ncols: int | None = None,
    cell: float = 2.2,
    ranks: Sequence[int] | None = None,
) -> Figure:
    """A text query and its top-k pictures, best first.

    Args:
        query: the sentence that was searched for (the title).
        images: the k best pictures as HWC uint8 arrays, best first.
        scores: their cosine similarities with the query.
        labels: a short name under each picture, e.g. its file name.
        correct: when the true answers are known: a green frame for a true match, red otherwise.
        ncols: pictures per row (default: a square-ish grid).
        cell: inches per picture; the figure is ``ncols * cell`` by ``nrows * cell + 0.7``.
        ranks: the rank shown above each picture (default 1, 2, ...), e.g. to add the right
            answer from far down the list.
    """
    k = len(images)
    ncols = ncols or math.ceil(math.sqrt(k))
    nrows = math.ceil(k / ncols)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(ncols * cell, nrows * cell + 0.7),
        squeeze=False,
        layout="constrained",
    )
    for i, ax in enumerate(axes.flat):
        if i >= k:
            ax.axis("off")
            continue
        ax.imshow(images[i])
        ax.set_xticks([])
        ax.set_yticks([])
        name = f"\n{textwrap.shorten(labels[i], 28)}" if labels is not None else ""
        rank = ranks[i] if ranks is not None else i + 1
        ax.set_title(f"#{rank}  cos {scores[i]:.2f}{name}", fontsize=8)
        if correct is not None:
            for spine in ax.spines.values():
                spine.set(color="tab:green" if correct[i] else "tab:red", linewidth=4)
    fig.suptitle("\n".join(textwrap.wrap(f"\u201c{query}\u201d", 70)), fontsize=11)
    return fig


def plot_image_to_texts(
    image: np.ndarray,
    captions: Sequence[str],
    scores: Sequence[float],
    correct: Sequence[bool] | None = None,
    wrap: int = 48,
) -> Figure:
    """A picture and its top-k captions as bars, best on top; true captions green when known.

    The figure is 10 inches wide and ``max(2.5, 0.45 * k + 1)`` tall.
    """
    k = len(captions)
    fig, (image_ax, bar_ax) = plt.subplots(
        1, 2, figsize=(10, max(2.5, 0.45 * k + 1)), gridspec_kw={"width_ratios": [1, 2.4]}
    )
    image_ax.imshow(image)
    image_ax.axis("off")
    colors = ["tab:blue"] * k
    if correct is not None:
        colors = ["tab:green" if c else "tab:red" for c in correct]
    bar_ax.barh(range(k), scores, color=colors)
    labels = ["\n".join(textwrap.wrap(c, wrap)[:2]) for c in captions]
    bar_ax.set_yticks(range(k), [f"#{i + 1} {t}" for i, t in enumerate(labels)], fontsize=8)
    bar_ax.invert_yaxis()  # the best caption on top
    bar_ax.set(xlabel="cosine similarity", title=f"top {k} captions for this picture")
    fig.tight_layout()
    return fig


def project_2d(points: torch.Tensor, method: str = "pca", seed: int = 0) -> np.ndarray:
    """Project points to 2-D: exact PCA (an SVD), or t-SNE if scikit-learn is installed.

    Shapes: (N, E) -> (N, 2).
    """
    points = points.detach().float().cpu()
    if method == "pca":
        centred = points - points.mean(0)
        _, _, vh = torch.linalg.svd(centred, full_matrices=False)  # rows of vh: the axes
        return (centred @ vh[:2].T).numpy()  # (N, E) @ (E, 2) -> (N, 2)
    if method == "tsne":
        try:
            from sklearn.manifold import TSNE
        except ImportError as err:
            raise ImportError("method='tsne' needs scikit-learn; use method='pca'.") from err
        perplexity = min(30.0, (len(points) - 1) / 3)
        return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
            points.numpy()
        )
    raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}")


def plot_embedding_map(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    caption_image: Sequence[int] | torch.Tensor,
    images: Sequence[np.ndarray] | None = None,
    captions: Sequence[str] | None = None,
    method: str = "pca",
    max_labels: int = 12,
) -> Figure:
    """Images and captions in one 2-D picture of the shared space; grey lines join true pairs.

    Both sets are projected together, so the distance between the two clouds is real: CLIP
    models keep images and texts apart (the "modality gap", Liang et al., 2022).

    Args:
        image_embeds: (N_i, E) image embeddings.
        text_embeds: (N_c, E) caption embeddings.
        caption_image: (N_c,) the index of each caption's image.
        images: N_i pictures (HWC uint8), drawn as thumbnails at their points.
        captions: N_c texts; up to ``max_labels`` of them, in order, are written (shortened,
            9 pt) beside their points, each only where it overlaps no label already written.
        method: ``"pca"`` or ``"tsne"`` (see ``project_2d``).
        max_labels: at most this many caption labels.

    The figure is 9 by 8 inches.
    """
    points = project_2d(torch.cat([image_embeds, text_embeds]), method)
    image_xy, text_xy = points[: len(image_embeds)], points[len(image_embeds) :]
    fig, ax = plt.subplots(figsize=(9, 8))
    for text_point, owner in zip(text_xy, np.asarray(caption_image), strict=True):
        pair = np.stack([text_point, image_xy[owner]])  # (2, 2)
        ax.plot(pair[:, 0], pair[:, 1], color="0.75", lw=0.8, zorder=1)
    ax.scatter(*image_xy.T, marker="s", s=30, color="tab:blue", label="image", zorder=2)
    ax.scatter(*text_xy.T, marker="o", s=18, color="tab:orange", label="caption", zorder=3)
    for xy, image in zip(image_xy, images if images is not None else [], strict=False):
        thumb = OffsetImage(image, zoom=34 / max(image.shape[:2]))
        ax.add_artist(AnnotationBbox(thumb, xy, frameon=False, zorder=2))
    ax.set(xticks=[], yticks=[], title=f"images and captions in one space ({method.upper()})")
    ax.legend(loc="best")
    fig.tight_layout()  # before the labels: their overlaps are measured where they will stay
    _label_without_overlap(ax, text_xy, captions or [], max_labels)
    return fig


def _label_without_overlap(ax: Any, points: np.ndarray, texts: Sequence[str], limit: int) -> None:
    """Write texts beside their points, in order, skipping any that would overlap one already
    written or leave the axes."""
    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)  # a label must stay inside the axes
    placed: list[Any] = []
    for xy, text in zip(points, texts, strict=False):
        if len(placed) == limit:
            break
        label = ax.annotate(
            textwrap.shorten(text, 34),
            xy,
            xytext=(4, 4),
            textcoords="offset points",
            fontsize=9,
            color="black",
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
            zorder=4,
        )
        extent = label.get_window_extent(renderer).padded(2)  # display pixels
        inside = frame.x0 <= extent.x0 and extent.x1 <= frame.x1 and extent.y1 <= frame.y1
        if not inside or any(extent.overlaps(other) for other in placed):
            label.remove()
        else:
            placed.append(extent)


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write a PNG and close the figure (long runs must not accumulate open figures)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path
