"""Running a trained model: pictures and captions in, embeddings (or encoder features) out.

Evaluation, the feature cache, search and zero-shot classification all encode many items the
same way, and the details matter: eval mode (no dropout, frozen BatchNorm statistics) for the
duration only, no gradients, batches moved to the model's device, one precision rule (autocast
with ``device.select_precision(device)``: bf16 on CUDA where supported, fp32 on the CPU
and MPS), and results back as float32 on the CPU, and the random number generator left as it
was (a ``DataLoader`` draws a seed from it), so training's dropout masks do not depend on what
was encoded before. They all go through ``encode_batches``; pictures given as files or images
go through ``embed_pictures``, which reports the ones it cannot read.
Taught in ``notebooks/07_evaluation.ipynb``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from simpleclip.data import ImageLoadError, ImagePreprocessing, Picture, eval_tensor
from simpleclip.device import select_precision
from simpleclip.progress import progress_bar

Batch = torch.Tensor | Mapping[str, torch.Tensor]  # pixels, or input_ids + attention_mask


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Switch ``model`` to eval mode inside the block; restore every sub-module's mode after.

    Each sub-module gets its own flag back, not just the top one: a frozen backbone that was in
    eval mode inside a training model stays in eval mode.
    """
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (the CPU for a model without any)."""
    return next(model.parameters(), torch.empty(0)).device


@torch.no_grad()
def encode_batches(
    model: nn.Module,
    encode: Callable[..., torch.Tensor],
    batches: Iterable[Batch],
    desc: str = "encoding",
    progress: bool = False,
) -> torch.Tensor:
    """``encode`` every batch in eval mode, without gradients, at the one inference precision.

    Args:
        model: the model ``encode`` belongs to (its mode and device are used).
        encode: called with each batch on the model's device: a tensor as the one argument, a
            mapping as keyword arguments.
        batches: tensors or mappings of tensors.
        desc: the progress bar's label.
        progress: show a progress bar.

    Returns:
        The outputs concatenated along the first axis, float32 on the CPU; ``(0, 0)`` for none.
    """
    device = model_device(model)
    chunks = []
    rng = torch.random.fork_rng(devices=[])  # a DataLoader's seed draw leaves the CPU RNG alone
    with rng, eval_mode(model), select_precision(device).autocast(device):
        for batch in progress_bar(batches, desc=desc, disable=not progress, leave=False):
            if isinstance(batch, Mapping):
                out = encode(**{key: value.to(device) for key, value in batch.items()})
            else:
                out = encode(batch.to(device))
            chunks.append(out.float().cpu())
    return torch.cat(chunks) if chunks else torch.zeros(0, 0)


def embed_images(
    model: nn.Module,
    images: torch.Tensor | Dataset | Iterable[torch.Tensor],
    batch_size: int = 256,
    num_workers: int = 0,
    features: bool = False,
    progress: bool = False,
) -> torch.Tensor:
    """Unit image embeddings (``model.encode_image``), or encoder features before the head.

    Args:
        model: a ``CLIPModel``, or anything with ``encode_image``.
        images: preprocessed pictures: one (N, 3, S, S) tensor, a dataset of (3, S, S) tensors
            (read by a ``DataLoader``), or an iterable of (B, 3, S, S) batches.
        batch_size: pictures per forward pass (tensor and dataset inputs).
        num_workers: ``DataLoader`` processes for a dataset input.
        features: return ``image_encoder`` outputs, what the feature cache stores.
        progress: show a progress bar.

    Shapes: N pictures -> (N, E) embeddings, or (N, D_img) features; float32 on the CPU.
    """
    if isinstance(images, torch.Tensor):
        images = images.split(batch_size)
    elif isinstance(images, Dataset):
        images = DataLoader(images, batch_size=batch_size, num_workers=num_workers)
    encode = model.image_encoder if features else model.encode_image
    return encode_batches(
        model, encode, images, "image features" if features else "images", progress
    )


class _Pictures(Dataset):
    """Each picture's eval tensor, or, for one that cannot be read, ``None`` and the reason:
    a broken file must not stop the others, and the caller decides what to do with it."""

    def __init__(self, pictures: Sequence[Picture], pre: ImagePreprocessing) -> None:
        self.pictures, self.pre = pictures, pre

    def __len__(self) -> int:
        return len(self.pictures)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | None, str]:
        picture = self.pictures[index]
        try:
            return eval_tensor(picture, self.pre), ""
        except (ImageLoadError, Image.DecompressionBombError) as err:
            why = str(err.__cause__ or err)
            if isinstance(picture, str | Path):  # the caller knows the folder: name the file
                why = why.replace(str(picture), Path(picture).name)
            return None, f"cannot decode: {why}"


def embed_pictures(
    model: nn.Module,
    pictures: Sequence[Picture],
    batch_size: int = 64,
    num_workers: int = 0,
    progress: bool | Callable[[int, int], None] = False,
) -> tuple[torch.Tensor, list[str]]:
    """Unit image embeddings of pictures with the model's eval preprocessing (``eval_tensor``).

    A picture that cannot be read is reported, never dropped silently: search lists it as
    skipped, zero-shot classification refuses the whole list and names it.

    Args:
        model: a ``CLIPModel``.
        pictures: files, PIL images or HWC uint8 arrays (``data.images.to_pixels``).
        batch_size: pictures per forward pass.
        num_workers: ``DataLoader`` processes that decode the pictures.
        progress: a text progress bar (``True``), nothing (``False``), or a function called
            after each batch with (pictures read, pictures in all) instead, e.g. the app's bar.

    Returns:
        ``(image_embeds, reasons)``: the embeddings of the pictures that could be read, in
        order, and one reason per picture (``""`` for each one encoded).

    Shapes: N pictures -> (N_ok, E) float32 on the CPU, N_ok = number of empty reasons.
    """
    loader = DataLoader(
        _Pictures(pictures, model.image_encoder.preprocessing),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=list,
    )
    reasons: list[str] = []

    def readable() -> Iterator[torch.Tensor]:  # the batches of readable pictures; reasons aside
        bar = progress_bar(
            loader, desc="pictures", disable=progress is not True or not pictures, leave=False
        )
        for batch in bar:
            reasons.extend(reason for _, reason in batch)
            if callable(progress):
                progress(len(reasons), len(pictures))
            good = [pixels for pixels, _ in batch if pixels is not None]
            if good:
                yield torch.stack(good)

    return embed_images(model, readable()), reasons


def embed_texts(
    model: nn.Module,
    texts: Sequence[str] | Iterable[Mapping[str, torch.Tensor]],
    batch_size: int = 256,
    features: bool = False,
    progress: bool = False,
) -> torch.Tensor:
    """Unit caption embeddings (``model.encode_text``), or encoder features before the head.

    Args:
        model: a ``CLIPModel``, or anything with ``encode_text(input_ids, attention_mask)``.
        texts: sentences (or one), tokenized with ``model.tokenize`` exactly as in training; or
            batches already tokenized (``input_ids``, ``attention_mask``; see
            ``caption_batches``).
        batch_size: sentences per forward pass (sentence input).
        features: return ``text_encoder`` outputs, what the feature cache stores.
        progress: show a progress bar.

    Shapes: N texts -> (N, E) embeddings, or (N, D_txt) features; float32 on the CPU.
    """
    if isinstance(texts, str):  # one sentence, not a sequence of letters
        texts = [texts]
    if isinstance(texts, Sequence) and all(isinstance(text, str) for text in texts):
        sentences = list(texts)
        texts = (
            model.tokenize(sentences[start : start + batch_size])
            for start in range(0, len(sentences), batch_size)
        )
    encode = model.text_encoder if features else model.encode_text
    return encode_batches(model, encode, texts, "text features" if features else "texts", progress)


def caption_batches(dataset: Any, batch_size: int = 256) -> DataLoader:
    """A ``CaptionDataset``'s captions as token batches, in order: the ids the model trained on.

    Works with any tokenizer the dataset was built with (a pretrained CLIP's BPE too).
    """
    captions = range(len(dataset.captions))
    return DataLoader(captions, batch_size=batch_size, collate_fn=dataset.collate_text)
