"""Image preprocessing that pretrained CLIP expects (OpenAI's ``clip._transform``).

Resize the shorter side to 224 with bicubic interpolation, centre-crop 224x224, scale to
[0, 1] and normalise with the mean and standard deviation of CLIP's training images. The same
numbers are in ``preprocessor_config.json`` of the ``openai/clip-*`` hub repos. Images
prepared differently still embed, but worse. Taught in ``notebooks/09_clip_from_scratch.ipynb``.

There is no separate implementation here: CLIP's recipe is an ``ImagePreprocessing`` with
``crop_pct=1`` and bicubic interpolation, run by the one pipeline every other path uses
(``simpleclip.data.transforms.eval_tensor``). Parity needs bicubic exactly, and PIL's
antialiased bicubic with torchvision's size rules, which that pipeline gives pixel for pixel.
"""

from __future__ import annotations

import io
import urllib.request
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from PIL import Image

from simpleclip.data.images import Picture, load_rgb, to_rgb
from simpleclip.data.transforms import ImagePreprocessing, eval_tensor

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def clip_preprocessing(image_size: int = 224) -> ImagePreprocessing:
    """CLIP's recipe as an ``ImagePreprocessing``: for ``eval_tensor`` and datasets."""
    return ImagePreprocessing(
        input_size=image_size,
        mean=CLIP_MEAN,
        std=CLIP_STD,
        interpolation="bicubic",  # OpenAI's Resize(BICUBIC); another filter breaks parity
        crop_pct=1.0,  # no margin: the short side goes to image_size, then the centre square
    )


def image_transform(image_size: int = 224) -> Callable[[Picture], torch.Tensor]:
    """The picture -> normalised tensor function pretrained CLIP was trained with:
    ``data.transforms.eval_tensor`` with ``clip_preprocessing`` (transparent pixels become
    white first, as in every other path).

    Shapes:
        picture of any size -> (3, image_size, image_size)
    """
    return partial(eval_tensor, pre=clip_preprocessing(image_size))


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
