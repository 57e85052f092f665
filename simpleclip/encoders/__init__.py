"""Encoders: images and captions in, one feature vector each out (CLIP's two towers).

``ImageEncoder`` wraps a timm backbone (``image.py``, notebook 02), ``TextEncoder`` a Hugging
Face transformer (``text.py``, notebook 03); ``pooling.py`` holds the poolings both use.
Presets are listed in ``IMAGE_PRESETS`` and ``TEXT_PRESETS``.
"""

from __future__ import annotations

from simpleclip.encoders.errors import EncoderLoadError
from simpleclip.encoders.image import (
    IMAGE_PRESETS,
    ImageEncoder,
    ImagePreset,
    TinyCNN,
    create_backbone,
    preprocessing_from_timm,
)
from simpleclip.encoders.pooling import (
    TEXT_POOLINGS,
    AttentionPool2d,
    first_token_pool,
    mean_pool,
)
from simpleclip.encoders.text import (
    TEXT_PRESETS,
    TextEncoder,
    TextPreset,
    load_text_model,
    load_tokenizer,
    tiny_text_config,
)

__all__ = [
    "IMAGE_PRESETS",
    "TEXT_POOLINGS",
    "TEXT_PRESETS",
    "AttentionPool2d",
    "EncoderLoadError",
    "ImageEncoder",
    "ImagePreset",
    "TextEncoder",
    "TextPreset",
    "TinyCNN",
    "create_backbone",
    "first_token_pool",
    "load_text_model",
    "load_tokenizer",
    "mean_pool",
    "preprocessing_from_timm",
    "tiny_text_config",
]
