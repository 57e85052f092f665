"""Write a caption folder as webdataset tar shards in img2dataset's layout (``simpleclip shards``).

Any set ``load_split`` reads (Flickr8k in either caption format, Flickr30k, COCO, an
``image,caption`` CSV) becomes ``OUT/SPLIT/00000.tar, 00001.tar, ...``: one sample per picture,
``{key}.jpg`` (the file's own bytes, not re-encoded: the same pixels as the folder),
``{key}.txt`` (its first caption, as img2dataset writes one) and ``{key}.json`` (``captions``:
every caption; the picture's name and split), and beside each tar the ``NNNNN_stats.json``
img2dataset writes, which the reader counts pairs from. No ``.parquet`` (nothing reads it).
Shards are written by ``webdataset.TarWriter``, the writer img2dataset itself uses.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from simpleclip.data.dataset import find_images_dir, load_split
from simpleclip.data.shards import require_webdataset

KEY_DIGITS = 9  # img2dataset's keys are zero-padded numbers as well


def write_shards(
    root: str | Path, split: str, out: str | Path, per_shard: int = 1000, seed: int = 0
) -> list[Path]:
    """Write ``split`` of the caption folder ``root`` as shards in ``out/split/``.

    Args:
        root: a dataset folder ``load_split`` reads.
        split: ``train``, ``dev``, ``test``, joined with ``+``, or ``all``.
        out: the shards' parent folder; each split gets a folder of its own.
        per_shard: pictures per shard (img2dataset's ``--number_sample_per_shard``).
        seed: the split's seed, for sets without an official split (as ``load_split``).

    Returns:
        The tar files written, in order.

    Raises:
        FileExistsError: ``out/split`` already holds shards.
        ValueError: ``per_shard`` < 1, or the split has no pictures.
    """
    if per_shard < 1:
        raise ValueError(f"--per-shard must be 1 or more, got {per_shard}.")
    wds = require_webdataset()
    table = load_split(root, None if split == "all" else split, seed=seed)
    if table.empty:
        raise ValueError(f"The {split} split of {root} has no pictures with captions.")
    folder = Path(out) / split
    if any(folder.glob("*.tar")):
        raise FileExistsError(
            f"{folder} already holds shards: remove them or choose another --out, so old and "
            "new shards are never mixed."
        )
    folder.mkdir(parents=True, exist_ok=True)
    images = find_images_dir(root)
    groups = list(table.groupby("image", sort=False)["caption"])
    written = []
    for start in range(0, len(groups), per_shard):
        path = folder / f"{start // per_shard:05d}.tar"
        _write_shard(wds, path, groups[start : start + per_shard], images, split, start)
        written.append(path)
    return written


def _write_shard(
    wds, path: Path, groups: list[tuple[str, pd.Series]], images: Path, split: str, first: int
) -> None:
    """One tar and its ``_stats.json`` (the counts img2dataset writes, plus ``captions``)."""
    captions = 0
    with wds.TarWriter(str(path)) as tar:
        for number, (image, texts) in enumerate(groups, start=first):
            suffix = Path(image).suffix.lower().lstrip(".")
            texts = list(texts)
            captions += len(texts)
            tar.write(
                {
                    "__key__": f"{number:0{KEY_DIGITS}d}",
                    "jpg" if suffix == "jpeg" else suffix: (images / image).read_bytes(),
                    "txt": texts[0],
                    "json": {"image": image, "split": split, "captions": texts},
                }
            )
    stats = {"count": len(groups), "successes": len(groups), "captions": captions}
    path.with_name(f"{path.stem}_stats.json").write_text(json.dumps(stats, indent=2))
