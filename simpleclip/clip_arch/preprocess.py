"""Image preprocessing that pretrained CLIP expects (OpenAI's ``clip._transform``).

Resize the shorter side to 224 with bicubic interpolation, centre-crop 224x224, scale to
[0, 1] and normalise with the mean and standard deviation of CLIP's training images. The same
numbers are in ``preprocessor_config.json`` of the ``openai/clip-*`` hub repos. Images
prepared differently still embed, but worse. Taught in ``notebooks/09_clip_from_scratch.ipynb``.
"""

from __future__ import annotations

import io
import urllib.request
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image
from torchvision import transforms as T

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def image_transform(image_size: int = 224) -> Callable[[Image.Image], torch.Tensor]:
    """The PIL image -> normalised tensor function pretrained CLIP was trained with.

    Shapes:
        PIL image of any size -> (3, image_size, image_size)
    """
    return T.Compose(
        [
            T.Resize(image_size, interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(image_size),
            T.Lambda(lambda image: image.convert("RGB")),
            T.ToTensor(),  # (3, H, W) in [0, 1]
            T.Normalize(CLIP_MEAN, CLIP_STD),
        ]
    )


def load_image(source: str | Path, timeout: float = 10.0) -> Image.Image:
    """Open an image from a local path or an http(s) URL.

    Args:
        source: a file path or URL.
        timeout: seconds to wait for a download before giving up.
    """
    if str(source).startswith(("http://", "https://")):
        with urllib.request.urlopen(str(source), timeout=timeout) as response:
            return Image.open(io.BytesIO(response.read())).convert("RGB")
    return Image.open(source).convert("RGB")
