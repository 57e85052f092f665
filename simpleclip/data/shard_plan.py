"""Which shards each rank and worker reads, and how long an epoch is: no rank ever waits.

Under DDP every rank must take the same number of steps, or the ranks that finish first wait
forever for the others at the next all-reduce. Tar shards make that easy to break: shards hold
different numbers of samples (img2dataset's failed downloads), and a reader (one DataLoader worker
of one rank) that gets no shard at all ends at once (webdataset issue #188). So the plan is fixed
before the first sample is read, from numbers every rank computes alike:

* an epoch is ``steps`` batches on every rank: the pairs of the epoch (``data.samples_per_epoch``,
  or the shards' own count from img2dataset's ``*_stats.json``) divided by ranks × batch size;
* without resampling, shard i of the epoch's seeded permutation goes to reader i mod (ranks ×
  workers), so every sample is read once per epoch when shards split evenly; a configuration with
  fewer shards than readers is refused, saying what to change;
* with ``data.resampled`` each reader draws shards with replacement, any number of them.

Pure Python and no webdataset import, so the arithmetic is tested on its own. The reader is
``simpleclip.data.shards``; the path from Flickr8k to a cluster is ``docs/scale.md``.
"""

from __future__ import annotations

import itertools
import json
import random
import tarfile
from collections.abc import Iterator
from pathlib import Path

from simpleclip.config import DataConfig

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")  # img2dataset writes jpg (or png, webp)
REMOTE_PREFIXES = ("http://", "https://", "pipe:", "s3://", "gs://", "hf://")
SCALE_HINT = "pip install 'simpleclip[scale]'"


def expand_shards(patterns: list[str]) -> list[str]:
    """``data.shards`` -> the shard list: each brace pattern expanded (``{00000..00009}``).

    Local files must all exist: a typo in a pattern would otherwise train on a fraction of the
    data, or on nothing. URLs and ``pipe:`` commands are left to webdataset to open.

    Raises:
        ValueError: no pattern given.
        FileNotFoundError: a local shard is missing; the message names the pattern.
    """
    if not patterns:
        raise ValueError(
            "data.format=webdataset needs data.shards: the tar files to read, e.g. --set "
            "'data.shards=shards/train/{00000..00009}.tar' (a brace range, or a list of paths "
            "or URLs). Write shards with `simpleclip shards` or with img2dataset."
        )
    from braceexpand import braceexpand  # webdataset's own dependency (the [scale] extra)

    urls = [url for pattern in patterns for url in braceexpand(pattern)]
    local = [url for url in urls if not url.startswith(REMOTE_PREFIXES)]
    missing = [url for url in local if not Path(url).is_file()]
    if missing:
        raise FileNotFoundError(
            f"data.shards={', '.join(patterns)}: {len(missing)} of {len(urls)} shards do not "
            f"exist, e.g. {missing[0]}. Check the folder and the brace range (it must match the "
            "file names, e.g. {00000..00003}.tar for four shards)."
        )
    return urls


def check_shards(data: DataConfig, ranks: int) -> list[str]:
    """``data.shards`` expanded, and refused now if a shard is missing or the split would hang
    (``train`` asks before it makes the run folder or the model)."""
    urls = expand_shards(data.shards)
    check_split(len(urls), ranks, max(1, data.num_workers), data.resampled)
    return urls


def count_pairs(url: str, all_captions: bool) -> int | None:
    """Pairs in one local shard: from ``NAME_stats.json`` beside it (img2dataset's
    ``successes``; ``captions`` as well when ``simpleclip shards`` wrote it), else by listing
    the tar's images. None for a URL (not opened just to count it)."""
    if url.startswith(REMOTE_PREFIXES):
        return None
    path = Path(url)
    stats = path.with_name(f"{path.stem}_stats.json")
    if stats.is_file():
        numbers = json.loads(stats.read_text())
        if all_captions and "captions" in numbers:
            return int(numbers["captions"])
        if "successes" in numbers:
            return int(numbers["successes"])
    with tarfile.open(path) as tar:  # headers only: tarfile seeks past the contents
        keys = {m.name.rpartition(".")[0] for m in tar if m.name.endswith(IMAGE_EXTENSIONS)}
    return len(keys)


def pairs_per_epoch(urls: list[str], samples_per_epoch: int, all_captions: bool) -> int:
    """The epoch's pairs over all ranks: ``data.samples_per_epoch``, or the shards' count.

    Raises:
        ValueError: shards that cannot be counted (URLs) and no ``data.samples_per_epoch``.
    """
    if samples_per_epoch > 0:
        return samples_per_epoch
    counts = [count_pairs(url, all_captions) for url in urls]
    if any(count is None for count in counts):
        raise ValueError(
            "Shards given as URLs cannot be counted without reading them: set "
            "data.samples_per_epoch (pairs per epoch over all ranks; img2dataset prints its "
            "number of successes, and writes it to each shard's *_stats.json)."
        )
    return sum(counts)  # type: ignore[arg-type]


def check_split(n_shards: int, ranks: int, workers: int, resampled: bool) -> None:
    """Refuse a split that would hang: a reader without a shard ends its stream at once.

    Args:
        n_shards: number of shards.
        ranks: processes training together (torchrun's world size).
        workers: DataLoader workers per rank (1 for ``data.num_workers=0``).
        resampled: readers draw shards with replacement, so every reader has data.

    Raises:
        ValueError: fewer shards than readers without resampling; says what to change.
    """
    readers = ranks * workers
    if resampled or n_shards >= readers:
        return
    fewer_workers = max(0, n_shards // ranks)
    raise ValueError(
        f"{n_shards} shards cannot feed {ranks} ranks × {workers} DataLoader workers = "
        f"{readers} readers without resampling: a reader with no shard ends at once and its "
        "rank waits forever for the others (webdataset issue #188). Write at least "
        f"{readers} shards (a smaller `simpleclip shards --per-shard` or img2dataset "
        f"--number_sample_per_shard), set data.num_workers={fewer_workers} or fewer, or set "
        "data.resampled=true (shards drawn with replacement)."
    )


def steps_per_epoch(pairs: int, ranks: int, batch_size: int) -> int:
    """Batches each rank takes per epoch: the same number on every rank.

    Raises:
        ValueError: fewer pairs than one batch on every rank.
    """
    steps = pairs // (ranks * batch_size)
    if steps == 0:
        raise ValueError(
            f"The shards hold {pairs} pairs, fewer than one batch of {batch_size} on each of "
            f"{ranks} ranks: lower train.batch_size or add data."
        )
    return steps


def shard_stream(
    urls: list[str], reader: int, readers: int, seed: int, epoch: int, resampled: bool
) -> Iterator[list[str]]:
    """One reader's shards for an epoch, pass after pass (the epoch ends at ``steps`` batches,
    not at the end of the shards, so a reader whose shards run short starts them again).

    Without resampling a pass is every ``readers``-th shard of a seeded permutation, from
    ``reader``; the permutation is the same on every rank, so the readers' shards are disjoint
    and together are all of them. With resampling a pass is ``len(urls)`` shards drawn with
    replacement from the reader's own seeded stream.
    """
    for turn in itertools.count():
        rng = random.Random(f"{seed}-{epoch}-{turn}" + (f"-{reader}" if resampled else ""))
        if resampled:
            yield [rng.choice(urls) for _ in urls]
        else:
            order = list(urls)
            rng.shuffle(order)
            yield order[reader::readers]
