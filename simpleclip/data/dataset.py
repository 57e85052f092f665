"""The PyTorch dataset: (image tensor, caption token ids) pairs, and the batch collate.

Captions are tokenized once, when the dataset is built, not at every step. Two ways to walk
the data: ``pairs="all"`` visits all 5 (image, caption) pairs per epoch; ``pairs="one_per_image"``
visits each image once with one of its captions, chosen afresh each epoch (``set_epoch``), so a
batch never holds the same image twice. Random augmentations are seeded from (seed, epoch,
index): reproducible runs, exact resumes, and different draws in each DataLoader worker.
Each item also carries ``image_id`` and ``text_id`` (identical caption strings share one),
which the multi-positive loss uses.
Taught in ``notebooks/01_flickr8k_dataset.ipynb``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from simpleclip.config import Pairs
from simpleclip.data.captions import present_images, read_captions
from simpleclip.data.formats import Layout, find_layout, read_layout
from simpleclip.data.images import SKIP_HINT, find_unreadable_images, to_pixels
from simpleclip.data.splits import canonical_split, split_images
from simpleclip.data.transforms import ImagePreprocessing, after_eval_view, build_transforms

CAPTION_FILES = ("captions.txt", "Flickr8k.token.txt")  # Kaggle, then original
IMAGE_DIRS = ("Images", "Flicker8k_Dataset", "Flickr8k_Dataset")  # the original zip's typo
MAX_NAMED = 20  # bad pictures named in the skip warning; the count covers all of them


def find_captions_file(root: str | Path) -> Path:
    """The caption file of a dataset folder: Flickr8k's (either format), else Flickr30k's or
    COCO's (``formats.find_layout``)."""
    if Path(root).is_file():
        raise FileNotFoundError(  # what the CLI reports in one line, as for a missing folder
            f"data.root is a file, not a folder: {root}. Point data.root at the dataset's "
            f"folder (the one holding {CAPTION_FILES[0]} and Images/), e.g. its parent "
            f"{Path(root).parent}."
        )
    for name in CAPTION_FILES:
        if (Path(root) / name).is_file():
            return Path(root) / name
    if (layout := _other_layout(root)) is not None:
        return layout.captions_file
    raise FileNotFoundError(
        f"No caption file in {root}: expected {' or '.join(CAPTION_FILES)} (Flickr8k, or your "
        "own 'image,caption' CSV), results.csv or dataset_flickr30k.json (Flickr30k), "
        "annotations/captions_train2017.json or dataset_coco.json (COCO). Get the data with "
        f"`simpleclip download flickr8k --root {root}` or make the synthetic set with "
        f"`simpleclip make-synthetic --out {root}`."
    )


def find_images_dir(root: str | Path) -> Path:
    """The image folder of a dataset folder (``Images/``, or the original archive's name);
    for COCO the folder holding ``train2017/`` and ``val2017/``, as names carry that prefix."""
    if (layout := _other_layout(root)) is not None and layout.images_dir.is_dir():
        return layout.images_dir
    for name in IMAGE_DIRS:
        if (Path(root) / name).is_dir():
            return Path(root) / name
    raise FileNotFoundError(f"No image folder in {root}: expected one of {', '.join(IMAGE_DIRS)}.")


def load_split(root: str | Path, split: str | None, seed: int = 0) -> pd.DataFrame:
    """Captions of one split (``train``, ``dev``/``val``, ``test``; ``None`` for all).

    Splits join with ``+``: ``"train+dev"`` trains on both when the dev set is not needed.
    Images absent from the folder are dropped with a warning (see ``read_captions``).
    Flickr30k and COCO folders are recognised by their files and bring their own splits
    (``formats.read_layout``).
    """
    layout = _other_layout(root)
    if layout is not None:
        table, splits = read_layout(layout, seed=seed)
    else:
        table, splits = read_captions(find_captions_file(root), find_images_dir(root)), None
    if split is None:
        return table
    names = [canonical_split(name.strip()) for name in split.split("+")]
    if splits is None:
        splits = split_images(table["image"].unique(), root, seed=seed)
    chosen = {image for name in names for image in splits[name]}
    return table[table["image"].isin(chosen)].reset_index(drop=True)


def _other_layout(root: str | Path) -> Layout | None:
    """Flickr30k or COCO, asked only when no Flickr8k caption file is there: Flickr8k wins."""
    if any((Path(root) / name).is_file() for name in CAPTION_FILES):
        return None
    return find_layout(root)


