"""A pre-resized image cache and batched augmentation: the fast input pipeline.

Decoding a JPEG and resizing it costs more than a small model's step, and a training run does
it once per picture per epoch. Here each picture is decoded once, resized to the encoder's
input resolution by the eval transform's own ``transforms.resize_and_crop`` (so a picture
seen in training without augmentation is the very picture evaluation scores) and stored as
uint8 in one memory-mapped ``.npy`` file under the data folder. Training then reads rows of
that array and finishes the work on whole batches, on the GPU when there is one:
random resized crops (``torchvision.ops.roi_align``), brightness/contrast/saturation jitter
(never hue, never flips: captions name colours and sides) and normalisation.
Measured in ``benchmarks/train_throughput.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torchvision.ops import roi_align

from simpleclip.cache import digest, file_stamp
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
) -> np.ndarray:
    """Decode and resize every image once; return a read-only (N, S, S, 3) uint8 memmap.

    The file name holds a digest of the image files (names, sizes, modification times) and of
    the preprocessing (and of ``RESIZE_VERSION``), so a changed picture, another encoder or a
    new resize gets a new cache.
    """
    images_dir = Path(images_dir)
    key = (RESIZE_VERSION, pre.input_size, pre.crop_pct, pre.interpolation)
    stamps = [f"{name}:{file_stamp(images_dir / name)}" for name in image_names]
    path = Path(cache_dir) / f"images-{pre.input_size}px-{digest(repr(key), *stamps)[:20]}.npy"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npy")
        size = pre.input_size
        array = np.lib.format.open_memmap(tmp, "w+", np.uint8, (len(image_names), size, size, 3))
        for row, name in enumerate(progress_bar(image_names, desc="caching images", leave=False)):
            array[row] = resize_and_crop(np.asarray(load_rgb(images_dir / name)), pre)
        array.flush()
        del array
        tmp.replace(path)  # a reader never sees a half-written cache
    return np.load(path, mmap_mode="r")


class BatchAugment:
    """uint8 (B, S, S, 3) pictures -> normalised float (B, 3, S, S), augmented when training.

    Args:
        pre: the encoder's preprocessing (size, mean, std).
        train: apply random resized crops and colour jitter.
        crop_scale: area range of the random crops.
        color_jitter: strength of brightness/contrast/saturation jitter (0 turns it off).
    """

    def __init__(
        self,
        pre: ImagePreprocessing,
        train: bool,
        crop_scale: tuple[float, float] = (0.8, 1.0),
        color_jitter: float = 0.2,
    ) -> None:
        self.pre, self.train = pre, train
        self.crop_scale, self.color_jitter = crop_scale, color_jitter

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        images = pixels.permute(0, 3, 1, 2).float() / 255  # (B, 3, S, S) in [0, 1]
        if self.train and self.crop_scale != (1.0, 1.0):
            images = self._random_resized_crop(images)
        if self.train and self.color_jitter > 0:
            images = self._jitter(images)
        mean = torch.tensor(self.pre.mean, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(self.pre.std, device=images.device).view(1, 3, 1, 1)
        return (images - mean) / std

    def _random_resized_crop(self, images: torch.Tensor) -> torch.Tensor:
        """One random box per picture (area in crop_scale, aspect 3/4..4/3), resized back."""
        batch, _, size, _ = images.shape
        low, high = self.crop_scale
        area = torch.empty(batch).uniform_(low, high) * size * size
        aspect = torch.exp(torch.empty(batch).uniform_(np.log(3 / 4), np.log(4 / 3)))
        width = (area * aspect).sqrt().clamp(max=size)
        height = (area / aspect).sqrt().clamp(max=size)
        left = torch.rand(batch) * (size - width)
        top = torch.rand(batch) * (size - height)
        boxes = torch.stack([torch.arange(batch).float(), left, top, left + width, top + height], 1)
        return roi_align(images, boxes.to(images.device), output_size=size, aligned=True)

    def _jitter(self, images: torch.Tensor) -> torch.Tensor:
        def factors() -> torch.Tensor:  # one factor per picture in [1 - j, 1 + j]
            j = self.color_jitter
            return torch.empty(len(images), 1, 1, 1).uniform_(1 - j, 1 + j).to(images.device)

        images = images * factors()  # brightness
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        images = (images - mean) * factors() + mean  # contrast
        gray = images.mean(dim=1, keepdim=True)
        images = (images - gray) * factors() + gray  # saturation; hue is never touched
        return images.clamp(0, 1)
