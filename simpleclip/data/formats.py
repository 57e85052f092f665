"""Flickr30k and COCO Captions, read into the Flickr8k caption table with their own splits.

Every reader here returns the table of ``captions.read_captions`` (``image``, ``caption_id``,
``caption``), and ``read_layout`` adds a split by image, so ``load_split`` and
``CaptionDataset`` need no second road. One rule for paths: an ``image`` is a '/'-separated
path relative to one images folder (``images_dir / image`` is the file), so COCO names carry
their folder: "val2017/000000139.jpg".

* Flickr30k, Kaggle ``results.csv``: ``image_name| comment_number| comment``, photos in
  ``flickr30k_images/`` or ``Images/``; seeded 80/10/10 split by image (``splits.split_images``).
* COCO Captions 2017: ``annotations/captions_{train,val}2017.json``, photos in ``train2017/`` and
  ``val2017/`` beside ``annotations/``. train2017 is the train split; val2017 (5,000 photos) is
  halved, seeded and by image, into dev and test, since COCO publishes no test captions.
* Karpathy's ``dataset_flickr30k.json`` / ``dataset_coco.json``: captions and split in one file
  (``restval`` counts as train); they win over the files above when present.

Taught in ``notebooks/01_flickr8k_dataset.ipynb``. Datasets: Young et al., TACL 2 (2014);
Chen et al., "Microsoft COCO Captions", arXiv:1504.00325; split: Karpathy & Fei-Fei, CVPR 2015.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from simpleclip.data.captions import COLUMNS, CaptionFormatError, drop_missing_images
from simpleclip.data.splits import split_images

KARPATHY_FILES = {"dataset_flickr30k.json": "flickr30k", "dataset_coco.json": "coco"}
KARPATHY_SPLITS = {"train": "train", "restval": "train", "val": "dev", "test": "test"}
FLICKR30K_CSV = "results.csv"
FLICKR30K_HEADER = ["image_name", "comment_number", "comment"]
FLICKR30K_IMAGE_DIRS = ("flickr30k_images", "Images")  # the Kaggle archive's name, then ours
COCO_FILES = {"train2017": "captions_train2017.json", "val2017": "captions_val2017.json"}
COCO_IMAGE_DIRS = ("train2017", "val2017", "train2014", "val2014")
HELD_OUT = "val2017"  # source tag of COCO images that are halved into dev and test
_FUSED = re.compile(r"\s*(\d+)\s+(\S.*)")  # "4   A dog runs ." : number and comment, no '|'


@dataclass(frozen=True)
class Layout:
    """Where a non-Flickr8k dataset keeps its captions and photos."""

    format: str  # "flickr30k" or "coco"
    captions_file: Path  # results.csv, a Karpathy JSON, or annotations/captions_*2017.json
    images_dir: Path  # every ``image`` in the table is relative to this folder


def find_layout(root: str | Path) -> Layout | None:
    """Recognise Flickr30k or COCO by file names (Karpathy files first); None if neither.

    ``dataset.load_split`` asks only when no Flickr8k caption file is present, so Flickr8k
    folders (and your own ``captions.txt``) are read exactly as before.
    """
    root = Path(root)
    for name, fmt in KARPATHY_FILES.items():
        if (root / name).is_file():
            return Layout(fmt, root / name, _images_dir(root, fmt))
    if (root / FLICKR30K_CSV).is_file():
        return Layout("flickr30k", root / FLICKR30K_CSV, _images_dir(root, "flickr30k"))
    for name in COCO_FILES.values():
        if (root / "annotations" / name).is_file():
            return Layout("coco", root / "annotations" / name, root)
    return None


def _images_dir(root: Path, fmt: str) -> Path:
    if fmt == "coco":
        return root  # names carry their folder, "train2014/..." or "train2017/..."
    found = [root / d for d in FLICKR30K_IMAGE_DIRS if (root / d).is_dir()]
    return found[0] if found else root / FLICKR30K_IMAGE_DIRS[0]  # reading says it is missing


def read_layout(layout: Layout, seed: int = 0) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """The caption table (photos without a file dropped, one warning) and its split by image.

    Returns:
        The table, as ``read_captions`` returns it, and ``{"train", "dev", "test"}`` -> images.
    """
    _check_images_dir(layout)
    source: dict[str, str] | None
    if layout.captions_file.name in KARPATHY_FILES:
        table, source = read_karpathy(layout.captions_file)
        if layout.format == "coco":
            table, source = _karpathy_on_coco_2017(table, source, layout.images_dir)
    elif layout.format == "flickr30k":
        table, source = read_flickr30k_csv(layout.captions_file), None
    else:
        table, source = read_coco(layout.captions_file.parent)
    table = drop_missing_images(table, layout.images_dir, layout.captions_file, stacklevel=4)
    return table, _split(list(dict.fromkeys(table["image"])), source, seed)


def _check_images_dir(layout: Layout) -> None:
    coco = layout.format == "coco"
    wanted = COCO_IMAGE_DIRS if coco else FLICKR30K_IMAGE_DIRS
    root = layout.images_dir if coco else layout.images_dir.parent
    if not any((root / d).is_dir() for d in wanted):
        raise FileNotFoundError(f"No image folder in {root}: expected one of {', '.join(wanted)}.")


def _split(images: list[str], source: dict[str, str] | None, seed: int) -> dict[str, list[str]]:
    if source is None:  # no split in the data: the seeded split Flickr8k falls back to
        return split_images(images, seed=seed)
    splits = {s: [i for i in images if source[i] == s] for s in ("train", "dev", "test")}
    held_out = [i for i in images if source[i] == HELD_OUT]
    halves = split_images(held_out, fractions=(0.0, 0.5, 0.5), seed=seed)
    return {s: splits[s] + halves[s] for s in splits}


def read_flickr30k_csv(path: str | Path) -> pd.DataFrame:
    """Kaggle's Flickr30k ``results.csv``: ``image_name| comment_number| comment`` per line.

    Not quoted CSV: a plain '|' split. One documented repair: the real file has a row whose
    number and comment lost their '|' (``2199200615.jpg| 4   A dog runs ...``); a second field
    that is a number, spaces and text is split there. Anything else malformed raises.

    Raises:
        CaptionFormatError: a malformed line; the message names the file and the line number.
    """
    path = Path(path)
    rows = []
    with path.open(encoding="utf-8-sig") as f:
        header = f.readline()
        if [cell.strip() for cell in header.split("|")] != FLICKR30K_HEADER:
            raise CaptionFormatError(
                f"{path}, line 1: expected the header 'image_name| comment_number| comment', "
                f"got {header.rstrip()!r}"
            )
        for line_number, line in enumerate(f, start=2):
            if line.strip():
                rows.append(_flickr30k_row(line, path, line_number))
    return pd.DataFrame(rows, columns=COLUMNS).astype({"caption_id": "int64"})


def _flickr30k_row(line: str, path: Path, line_number: int) -> tuple[str, int, str]:
    cells = [cell.strip() for cell in line.split("|")]
    if len(cells) == 2 and (fused := _FUSED.fullmatch(cells[1])):
        cells = [cells[0], fused[1], fused[2]]  # the known fused row, repaired
    if len(cells) != 3 or not cells[0] or not cells[1].isdigit() or not cells[2]:
        raise CaptionFormatError(
            f"{path}, line {line_number}: expected '<image>| <number>| <comment>' "
            f"(3 fields separated by '|'), got {line.rstrip()!r}"
        )
    return cells[0], int(cells[1]), cells[2]


def read_karpathy(path: str | Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """Karpathy's split file: ``{"images": [{"filename", "split", "sentences": [{"raw"}]}]}``.

    COCO entries also have ``filepath`` ("train2014"), which becomes the name's folder. These
    files are one long line, so errors name the file and the entry (``images[12]``) instead.

    Returns:
        The caption table (``caption_id`` = the sentence's position) and image -> split, with
        ``restval`` as train and ``val`` as dev.
    """
    path = Path(path)
    rows, source = [], {}
    for n, entry in enumerate(_list(_load_json(path), "images", f"{path}")):
        where = f"{path}, images[{n}]"
        name = _field(entry, "filename", str, where)
        if entry.get("filepath"):
            name = f"{entry['filepath']}/{name}"
        split = entry.get("split") if isinstance(entry, dict) else None
        if split not in KARPATHY_SPLITS:
            raise CaptionFormatError(f"{where}: split must be one of {list(KARPATHY_SPLITS)}")
        for k, sentence in enumerate(_list(entry, "sentences", where)):
            rows.append((name, k, _field(sentence, "raw", str, f"{where}.sentences[{k}]")))
        source[name] = KARPATHY_SPLITS[split]
    return pd.DataFrame(rows, columns=COLUMNS).astype({"caption_id": "int64"}), source


def read_coco(annotations_dir: str | Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """COCO Captions 2017: ``captions_train2017.json`` then ``captions_val2017.json``.

    Each file is ``{"images": [{"id", "file_name"}], "annotations": [{"image_id", "caption"}]}``;
    names get the image folder in front ("train2017/000000391895.jpg"). Either file may be
    missing (e.g. only val2017 downloaded for evaluation).

    Returns:
        The caption table in file order (``caption_id`` counts each image's captions) and
        image -> ``"train"`` or ``"val2017"`` (halved into dev and test by ``read_layout``).
    """
    rows, source = [], {}
    for folder, name in COCO_FILES.items():
        path = Path(annotations_dir) / name
        if not path.is_file():
            continue
        data = _load_json(path)
        names = {}
        for n, image in enumerate(_list(data, "images", f"{path}")):
            file_name = _field(image, "file_name", str, f"{path}, images[{n}]")
            names[_field(image, "id", int, f"{path}, images[{n}]")] = f"{folder}/{file_name}"
        seen: dict[str, int] = defaultdict(int)
        for n, note in enumerate(_list(data, "annotations", f"{path}")):
            where = f"{path}, annotations[{n}]"
            image_id = _field(note, "image_id", int, where)
            if image_id not in names:
                raise CaptionFormatError(f"{where}: image_id {image_id} is not in 'images'")
            image = names[image_id]
            rows.append((image, seen[image], _field(note, "caption", str, where)))
            seen[image] += 1
        source.update(dict.fromkeys(names.values(), "train" if folder == "train2017" else HELD_OUT))
    return pd.DataFrame(rows, columns=COLUMNS).astype({"caption_id": "int64"}), source


def _karpathy_on_coco_2017(
    table: pd.DataFrame, source: dict[str, str], images_dir: Path
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Karpathy's file names 2014 files; a 2017 download holds the same photos under their
    12-digit id ("COCO_val2014_000000391895.jpg" is "train2017/000000391895.jpg" or
    "val2017/..."), so the Karpathy split works with either download."""
    if any((images_dir / d).is_dir() for d in ("train2014", "val2014")):
        return table, source
    in_2017 = {}
    for folder in ("train2017", "val2017"):
        if (images_dir / folder).is_dir():
            in_2017.update({f: f"{folder}/{f}" for f in os.listdir(images_dir / folder)})
    rename = {old: in_2017.get(old[-16:], old) for old in source}  # "000000391895.jpg"
    return table.assign(image=table["image"].map(rename)), {rename[k]: v for k, v in source.items()}


def _load_json(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise CaptionFormatError(f"{path}, line {err.lineno}: not valid JSON ({err.msg})") from err


def _list(data: Any, key: str, where: str) -> list[Any]:
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, list):
        raise CaptionFormatError(f"{where}: expected a list under {key!r}")
    return value


def _field(data: Any, key: str, kind: type, where: str) -> Any:
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, kind) or (kind is str and not value.strip()):
        raise CaptionFormatError(f"{where}: expected a non-empty {kind.__name__} {key!r}")
    return value.strip() if kind is str else value
