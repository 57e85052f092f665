"""A pre-resized image cache: each training picture decoded and resized once, not every epoch.

Decoding a JPEG and resizing it costs more than a small model's step, and a training run does
it once per picture per epoch. Here each picture is decoded once, resized to the encoder's
input resolution by the eval transform's own ``transforms.resize_and_crop`` (so a picture
seen in training without augmentation is the very picture evaluation scores) and stored as
uint8 in one memory-mapped ``.npy`` file under the data folder. ``CaptionDataset`` then reads
a row per item, in its DataLoader workers, and runs the training transform's steps after the
resize (``transforms.after_eval_view``): the same random crop and colour jitter, seeded the
same way, as a picture decoded from its file. Measured in ``benchmarks/train_throughput.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from simpleclip.cache import digest, file_stamp
from simpleclip.checkpoint import atomic_file
from simpleclip.data.images import load_rgb
from simpleclip.data.transforms import ImagePreprocessing, resize_and_crop
from simpleclip.progress import progress_bar

# Bump when the resize changes, so caches of the old pixels are rebuilt, not reused.
RESIZE_VERSION = 2


def build_image_cache(
    images_dir: str | Path,
    image_names: Sequence[str],
    pre: ImagePreprocessing,
    cache_dir: str | Path,
    progress: bool = True,
) -> np.ndarray:
    """Decode and resize every image once; return a read-only (N, S, S, 3) uint8 memmap.

    ``progress``: a progress bar while decoding (a first build of Flickr8k takes minutes).

    The file name holds a digest of the image files (names, sizes, modification times) and of
    the preprocessing (and of ``RESIZE_VERSION``), so a changed picture, another encoder or a
    new resize gets a new cache.
    """
    images_dir = Path(images_dir)
    key = (RESIZE_VERSION, pre.input_size, pre.crop_pct, pre.interpolation)
    stamps = [f"{name}:{file_stamp(images_dir / name)}" for name in image_names]
    path = Path(cache_dir) / f"images-{pre.input_size}px-{digest(repr(key), *stamps)[:20]}.npy"
    if not path.is_file():
        size = pre.input_size
        with atomic_file(path) as tmp:  # a reader never sees a half-written cache
            shape = (len(image_names), size, size, 3)
            array = np.lib.format.open_memmap(tmp, "w+", np.uint8, shape)
            names = progress_bar(
                image_names, desc="caching images", leave=False, disable=not progress
            )
            for row, name in enumerate(names):
                array[row] = resize_and_crop(np.asarray(load_rgb(images_dir / name)), pre)
            array.flush()
            del array
    return np.load(path, mmap_mode="r")
