"""Image preprocessing that pretrained CLIP expects (OpenAI's ``clip._transform``).

Resize the shorter side to 224 with bicubic interpolation, centre-crop 224x224, scale to
[0, 1] and normalise with the mean and standard deviation of CLIP's training images. The same
numbers are in ``preprocessor_config.json`` of the ``openai/clip-*`` hub repos. Images
prepared differently still embed, but worse. Taught in ``notebooks/09_clip_from_scratch.ipynb``.

There is no separate implementation here: CLIP's recipe is an ``ImagePreprocessing`` with
``crop_pct=1`` and bicubic interpolation, run by the one pipeline every other path uses
(``simpleclip.data.transforms.resize_and_crop``). Parity needs bicubic exactly, and PIL's
antialiased bicubic with torchvision's size rules, which that pipeline gives pixel for pixel.
"""

from __future__ import annotations

import io
import urllib.request
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from simpleclip.data.images import load_rgb, to_rgb
from simpleclip.data.transforms import ImagePreprocessing, build_transforms

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def clip_preprocessing(image_size: int = 224) -> ImagePreprocessing:
    """CLIP's recipe as an ``ImagePreprocessing``: for ``build_transforms`` and datasets."""
    return ImagePreprocessing(
        input_size=image_size,
        mean=CLIP_MEAN,
        std=CLIP_STD,
        interpolation="bicubic",  # OpenAI's Resize(BICUBIC); another filter breaks parity
        crop_pct=1.0,  # no margin: the short side goes to image_size, then the centre square
    )


def image_transform(image_size: int = 224) -> Callable[[Image.Image], torch.Tensor]:
    """The PIL image -> normalised tensor function pretrained CLIP was trained with.

    Transparent pixels become white first, as in every other path (``data.images.to_rgb``).

    Shapes:
        PIL image of any size -> (3, image_size, image_size)
    """
    return partial(_transform_pil, build_transforms(clip_preprocessing(image_size), train=False))


def _transform_pil(transform: Callable[..., dict], image: Image.Image) -> torch.Tensor:
    return transform(image=np.asarray(to_rgb(image)))["image"]


def load_image(source: str | Path, timeout: float = 10.0) -> Image.Image:
    """Open an image from a local path or an http(s) URL.

    Args:
        source: a file path or URL.
        timeout: seconds to wait for a download before giving up.
    """
    if str(source).startswith(("http://", "https://")):
        with urllib.request.urlopen(str(source), timeout=timeout) as response:
            return to_rgb(Image.open(io.BytesIO(response.read())))
    return load_rgb(source)  # decoded like every training and evaluation picture
