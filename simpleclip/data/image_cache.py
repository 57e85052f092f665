"""A pre-resized image cache and batched augmentation: the fast input pipeline.

Decoding a JPEG and resizing it costs more than a small model's step, and a training run does
it once per picture per epoch. Here each picture is decoded once, resized to the encoder's
input resolution (resize the short side, centre crop, exactly like the eval transform) and
stored as uint8 in one memory-mapped ``.npy`` file under the data folder. Training then reads
rows of that array and finishes the work on whole batches, on the GPU when there is one:
random resized crops (``torchvision.ops.roi_align``), brightness/contrast/saturation jitter
(never hue, never flips: captions name colours and sides) and normalisation.
Measured in ``benchmarks/train_throughput.py``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.ops import roi_align
from tqdm.auto import tqdm

from simpleclip.data.images import load_rgb
from simpleclip.data.transforms import ImagePreprocessing

_PIL_RESAMPLE = {
    "nearest": Image.NEAREST,
    "bilinear": Image.BILINEAR,
    "bicubic": Image.BICUBIC,
    "area": Image.BOX,
}


def build_image_cache(
    images_dir: str | Path,
    image_names: Sequence[str],
    pre: ImagePreprocessing,
    cache_dir: str | Path,
) -> np.ndarray:
    """Decode and resize every image once; return a read-only (N, S, S, 3) uint8 memmap.

    The file name holds a digest of the image files (names, sizes, modification times) and of
    the preprocessing, so a changed picture or another encoder gets a new cache.
    """
    images_dir = Path(images_dir)
    digest = hashlib.sha256(repr((pre.input_size, pre.crop_pct, pre.interpolation)).encode())
    for name in image_names:
        stat = (images_dir / name).stat()
        digest.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    path = Path(cache_dir) / f"images-{pre.input_size}px-{digest.hexdigest()[:20]}.npy"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npy")
        size = pre.input_size
        array = np.lib.format.open_memmap(tmp, "w+", np.uint8, (len(image_names), size, size, 3))
        for row, name in enumerate(tqdm(image_names, desc="caching images", leave=False)):
            array[row] = resize_and_crop(load_rgb(images_dir / name), pre)
        array.flush()
        del array
        tmp.replace(path)  # a reader never sees a half-written cache
    return np.load(path, mmap_mode="r")


def resize_and_crop(image: Image.Image, pre: ImagePreprocessing) -> np.ndarray:
    """The eval transform's geometry: short side to size / crop_pct, centre square crop."""
    short = max(pre.input_size, round(pre.input_size / pre.crop_pct))
    scale = short / min(image.size)
    width, height = max(short, round(image.width * scale)), max(short, round(image.height * scale))
    image = image.resize((width, height), _PIL_RESAMPLE[pre.interpolation])
    left, top = (width - pre.input_size) // 2, (height - pre.input_size) // 2
    box = (left, top, left + pre.input_size, top + pre.input_size)
    return np.asarray(image.crop(box))


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
