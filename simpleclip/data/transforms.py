"""Image transforms: turn a decoded photo into the tensor an image encoder expects.

The encoder decides the input size, the normalisation and the interpolation
(``ImagePreprocessing``, filled from timm's data config by ``simpleclip.encoders``); the
dataset only applies them. Train transforms add mild augmentation; eval transforms are
deterministic. Taught in ``notebooks/01_flickr8k_dataset.ipynb``.

One resize serves every path: ``resize_and_crop`` (short side to ``input_size / crop_pct``,
then a centre square) makes the eval view, the image cache's pictures
(``simpleclip.data.image_cache``, augmented afterwards by the same steps as decoded ones) and
pretrained CLIP's input (``simpleclip.clip_arch``), so a model is trained and scored on the
same pixels. It resizes with PIL, as timm's eval transform and OpenAI's CLIP do: PIL widens
its filter when shrinking, so a 500x375 photo is antialiased on its way to 224 px instead of
aliased as OpenCV's cubic resize would.

Two augmentations are left out on purpose, because they make true captions false:
a horizontal flip ("a dog on the left" becomes wrong) and a hue shift ("a red ball" turns blue).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2
from PIL import Image

from simpleclip.data.images import Picture, to_pixels

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# PIL filters for the one resize; their support grows with the shrink factor (antialiasing).
_PIL_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "area": Image.Resampling.BOX,
}
# OpenCV flags for the training crop, which only enlarges (no antialiasing needed).
_CV2_FLAGS = {
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
    crop_pct: float = 0.875  # resize the short side to floor(input_size / crop_pct), then crop

    def __post_init__(self) -> None:
        for name in ("mean", "std"):  # tuples, so a preprocessing can key a cache
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.interpolation not in _PIL_FILTERS:
            raise ValueError(
                f"Unknown interpolation {self.interpolation!r}; use one of {sorted(_PIL_FILTERS)}."
            )
        if not 0 < self.crop_pct <= 1:
            raise ValueError(f"crop_pct must be in (0, 1], got {self.crop_pct}.")

    @property
    def resize_short_side(self) -> int:
        """The short side before the centre crop: ``floor(input_size / crop_pct)`` (timm's
        rule; ``crop_pct=1`` is CLIP's), never below ``input_size``."""
        return max(self.input_size, math.floor(self.input_size / self.crop_pct))


def resize_short_side(image: np.ndarray, short_side: int, interpolation: str) -> np.ndarray:
    """Scale a uint8 HWC picture so its shorter side is ``short_side``, keeping its aspect.

    The longer side is truncated, not rounded, as ``torchvision.transforms.Resize`` does: timm's
    and OpenAI CLIP's pretrained weights saw exactly these pixels (bicubic for CLIP).
    """
    height, width = image.shape[:2]
    if height <= width:  # PIL sizes are (width, height)
        size = (int(short_side * width / height), short_side)
    else:
        size = (short_side, int(short_side * height / width))
    if size == (width, height):
        return image
    return np.asarray(Image.fromarray(image).resize(size, _PIL_FILTERS[interpolation]))


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The central ``size`` x ``size`` square (offsets rounded like torchvision's)."""
    height, width = image.shape[:2]
    top, left = round((height - size) / 2), round((width - size) / 2)
    return image[top : top + size, left : left + size]


def resize_and_crop(image: np.ndarray | Image.Image, pre: ImagePreprocessing) -> np.ndarray:
    """The eval view's geometry, shared by every path: (H, W, 3) uint8 -> (S, S, 3) uint8.

    The short side goes to ``pre.resize_short_side``, then the centre square of side
    ``input_size`` is kept.
    """
    resized = resize_short_side(np.asarray(image), pre.resize_short_side, pre.interpolation)
    return np.ascontiguousarray(center_crop(resized, pre.input_size))


class ResizeAndCrop(A.ImageOnlyTransform):
    """``resize_and_crop`` as an albumentations step (always applied)."""

    class InitSchema(A.ImageOnlyTransform.InitSchema):
        input_size: int
        crop_pct: float
        interpolation: str

    def __init__(
        self, input_size: int, crop_pct: float, interpolation: str, p: float = 1.0
    ) -> None:
        super().__init__(p=p)
        self.input_size, self.crop_pct, self.interpolation = input_size, crop_pct, interpolation
        self.geometry = ImagePreprocessing(
            input_size=input_size, crop_pct=crop_pct, interpolation=interpolation
        )

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        return resize_and_crop(img, self.geometry)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("input_size", "crop_pct", "interpolation")


def build_transforms(
    pre: ImagePreprocessing,
    train: bool,
    crop_scale: tuple[float, float] = (0.8, 1.0),
    color_jitter: float = 0.2,
) -> A.Compose:
    """Albumentations pipeline from a uint8 HWC RGB array to a normalised CHW float tensor.

    Both pipelines start from the eval view (``ResizeAndCrop``); training then takes a random
    crop of that square and jitters its colours. The image cache stores the eval view, so a
    cached picture goes through the same steps minus the first (``after_eval_view``): decoded
    and cached training see the same pixels, and without augmentation both equal the eval view.

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
    steps: list[A.BasicTransform] = [ResizeAndCrop(size, pre.crop_pct, pre.interpolation)]
    if train and tuple(crop_scale) != (1.0, 1.0):  # the whole square: nothing to crop
        steps.append(
            A.RandomResizedCrop(
                size=(size, size), scale=crop_scale, interpolation=_CV2_FLAGS[pre.interpolation]
            )
        )
    if train and color_jitter > 0:
        j = color_jitter
        steps.append(A.ColorJitter(brightness=j, contrast=j, saturation=j, hue=0.0, p=0.8))
    steps += [A.Normalize(mean=pre.mean, std=pre.std, max_pixel_value=255.0), ToTensorV2()]
    return A.Compose(steps)


def after_eval_view(transform: A.Compose) -> tuple[A.Compose, int]:
    """The steps of a ``build_transforms`` pipeline that follow its eval-view resize, and the
    side of the eval view: what a picture of the image cache, already resized, still needs.

    The steps are the same objects, and ``ResizeAndCrop`` draws no random number, so seeding
    both pipelines alike gives the cached picture the crop and jitter of the decoded one.

    Raises:
        ValueError: ``transform`` does not start with ``ResizeAndCrop``.
    """
    first, *rest = transform.transforms
    if not isinstance(first, ResizeAndCrop):
        raise ValueError(
            "The image cache needs a transform from build_transforms (its first step, "
            f"ResizeAndCrop, makes the cached eval view); got {type(first).__name__} first."
        )
    return A.Compose(rest), first.input_size


def eval_tensor(picture: Picture, pre: ImagePreprocessing) -> torch.Tensor:
    """The encoder's input for one picture: the eval view, normalised. Search, zero-shot and
    pretrained CLIP call this, and evaluation's datasets run the same ``build_transforms``
    pipeline on ``to_pixels`` of their files, so a picture is one tensor everywhere.

    Args:
        picture: a file, a PIL image or uint8 pixels (``data.images.to_pixels``: transparent
            areas become white).
        pre: the encoder's preprocessing.

    Shapes: (H, W, 3) picture -> (3, S, S) float tensor.
    """
    return _eval_transform(pre)(image=to_pixels(picture))["image"]


@functools.lru_cache(maxsize=8)
def _eval_transform(pre: ImagePreprocessing) -> A.Compose:
    return build_transforms(pre, train=False)  # deterministic, so one per preprocessing


def denormalize(images: torch.Tensor, pre: ImagePreprocessing) -> np.ndarray:
    """Undo ``Normalize`` for display: (B, 3, S, S) or (3, S, S) tensor -> uint8 HWC array(s)."""
    mean = torch.tensor(pre.mean, dtype=images.dtype).view(3, 1, 1)
    std = torch.tensor(pre.std, dtype=images.dtype).view(3, 1, 1)
    pixels = (images.detach().cpu() * std + mean).clamp(0, 1) * 255
    return pixels.round().to(torch.uint8).movedim(-3, -1).numpy()