def pad_token_ids(
    sequences: Sequence[Sequence[int] | torch.Tensor],
    pad_token_id: int,
    padding_side: str = "right",
) -> dict[str, torch.Tensor]:
    """Token ids of different lengths -> one padded batch, as ``tokenizer(texts, padding=True)``
    pads: ``pad_token_id`` on the tokenizer's ``padding_side``, an ``attention_mask`` of 1 on
    real tokens. The dataset tokenizes once and pads per batch; ``TextEncoder.tokenize`` pads
    here too, so a caption is the same ids and mask in training and at inference.

    Shapes: N sequences -> input_ids and attention_mask (N, L), L = the longest, int64.
    """
    if padding_side not in ("right", "left"):
        raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}.")
    longest = max(len(ids) for ids in sequences)
    input_ids = torch.full((len(sequences), longest), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for row, ids in enumerate(sequences):
        start = 0 if padding_side == "right" else longest - len(ids)
        input_ids[row, start : start + len(ids)] = torch.as_tensor(ids, dtype=torch.long)
        attention_mask[row, start : start + len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def tokenize_captions(
    tokenizer: Any, texts: Sequence[str], max_length: int
) -> dict[str, torch.Tensor]:
    """Captions -> padded ``input_ids`` and ``attention_mask`` tensors, cut at ``max_length``.

    The one call that turns sentences into a batch at inference (``TextEncoder.tokenize``, the
    CLIP text tower's): the tokenizer's ids, padded by ``pad_token_ids`` as ``CaptionDataset``
    pads its training batches, so a caption is the same ids and mask in both.

    Shapes: N texts -> input_ids (N, L), attention_mask (N, L), L = the longest caption's length
    """
    ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    padding_side = getattr(tokenizer, "padding_side", "right")
    return pad_token_ids(ids, tokenizer.pad_token_id, padding_side)


def collate_pairs(
    items: list[dict[str, Any]], pad_token_id: int, padding_side: str = "right"
) -> dict[str, torch.Tensor]:
    """Training pairs -> one batch: images stacked, captions padded to the longest in the batch.

    One batch layout for every source of pairs (a caption folder, tar shards), so the trainer
    and the loss never ask where a batch came from.

    Shapes: images (B, 3, S, S); input_ids and attention_mask (B, L); image_ids, text_ids (B,).
    """
    return {
        "images": torch.stack([item["image"] for item in items]),
        **pad_token_ids([item["input_ids"] for item in items], pad_token_id, padding_side),
        "image_ids": torch.tensor([item["image_id"] for item in items]),
        "text_ids": torch.tensor([item["text_id"] for item in items]),
    }


class CaptionDataset(Dataset):
    """Image-caption pairs from a caption table.

    Args:
        captions: rows with ``image`` and ``caption`` (e.g. from ``load_split``).
        images_dir: folder holding the image files; ``images_dir / image`` is the file, so an
            image may name a subfolder ("val2017/000000139.jpg").
        tokenizer: a Hugging Face tokenizer; its ``pad_token_id`` pads batches, on its
            ``padding_side`` (``pad_token_ids``).
        transform: albumentations pipeline (``build_transforms``); default: eval, ImageNet.
        pairs: ``"all"`` or ``"one_per_image"`` (see the module docstring).
        max_length: truncate captions to this many tokens (default: the tokenizer's limit).
        skip_bad_images: drop missing or undecodable images (one warning that counts and
            names them) instead of raising. Decodes every image once, so it costs a pass over
            the data.
        seed: seeds the caption choice of ``one_per_image``.
    """

    def __init__(
        self,
        captions: pd.DataFrame,
        images_dir: str | Path,
        tokenizer: Any,
        transform: Any = None,
        pairs: Pairs = "all",
        max_length: int | None = None,
        skip_bad_images: bool = False,
        seed: int = 0,
    ) -> None:
        if pairs not in ("all", "one_per_image"):
            raise ValueError(f"pairs must be 'all' or 'one_per_image', got {pairs!r}")
        self.images_dir = Path(images_dir)
        self.transform = transform or build_transforms(ImagePreprocessing(), train=False)
        self.pairs, self.seed = pairs, seed
        captions = self._drop_or_refuse_bad_images(captions, skip_bad_images)
        if captions.empty:
            raise ValueError("No captions left: the caption table is empty for these images.")
        self.image_names: list[str] = list(dict.fromkeys(captions["image"]))
        index_of = {name: i for i, name in enumerate(self.image_names)}
        self.captions: list[str] = captions["caption"].tolist()
        self.caption_image = captions["image"].map(index_of).to_numpy()  # (N_captions,)
        texts = pd.Series(self.captions).str.lower().str.strip()
        self.caption_text_id = pd.factorize(texts)[0]  # identical strings, one id
        self.token_ids = tokenizer(self.captions, truncation=True, max_length=max_length)[
            "input_ids"
        ]
        self.pad_token_id = tokenizer.pad_token_id
        self.padding_side = getattr(tokenizer, "padding_side", "right")  # a model may pad left
        order = np.argsort(self.caption_image, kind="stable")
        counts = np.bincount(self.caption_image, minlength=len(self.image_names))
        self.captions_of_image = np.split(order, np.cumsum(counts)[:-1])
        self.use_image_cache(None)
        self.set_epoch(0)

    def _drop_or_refuse_bad_images(self, captions: pd.DataFrame, skip: bool) -> pd.DataFrame:
        names = captions["image"].unique()
        present = present_images(self.images_dir, names)
        bad = [n for n in names if n not in present]
        if skip:
            readable = [n for n in names if n in present]
            unreadable = find_unreadable_images(self.images_dir / n for n in readable)
            bad += [p.relative_to(self.images_dir).as_posix() for p in unreadable]
            if bad:
                shown = ", ".join(bad[:MAX_NAMED]) + (" ..." if len(bad) > MAX_NAMED else "")
                warnings.warn(
                    f"Skipped {len(bad)} missing or unreadable images (missing, empty or "
                    f"truncated files) in {self.images_dir}: {shown}",
                    stacklevel=3,
                )
            return captions[~captions["image"].isin(set(bad))].reset_index(drop=True)
        if bad:
            raise FileNotFoundError(
                f"{len(bad)} images are missing from {self.images_dir}, e.g. {bad[:3]}. "
                "Pass images_dir to read_captions to drop them, or skip them: "
                f"{SKIP_HINT}."
            )
        return captions

    def set_epoch(self, epoch: int) -> None:
        """Choose each image's caption for this epoch (``one_per_image``); deterministic."""
        self.epoch = epoch
        rng = np.random.default_rng([self.seed, epoch])
        self._chosen = [int(rng.choice(c)) for c in self.captions_of_image]

    def __len__(self) -> int:
        return len(self.captions) if self.pairs == "all" else len(self.image_names)

    def pair(self, index: int) -> tuple[int, int]:
        """``(caption_index, image_index)`` of item ``index`` in the current epoch."""
        caption = index if self.pairs == "all" else self._chosen[index]
        return caption, int(self.caption_image[caption])

    def __getitem__(self, index: int) -> dict[str, Any]:
        caption, image_index = self.pair(index)
        return {
            "image": self.load_image(image_index, augment_seed=index),
            "input_ids": torch.tensor(self.token_ids[caption], dtype=torch.long),
            "image_id": image_index,
            "text_id": int(self.caption_text_id[caption]),
        }

    def use_image_cache(self, path: str | Path | None) -> None:
        """Serve pictures from a ``build_image_cache`` file instead of decoding their files.

        A cached row is already the eval view, so it goes through the transform's steps after
        the resize only (``after_eval_view``): with the same seed, epoch and item, the very
        tensor the decoded picture gives. The file is opened lazily in each process, so
        DataLoader workers share it instead of copying it.

        Raises:
            ValueError: the cache's pictures are not the size the transform makes.
        """
        if path is not None:
            self._after_cache, size = after_eval_view(self.transform)
            cached = np.load(path, mmap_mode="r").shape[1:]
            if cached != (size, size, 3):
                raise ValueError(
                    f"The image cache {path} holds {cached} pictures, but the transform makes "
                    f"{size} x {size}: build the cache with the same ImagePreprocessing."
                )
        self.image_cache_path = Path(path) if path is not None else None
        self._image_cache = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_image_cache": None}  # workers reopen the memmap themselves

    def load_image(self, image_index: int, augment_seed: int | None = None) -> torch.Tensor:
        """One picture through the transform: (3, S, S) float tensor.

        ``augment_seed`` (the item's index) seeds the random steps together with the dataset's
        seed and epoch, so a picture gets the same draw from its file or from the image cache.
        """
        if self.image_cache_path is not None:
            if self._image_cache is None:
                self._image_cache = np.load(self.image_cache_path, mmap_mode="r")
            pixels, transform = np.array(self._image_cache[image_index]), self._after_cache
        else:
            pixels = to_pixels(self.images_dir / self.image_names[image_index])
            transform = self.transform
        if augment_seed is not None and hasattr(transform, "set_random_seed"):
            state = np.random.SeedSequence([self.seed, self.epoch, augment_seed]).generate_state(1)
            transform.set_random_seed(int(state[0]))
        return transform(image=pixels)["image"]

    def collate(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Stack images and pad captions to the longest one in the batch (``collate_pairs``)."""
        return collate_pairs(items, self.pad_token_id, self.padding_side)

    def collate_text(self, caption_indices: Iterable[int]) -> dict[str, torch.Tensor]:
        """Padded ``input_ids`` and ``attention_mask`` of some captions, for text-only encoding."""
        return self._pad([torch.tensor(self.token_ids[i]) for i in caption_indices])

    def _pad(self, sequences: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        return pad_token_ids(sequences, self.pad_token_id, self.padding_side)

    def images(self) -> Dataset:
        """Each image once, with this dataset's transform: for encoding a split image by image."""
        return _ImagesOf(self)


class _ImagesOf(Dataset):
    def __init__(self, dataset: CaptionDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset.image_names)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.dataset.load_image(index)
