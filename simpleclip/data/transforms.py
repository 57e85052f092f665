"""Image transforms: turn a decoded photo into the tensor an image encoder expects.

The encoder decides the input size, the normalisation and the interpolation
(``ImagePreprocessing``, filled from timm's data config by ``simpleclip.encoders``); the
dataset only applies them. Train transforms add mild augmentation; eval transforms are
deterministic. Taught in ``notebooks/01_flickr8k_dataset.ipynb``.

Two augmentations are left out on purpose, because they make true captions false:
a horizontal flip ("a dog on the left" becomes wrong) and a hue shift ("a red ball" turns blue).
"""

from __future__ import annotations

from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
}


@dataclass(frozen=True)
class ImagePreprocessing:
    """How an image encoder wants its pixels: the contract between an encoder and the data.

    Defaults are the usual ImageNet ones, used until an encoder says otherwise.
    """

    input_size: int = 224  # square side in pixels
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bicubic"  # one of nearest, bilinear, bicubic, area
    crop_pct: float = 0.875  # eval: resize the short side to input_size / crop_pct, then crop

    def __post_init__(self) -> None:
        if self.interpolation not in _INTERPOLATIONS:
            raise ValueError(
                f"Unknown interpolation {self.interpolation!r}; "
                f"use one of {sorted(_INTERPOLATIONS)}."
            )
        if not 0 < self.crop_pct <= 1:
            raise ValueError(f"crop_pct must be in (0, 1], got {self.crop_pct}.")


def build_transforms(
    pre: ImagePreprocessing,
    train: bool,
    crop_scale: tuple[float, float] = (0.8, 1.0),
    color_jitter: float = 0.2,
) -> A.Compose:
    """Albumentations pipeline from a uint8 HWC RGB array to a normalised CHW float tensor.

    Args:
        pre: the encoder's preprocessing.
        train: add augmentation (random resized crop, brightness/contrast/saturation jitter).
        crop_scale: area range of the random crop; keep it high so objects named in a caption
            stay in the picture.
        color_jitter: strength of brightness/contrast/saturation jitter; 0 turns it off.
            Hue is never jittered: colour words in captions must stay true.

    Returns:
        A callable: ``transform(image=array)["image"]`` is a (3, S, S) float tensor.
    """
    size = pre.input_size
    interpolation = _INTERPOLATIONS[pre.interpolation]
    if train:
        steps: list[A.BasicTransform] = [
            A.RandomResizedCrop(size=(size, size), scale=crop_scale, interpolation=interpolation)
        ]
        if color_jitter > 0:
            j = color_jitter
            steps.append(A.ColorJitter(brightness=j, contrast=j, saturation=j, hue=0.0, p=0.8))
    else:
        resize_to = max(size, round(size / pre.crop_pct))
        steps = [
            A.SmallestMaxSize(max_size=resize_to, interpolation=interpolation),
            A.CenterCrop(height=size, width=size),
        ]
    steps += [A.Normalize(mean=pre.mean, std=pre.std, max_pixel_value=255.0), ToTensorV2()]
    return A.Compose(steps)


def denormalize(images: torch.Tensor, pre: ImagePreprocessing) -> np.ndarray:
    """Undo ``Normalize`` for display: (B, 3, S, S) or (3, S, S) tensor -> uint8 HWC array(s)."""
    mean = torch.tensor(pre.mean, dtype=images.dtype).view(3, 1, 1)
    std = torch.tensor(pre.std, dtype=images.dtype).view(3, 1, 1)
    pixels = (images.detach().cpu() * std + mean).clamp(0, 1) * 255
    return pixels.round().to(torch.uint8).movedim(-3, -1).numpy()
