"""Training pairs from webdataset tar shards: img2dataset's output, read as it is.

Past one disk and one machine, caption sets (CC3M, CC12M, LAION subsets) come as tar shards
fetched by img2dataset: one sample per picture, ``{key}.jpg``, ``{key}.txt`` (its caption) and
``{key}.json`` (its metadata), plus ``NNNNN_stats.json`` and ``.parquet`` files beside each
shard. The ``webdataset`` library reads the tars (local paths, URLs, ``pipe:`` commands);
``ShardDataset`` turns each sample into the pairs ``CaptionDataset`` gives (the same transform,
tokenizer and batch layout: ``collate_pairs``), so the model, loss and trainer are unchanged.

Shards are split by rank and DataLoader worker and every rank takes the same number of steps
(``shard_plan``); samples are shuffled through a buffer. A sample that cannot be decoded (or
has no picture or no caption) is skipped and counted, and the count is reported after the epoch.
``simpleclip shards`` writes any caption folder in this layout (``shard_writer``), with every
caption of a picture in its ``.json``. The whole path, up to several machines: ``docs/scale.md``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import multiprocessing
import random
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from simpleclip import collectives
from simpleclip.config import Pairs
from simpleclip.data import shard_plan
from simpleclip.data.dataset import collate_pairs
from simpleclip.data.images import ImageLoadError, to_pixels

NAMED_PER_WORKER = 3  # skipped samples named per reader and epoch; all of them are counted


def require_webdataset() -> Any:
    """Import ``webdataset``, or say in one line how to install it."""
    try:
        import webdataset
    except ImportError as err:
        raise RuntimeError(
            f"data.format=webdataset needs the optional package webdataset ({err.name} is "
            f"missing): {shard_plan.SCALE_HINT}"
        ) from err
    return webdataset


def stable_id(text: str) -> int:
    """A number for a key or a caption, the same in every process (``hash`` is salted per
    process): pairs with the same picture or caption are positives in the gathered loss."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=7).digest(), "big")


