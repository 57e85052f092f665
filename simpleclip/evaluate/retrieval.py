"""Retrieval evaluation: Recall@K in both directions, the standard way for Flickr8k.

``eval_split`` reads a split the way the model expects it (its own eval transform, tokenizer and
caption length). Each image of it is encoded once and each caption once. Then:

* text -> image: every caption ranks all images; a hit if its own image is in the top K.
* image -> text: every image ranks all captions; a hit if any of its 5 captions is in the top K.

Ties with a wrong answer count against the model (it ranks above the right one), so a
collapsed model that maps everything to one point scores 0, not 1. Similarities are computed in
chunks, so memory stays bounded for large splits. Taught in ``notebooks/07_evaluation.ipynb``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from simpleclip.data import CaptionDataset, build_transforms, find_images_dir, load_split
from simpleclip.inference import caption_batches, embed_images, embed_texts
from simpleclip.recall import KS, recall_cells, recall_key


@dataclass
class Embeddings:
    """Every image and every caption of a split, encoded once."""

    image_embeds: torch.Tensor  # (N_images, E), unit length
    text_embeds: torch.Tensor  # (N_captions, E), unit length
    caption_image: torch.Tensor  # (N_captions,) index of each caption's image


def eval_split(
    model: torch.nn.Module,
    root: str | Path,
    split: str | None = "test",
    skip_bad_images: bool = False,
    first_n_images: int | None = None,
) -> CaptionDataset:
    """A split as the model is scored on it: its own eval transform, tokenizer and caption length.

    Args:
        model: a ``CLIPModel`` (its ``preprocessing``, ``tokenizer`` and ``max_length``).
        root: the dataset folder.
        split: ``"train"``, ``"dev"`` (or ``"val"``), ``"test"``; ``"all"`` or None for every
            image.
        skip_bad_images: leave out missing or undecodable pictures instead of failing.
        first_n_images: keep only the split's first N pictures, with all their captions (a
            figure's worth, read exactly as the whole split would be); None keeps them all.
    """
    table = load_split(root, None if split in (None, "all") else split)
    if first_n_images is not None:
        first = table["image"].drop_duplicates().iloc[:first_n_images]
        table = table[table["image"].isin(first)].reset_index(drop=True)
    return CaptionDataset(
        table,
        find_images_dir(root),
        model.tokenizer,
        build_transforms(model.preprocessing, train=False),
        max_length=model.max_length,
        skip_bad_images=skip_bad_images,
    )


def compute_embeddings(
    model: torch.nn.Module,
    dataset: CaptionDataset,
    batch_size: int = 256,
    num_workers: int = 0,
    progress: bool = False,
) -> Embeddings:
    """Encode each image and each caption of a split once, with ``simpleclip.inference``'s
    rule (eval mode, no gradients, autocast on CUDA); float32 embeddings on the CPU."""
    images = embed_images(model, dataset.images(), batch_size, num_workers, progress=progress)
    texts = embed_texts(model, caption_batches(dataset, batch_size), progress=progress)
    return Embeddings(images, texts, torch.tensor(dataset.caption_image))


def retrieval_ranks(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    caption_image: torch.Tensor,
    chunk_size: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank (1 = best) of the right answer for every caption and every image.

    Shapes:
        image_embeds (N_i, E), text_embeds (N_c, E), caption_image (N_c,)
        -> text_to_image (N_c,), image_to_text (N_i,)
    """
    t2i = []
    for start in range(0, len(text_embeds), chunk_size):
        sims = text_embeds[start : start + chunk_size] @ image_embeds.T  # (C, N_i)
        own = sims.gather(1, caption_image[start : start + chunk_size, None])  # (C, 1)
        t2i.append((sims >= own).sum(1))  # ties count against the model
    i2t = []
    for start in range(0, len(image_embeds), chunk_size):
        sims = image_embeds[start : start + chunk_size] @ text_embeds.T  # (C, N_c)
        images = torch.arange(start, start + len(sims))
        positive = caption_image[None, :] == images[:, None]  # (C, N_c)
        best = sims.masked_fill(~positive, float("-inf")).amax(1, keepdim=True)  # (C, 1)
        negatives = sims.masked_fill(positive, float("-inf"))  # its own captions never count
        i2t.append((negatives >= best).sum(1) + 1)
    return torch.cat(t2i), torch.cat(i2t)


def recall_from_ranks(ranks: torch.Tensor, ks: tuple[int, ...] = KS) -> dict[str, float]:
    """Recall@K for each K, plus median and mean rank."""
    ranks = ranks.float()
    metrics = {recall_key(k): (ranks <= k).float().mean().item() for k in ks}
    metrics["median_rank"] = ranks.median().item()
    metrics["mean_rank"] = ranks.mean().item()
    return metrics


def retrieval_metrics(embeddings: Embeddings, chunk_size: int = 1024) -> dict:
    """The evaluation table: ``{"t2i": {...}, "i2t": {...}, "n_images": .., "n_captions": ..}``."""
    t2i, i2t = retrieval_ranks(
        embeddings.image_embeds, embeddings.text_embeds, embeddings.caption_image, chunk_size
    )
    return {
        "t2i": recall_from_ranks(t2i),
        "i2t": recall_from_ranks(i2t),
        "n_images": len(embeddings.image_embeds),
        "n_captions": len(embeddings.text_embeds),
    }


def evaluate(model: torch.nn.Module, dataset: CaptionDataset, batch_size: int = 256) -> dict:
    """Encode a split once and return its retrieval metrics."""
    return retrieval_metrics(compute_embeddings(model, dataset, batch_size))


def save_metrics(metrics: dict, path: str | Path) -> Path:
    """Write metrics as the JSON ``simpleclip eval`` writes (``metrics_<split>.json``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2) + "\n")
    return path


def format_recall_table(metrics: dict) -> str:
    """A small fixed-width table of the metrics, for the terminal."""
    header = f"{'direction':<16}" + "".join(f"{recall_key(k):>8}" for k in KS) + "  med r"
    rows = [header]
    for key, name in (("t2i", "text -> image"), ("i2t", "image -> text")):
        recalls = "".join(f"{cell:>8}" for cell in recall_cells(metrics[key]))
        rows.append(f"{name:<16}{recalls}  {metrics[key]['median_rank']:>5.0f}")
    rows.append(f"({metrics['n_images']} images, {metrics['n_captions']} captions; recall in %)")
    return "\n".join(rows)
