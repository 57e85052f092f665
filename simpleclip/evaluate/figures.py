"""The evaluation pictures of a trained model on a test split, written as PNG files.

Numbers say how often retrieval works; pictures say what it does: the similarity matrix of a few
test photos, a text->image grid, an image->text chart, and the model's worst text->image
failures (the caption, the pictures ranked above its own, and its own picture's rank). The
Flickr8k-slice benchmark draws them for the real model, and ``notebooks/07_evaluation.ipynb``
shows them; each function here draws one kind, with ``simpleclip.viz``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from simpleclip.data import CaptionDataset, denormalize
from simpleclip.evaluate.retrieval import Embeddings, retrieval_ranks
from simpleclip.model import CLIPModel
from simpleclip.viz import (
    plot_image_to_texts,
    plot_similarity_matrix,
    plot_text_to_images,
    save_figure,
)


def first_captions(dataset: CaptionDataset) -> list[int]:
    """Index of the first caption of every image: one sentence per picture."""
    owners = np.asarray(dataset.caption_image)
    return [int(np.flatnonzero(owners == i)[0]) for i in range(len(dataset.image_names))]


def picture(dataset: CaptionDataset, model: CLIPModel, index: int) -> np.ndarray:
    """Image ``index`` as the model saw it (resized, cropped), as HWC uint8."""
    return denormalize(dataset.load_image(index), model.preprocessing)


def draw_similarity_matrix(
    model: CLIPModel, dataset: CaptionDataset, embeddings: Embeddings, path: Path, n: int = 8
) -> Path:
    """The first ``n`` test pictures against one caption each; true pairs on the diagonal."""
    n = min(n, len(dataset.image_names))
    captions = first_captions(dataset)[:n]
    similarity = embeddings.text_embeds[captions] @ embeddings.image_embeds[:n].T  # (n, n)
    figure = plot_similarity_matrix(
        [picture(dataset, model, i) for i in range(n)],
        [dataset.captions[c] for c in captions],
        similarity,
        logit_scale=model.scale.log().item(),  # the loss's capped scale
    )
    return save_figure(figure, path, dpi=100)  # drawn for a 1,050-px column at 100 dpi


def draw_text_query(
    model: CLIPModel,
    dataset: CaptionDataset,
    embeddings: Embeddings,
    caption: int,
    path: Path,
    top_k: int = 8,
    title: str = "",
) -> Path:
    """One caption and its top-k pictures; a green frame marks the caption's own picture,
    shown in the last cell with its rank when it is not among the top k."""
    scores = embeddings.image_embeds @ embeddings.text_embeds[caption]  # (N_images,)
    order = scores.argsort(descending=True, stable=True).tolist()
    own = int(embeddings.caption_image[caption])
    best = order[: min(top_k, len(order))]
    if own not in best:
        best[-1] = own
    ranks = [order.index(i) + 1 for i in best]
    figure = plot_text_to_images(
        dataset.captions[caption],
        [picture(dataset, model, i) for i in best],
        scores[best].tolist(),
        labels=[dataset.image_names[i] for i in best],
        correct=[i == own for i in best],
        ncols=4,
        ranks=ranks,
    )
    if title:  # a line above the query
        figure.suptitle(f"{title}\n{figure.get_suptitle()}", fontsize=11)
    return save_figure(figure, path)


def draw_image_query(
    model: CLIPModel,
    dataset: CaptionDataset,
    embeddings: Embeddings,
    image: int,
    path: Path,
    top_k: int = 8,
) -> Path:
    """One picture and its top-k captions; green bars are its own captions."""
    scores = embeddings.text_embeds @ embeddings.image_embeds[image]  # (N_captions,)
    best = scores.topk(min(top_k, len(scores))).indices.tolist()
    owners = embeddings.caption_image
    figure = plot_image_to_texts(
        picture(dataset, model, image),
        [dataset.captions[c] for c in best],
        scores[best].tolist(),
        correct=[int(owners[c]) == image for c in best],
    )
    return save_figure(figure, path)


def worst_captions(embeddings: Embeddings, count: int = 3) -> list[tuple[int, int]]:
    """``(caption, rank of its picture)`` for the ``count`` captions ranked worst."""
    ranks, _ = retrieval_ranks(
        embeddings.image_embeds, embeddings.text_embeds, torch.as_tensor(embeddings.caption_image)
    )
    worst = ranks.argsort(descending=True, stable=True)[:count].tolist()
    return [(c, int(ranks[c])) for c in worst]


def draw_evaluation_figures(
    model: CLIPModel, dataset: CaptionDataset, embeddings: Embeddings, out_dir: str | Path
) -> list[Path]:
    """All the pictures above for one model and split; returns the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    args = (model, dataset, embeddings)
    paths = [
        draw_similarity_matrix(*args, out / "similarity_matrix.png"),
        draw_text_query(*args, first_captions(dataset)[0], out / "text_to_images.png"),
        draw_image_query(*args, 0, out / "image_to_texts.png"),
    ]
    for number, (caption, rank) in enumerate(worst_captions(embeddings), start=1):
        title = f"failure {number}: its own picture ranks {rank} of {len(dataset.image_names)}"
        paths.append(draw_text_query(*args, caption, out / f"failure_{number}.png", title=title))
    return paths
