"""Train/dev/test splits of Flickr8k, always by image.

The five captions of one photo must stay in one split, or the test set leaks into training.
The official split files (6,000/1,000/1,000 images) are used when present; otherwise a
deterministic, seeded split by image. Flickr30k and COCO bring their own splits (Karpathy's
file, COCO's train2017/val2017) and use the seeded split here where they have none
(``formats.py``). Taught in ``notebooks/01_flickr8k_dataset.ipynb``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

SPLIT_FILES = {
    "train": "Flickr_8k.trainImages.txt",
    "dev": "Flickr_8k.devImages.txt",
    "test": "Flickr_8k.testImages.txt",
}
SPLIT_ALIASES = {"val": "dev", "valid": "dev", "validation": "dev"}


def canonical_split(name: str) -> str:
    """Map ``val``/``validation`` to Flickr8k's own name, ``dev``; reject unknown names."""
    split = SPLIT_ALIASES.get(name, name)
    if split not in SPLIT_FILES:
        raise ValueError(
            f"Unknown split {name!r}; use one of train, dev (or val), test, "
            "or join them with '+' (train+dev)."
        )
    return split


def read_split_file(path: str | Path) -> list[str]:
    """One image file name per line; blank lines ignored."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip()]


def split_images(
    images: Sequence[str],
    root: str | Path | None = None,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> dict[str, list[str]]:
    """Assign every image to train, dev or test.

    Args:
        images: the image names available (e.g. the unique images of a caption table).
        root: folder that may hold the official split files; they win when all three exist.
        fractions: train/dev/test shares for the seeded fallback split.
        seed: seed of the fallback split.

    Returns:
        ``{"train": [...], "dev": [...], "test": [...]}``, disjoint. With split files, each list
        keeps the file's order and only images in ``images``; images in no file are left out.
    """
    available = list(dict.fromkeys(images))
    files = {s: Path(root) / f for s, f in SPLIT_FILES.items()} if root is not None else {}
    if files and all(p.is_file() for p in files.values()):
        present = set(available)
        splits = {s: [i for i in read_split_file(p) if i in present] for s, p in files.items()}
        _check_disjoint(splits)
        return splits
    return _seeded_split(available, fractions, seed)


def _seeded_split(
    images: list[str], fractions: tuple[float, float, float], seed: int
) -> dict[str, list[str]]:
    if len(fractions) != 3 or min(fractions) < 0 or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be 3 non-negative numbers summing to 1, got {fractions}")
    order = np.random.default_rng(seed).permutation(len(images))
    shuffled = [images[i] for i in order]
    n_train = round(fractions[0] * len(images))
    n_dev = round(fractions[1] * len(images))
    return {
        "train": shuffled[:n_train],
        "dev": shuffled[n_train : n_train + n_dev],
        "test": shuffled[n_train + n_dev :],
    }


def _check_disjoint(splits: dict[str, list[str]]) -> None:
    names = list(splits)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            shared = set(splits[a]) & set(splits[b])
            if shared:
                raise ValueError(
                    f"Split files overlap: {len(shared)} images are in both {a} and {b}, "
                    f"e.g. {sorted(shared)[:3]}"
                )
