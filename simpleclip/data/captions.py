"""Read Flickr8k caption files into a tidy table: one row per (image, caption).

Two formats are found in the wild and both are read here:

* Kaggle ``captions.txt``: CSV with header ``image,caption``; captions may hold commas and
  quotes (CSV-quoted, with doubled quotes).
* The original ``Flickr8k.token.txt``: ``<image>#<n><TAB><caption>``; captions may hold ``#``.

Taught in ``notebooks/01_flickr8k_dataset.ipynb``. Dataset: Hodosh, Young & Hockenmaier,
"Framing Image Description as a Ranking Task", JAIR 47 (2013).
"""

from __future__ import annotations

import csv
import os
import warnings
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd

COLUMNS = ["image", "caption_id", "caption"]
_REPORTED: set[tuple[str, str, int]] = set()  # missing-image causes already warned about


class MissingImagesWarning(UserWarning):
    """Captions whose photo has no file were dropped: expected on a slice of a dataset (the
    course silences it and notebook 01 says it once), a sign of a broken download otherwise."""


class CaptionFormatError(ValueError):
    """A caption file line that is neither valid CSV nor valid token format."""


def read_captions(path: str | Path, images_dir: str | Path | None = None) -> pd.DataFrame:
    """Read a caption file in either format.

    Args:
        path: ``captions.txt`` (CSV) or ``Flickr8k.token.txt`` (tab-separated).
        images_dir: if given, rows whose image file is not in this folder are dropped, with one
            warning that counts them, so a partial download still works. The warning is given
            once per process for the same file, folder and count (one run reads every split).

    Returns:
        A DataFrame with columns ``image``, ``caption_id`` (0-4, the caption's number for its
        image), ``caption``, in file order. Whitespace is stripped.

    Raises:
        CaptionFormatError: a malformed line; the message names the file and the line number.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Caption file not found: {path}")
    with path.open(encoding="utf-8-sig", newline="") as f:
        first = f.readline()
        f.seek(0)
        rows = list(_read_csv(f, path) if _is_csv_header(first) else _read_token(f, path))
    table = pd.DataFrame(rows, columns=COLUMNS).astype({"caption_id": "int64"})
    if images_dir is not None:
        table = drop_missing_images(table, Path(images_dir), path)
    return table


def _is_csv_header(line: str) -> bool:
    return line.strip().replace(" ", "").lower() == "image,caption"


def _read_csv(f, path: Path) -> Iterator[tuple[str, int, str]]:
    """Kaggle format; the caption number is the running count of each image's captions."""
    reader = csv.reader(f)
    next(reader)  # header
    seen: dict[str, int] = defaultdict(int)
    for row in reader:
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) != 2 or not row[0].strip() or not row[1].strip():
            raise CaptionFormatError(
                f"{path}, line {reader.line_num}: expected 2 CSV fields 'image,caption' "
                f"(quote captions that contain commas), got {row!r}"
            )
        image = row[0].strip()
        yield image, seen[image], row[1].strip()
        seen[image] += 1


def _read_token(f, path: Path) -> Iterator[tuple[str, int, str]]:
    """Original format; the caption number is written after ``#`` in the key."""
    for line_number, line in enumerate(f, start=1):
        if not line.strip():
            continue
        key, tab, caption = line.partition("\t")
        image, hash_sign, number = key.strip().rpartition("#")
        if not (tab and hash_sign and image and number.isdigit() and caption.strip()):
            raise CaptionFormatError(
                f"{path}, line {line_number}: expected '<image>#<n><TAB><caption>' "
                f"or a CSV file with header 'image,caption', got {line.rstrip()!r}"
            )
        yield image, int(number), caption.strip()


def present_images(images_dir: str | Path, names: Iterable[str]) -> set[str]:
    """The names that have a file under ``images_dir``; one directory listing per folder.

    A name is a ``/``-separated path below ``images_dir`` (COCO's ``train2017/...jpg``).
    """
    by_folder: dict[str, list[str]] = defaultdict(list)
    for name in names:
        by_folder[name.rpartition("/")[0]].append(name)
    present = set()
    for folder, members in by_folder.items():
        where = Path(images_dir) / folder
        files = set(os.listdir(where)) if where.is_dir() else set()
        present.update(m for m in members if m.rpartition("/")[2] in files)
    return present


def drop_missing_images(
    table: pd.DataFrame, images_dir: Path, path: Path, stacklevel: int = 3
) -> pd.DataFrame:
    """Rows whose photo has a file; the rest dropped with one warning that counts them, so a
    partial download still works. A run reads the same caption file once per split: the
    warning is given once per (file, folder, count). ``stacklevel``: as ``warnings.warn``'s (3:
    the caller of ``read_captions``)."""
    if not images_dir.is_dir():
        raise FileNotFoundError(f"Images folder not found: {images_dir}")
    keep = table["image"].isin(present_images(images_dir, table["image"].unique()))
    missing = table.loc[~keep, "image"]
    cause = (str(path.resolve()), str(images_dir.resolve()), len(missing))
    if len(missing) and cause not in _REPORTED:
        _REPORTED.add(cause)
        warnings.warn(
            f"{len(missing)} captions of {missing.nunique()} images listed in {path.name} have "
            f"no file in {images_dir} and were dropped (a partial download?); said once per run.",
            MissingImagesWarning,
            stacklevel=stacklevel,
        )
    return table[keep].reset_index(drop=True)
