"""A short text summary of a dataset folder: what a user checks before training on it."""

from __future__ import annotations

import warnings
from pathlib import Path

from simpleclip.data.dataset import find_captions_file, find_images_dir, load_split


def describe_dataset(root: str | Path) -> str:
    """Images and captions per split, caption lengths, vocabulary size and two examples."""
    root = Path(root)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = load_split(root, None)
        splits = {s: load_split(root, s)["image"].nunique() for s in ("train", "dev", "test")}
    words = table["caption"].str.lower().str.split()
    lengths = words.str.len()
    vocabulary = {w for caption in words for w in caption}
    lines = [
        f"Dataset {root}  (captions: {find_captions_file(root).name}, "
        f"images: {find_images_dir(root).name}/)",
        f"  {table['image'].nunique()} images, {len(table)} captions "
        f"({len(table) / max(table['image'].nunique(), 1):.1f} per image)",
        "  split (images): " + ", ".join(f"{s} {n}" for s, n in splits.items()),
        f"  caption words: mean {lengths.mean():.1f}, min {lengths.min()}, max {lengths.max()}; "
        f"vocabulary {len(vocabulary)} words",
        "  examples:",
        *[f"    {r.image}: {r.caption}" for r in table.iloc[[0, len(table) // 2]].itertuples()],
    ]
    lines += [f"  note: {w.message}" for w in caught[:1]]
    return "\n".join(lines)