class ShardDataset(IterableDataset):
    """Image-caption pairs streamed from tar shards; an epoch is ``steps`` batches per rank.

    Args:
        shards: ``data.shards``: brace patterns, paths or URLs (``shard_plan.expand_shards``).
        tokenizer: the text encoder's tokenizer; captions are cut at ``max_length`` tokens.
        transform: the image pipeline (``build_transforms``), as for ``CaptionDataset``.
        batch_size: pairs per step on one rank; the epoch is a whole number of batches.
        pairs: ``"all"``: every caption of a sample's ``.json`` (``simpleclip shards`` writes
            them all) is a pair; ``"one_per_image"``: one of them per epoch, seeded.
        num_workers: DataLoader workers per rank (each reads its own shards).
        resampled: draw shards with replacement (any number of shards and readers).
        samples_per_epoch: pairs per epoch over all ranks; 0: the shards' own count.
        shuffle_buffer: pairs held (encoded) to shuffle the stream (0: shard order).
        seed: seeds the shard order, the buffer, the caption choice and the augmentation.

    Raises:
        ValueError: no shards, too few shards for the readers, an epoch shorter than a batch.
        FileNotFoundError: a local shard named by ``shards`` does not exist.
        RuntimeError: webdataset is not installed.
    """

    def __init__(
        self,
        shards: list[str],
        tokenizer: Any,
        transform: Any,
        batch_size: int,
        pairs: Pairs = "all",
        max_length: int | None = None,
        num_workers: int = 0,
        resampled: bool = False,
        samples_per_epoch: int = 0,
        shuffle_buffer: int = 1000,
        seed: int = 0,
    ) -> None:
        require_webdataset()  # fails now, with the install command, not in a worker
        self.urls = shard_plan.expand_shards(shards)
        self.ranks, self.rank = collectives.world_size(), collectives.rank()
        self.num_workers, self.resampled = num_workers, resampled
        shard_plan.check_split(len(self.urls), self.ranks, max(1, num_workers), resampled)
        self.pairs_in_shards = shard_plan.pairs_per_epoch(
            self.urls, samples_per_epoch, pairs == "all"
        )
        self.batch_size = batch_size
        self.steps = shard_plan.steps_per_epoch(self.pairs_in_shards, self.ranks, batch_size)
        self.tokenizer, self.transform, self.max_length = tokenizer, transform, max_length
        self.pad_token_id = tokenizer.pad_token_id
        self.padding_side = getattr(tokenizer, "padding_side", "right")
        self.pairs, self.shuffle_buffer, self.seed = pairs, shuffle_buffer, seed
        self._skipped = multiprocessing.Value("q", 0)  # shared with the DataLoader workers
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Another shard order, buffer, caption choice and augmentation for each epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        """Pairs per epoch over all ranks, as ``len(CaptionDataset)`` counts them."""
        return self.steps * self.batch_size * self.ranks

    @property
    def skipped(self) -> int:
        """Samples skipped so far (undecodable, no picture or no caption), by all readers."""
        return self._skipped.value

    def loader(self, pin_memory: bool = False) -> EpochLoader:
        """This rank's batches of the current epoch: exactly ``steps`` of them."""
        return EpochLoader(self, pin_memory)

    def collate(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """The batch layout of ``CaptionDataset.collate`` (``collate_pairs``)."""
        return collate_pairs(items, self.pad_token_id, self.padding_side)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        reader, readers = self.rank * workers + worker, self.ranks * workers
        stream = shard_plan.shard_stream(
            self.urls, reader, readers, self.seed, self.epoch, self.resampled
        )
        named = itertools.count()
        for pair in self._shuffled_pairs(stream, reader, named):
            try:
                yield self._decode(pair)
            except ImageLoadError as err:  # PIL's reason, not its advice about folders
                reason = f"undecodable picture ({type(err.__cause__ or err).__name__})"
                self._skip(f"{pair['__url__']} {pair['__key__']}: {reason}", named)

    def _shuffled_pairs(
        self, stream: Iterator[list[str]], reader: int, named: Iterator[int]
    ) -> Iterator[dict[str, Any]]:
        """The reader's pairs (a sample's bytes and one of its captions, not yet decoded), pass
        after pass over its shards, each pass shuffled through the buffer on its own: a pair
        is not read twice while its pass lasts, and a picture's captions are spread over
        batches. A pass without one readable sample stops the run (the next would be the same).
        """
        wds = require_webdataset()

        def skip_bad_shard(error: Exception) -> bool:  # webdataset's handler: go on
            self._skip(f"a shard could not be read: {error}", named)
            return True

        for turn, urls in enumerate(stream):
            tar = wds.tarfile_to_samples(handler=skip_bad_shard)([{"url": u} for u in urls])
            found = [False]
            pairs = self._pairs_of(tar, found, named)
            if self.shuffle_buffer > 1:  # seeded: webdataset's default seeds from the clock
                rng = random.Random(f"{self.seed}-{self.epoch}-{reader}-{turn}")
                buffer = self.shuffle_buffer
                pairs = wds.shuffle(buffer, initial=buffer, rng=rng)(pairs)
            yield from pairs
            if not found[0]:
                raise RuntimeError(
                    f"Reader {reader} found no readable sample in its shards ({len(urls)} of "
                    f"them, e.g. {urls[0] if urls else 'none'}): check that they are tar "
                    "files of img2dataset's layout ({key}.jpg, {key}.txt)."
                )

    def _pairs_of(
        self, samples: Iterator[dict[str, Any]], found: list[bool], named: Iterator[int]
    ) -> Iterator[dict[str, Any]]:
        """Each sample's pairs: all its captions, or one per epoch (``one_per_image``)."""
        for sample in samples:
            try:
                image = next(sample[e] for e in shard_plan.IMAGE_EXTENSIONS if e in sample)
                captions = _captions(sample)
            except (StopIteration, ValueError, UnicodeDecodeError) as err:
                reason = str(err) or f"no picture ({', '.join(shard_plan.IMAGE_EXTENSIONS)})"
                self._skip(f"{sample.get('__url__')} {sample.get('__key__')}: {reason}", named)
                continue
            found[0] = True
            image_id = stable_id(f"{sample['__url__']}/{sample['__key__']}")
            numbers = range(len(captions))
            if self.pairs == "one_per_image":
                rng = np.random.default_rng([self.seed, self.epoch, image_id])
                numbers = [int(rng.integers(len(captions)))]
            for number in numbers:
                yield {
                    "__url__": sample["__url__"],
                    "__key__": sample["__key__"],
                    "picture": image,
                    "caption": captions[number],
                    "image_id": image_id,
                    "number": number,
                }

    def _decode(self, pair: dict[str, Any]) -> dict[str, Any]:
        """One pair as ``CaptionDataset`` gives it: the transformed picture (augmentation seeded
        by seed, epoch, picture and caption) and the caption's token ids."""
        pixels = to_pixels(pair["picture"])
        if hasattr(self.transform, "set_random_seed"):
            entropy = [self.seed, self.epoch, pair["image_id"], pair["number"]]
            state = np.random.SeedSequence(entropy)
            self.transform.set_random_seed(int(state.generate_state(1)[0]))
        ids = self.tokenizer(pair["caption"], truncation=True, max_length=self.max_length)
        return {
            "image": self.transform(image=pixels)["image"],
            "input_ids": torch.tensor(ids["input_ids"], dtype=torch.long),
            "image_id": pair["image_id"],
            "text_id": stable_id(pair["caption"].lower().strip()),
        }

    def _skip(self, what: str, named: Iterator[int]) -> None:
        with self._skipped.get_lock():
            self._skipped.value += 1
        if next(named) < NAMED_PER_WORKER:
            warnings.warn(f"Skipped a sample: {what}", stacklevel=2)


def _captions(sample: dict[str, Any]) -> list[str]:
    """Every caption of a sample: the ``.json``'s ``captions`` (``simpleclip shards``), else
    the ``.txt`` (img2dataset's one caption)."""
    meta = json.loads(sample["json"]) if "json" in sample else {}
    captions = meta.get("captions") if isinstance(meta, dict) else None
    if not captions and "txt" in sample:
        captions = [sample["txt"].decode("utf-8")]
    captions = [c.strip() for c in captions or [] if isinstance(c, str) and c.strip()]
    if not captions:
        raise ValueError("no caption (.txt, or 'captions' in .json)")
    return captions


class EpochLoader:
    """One rank's epoch: a DataLoader over its readers, stopped after ``steps`` batches.

    The readers' streams go on past the end of their shards, so every rank has its ``steps``
    batches even when its shards hold fewer pairs (skipped samples, uneven shards) and no rank
    waits for another. The samples skipped during the epoch are counted and reported.
    """

    def __init__(self, dataset: ShardDataset, pin_memory: bool) -> None:
        self.dataset = dataset
        self.loader = DataLoader(
            dataset,
            batch_size=dataset.batch_size,
            num_workers=dataset.num_workers,
            collate_fn=dataset.collate,
            pin_memory=pin_memory,
            drop_last=True,
        )

    def __len__(self) -> int:
        return self.dataset.steps

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        before = self.dataset.skipped
        yield from itertools.islice(self.loader, self.dataset.steps)
        skipped = self.dataset.skipped - before
        if skipped:
            warnings.warn(
                f"Skipped {skipped} undecodable or incomplete samples of the shards in epoch "
                f"{self.dataset.epoch + 1} (rank {self.dataset.rank}); the epoch kept its "
                f"{self.dataset.steps} steps by reading further.",
                stacklevel=2,
            )
