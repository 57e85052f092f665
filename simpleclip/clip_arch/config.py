"""The sizes of OpenAI's CLIP, one dataclass per tower, and named presets.

The released models' sizes are listed in the hyperparameter tables at the end of the paper's
appendix (Radford et al., 2021, arXiv:2103.00020); the ``vit-b-32`` and ``rn50`` presets copy
them. ``tiny-vit`` and ``tiny-rn`` are for tests and the smoke run of
``notebooks/09_clip_from_scratch.ipynb``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace


@dataclass
class TextConfig:
    """The text transformer."""

    vocab_size: int = 49408  # 256 bytes + 256 bytes-at-word-end + 48,894 merges + 2 specials
    context_length: int = 77  # longest token sequence, start and end tokens included
    width: int = 512  # D, the transformer's hidden size
    layers: int = 12  # residual attention blocks
    heads: int = 8  # attention heads (width / heads = 64 in every released model)
    mlp_ratio: float = 4.0  # hidden size of each block's MLP, as a multiple of width
    activation: str = "quick_gelu"  # "quick_gelu" (OpenAI's) or "gelu"
    eot_token_id: int | None = None  # None: pool at argmax(ids) like OpenAI; else first such id


@dataclass
class VisionConfig:
    """The image tower: a ViT, or the modified ResNet when ``resnet_layers`` is set."""

    image_size: int = 224  # input resolution, square
    patch_size: int = 32  # ViT only: side of one patch in pixels
    width: int = 768  # ViT: hidden size D; ResNet: stem width (64 in RN50)
    layers: int = 12  # ViT only: residual attention blocks
    heads: int = 12  # attention heads (ResNet: of the attention pool, width * 32 / 64)
    mlp_ratio: float = 4.0  # ViT only: MLP hidden size as a multiple of width
    activation: str = "quick_gelu"  # ViT only: "quick_gelu" or "gelu"
    resnet_layers: tuple[int, int, int, int] | None = None  # bottlenecks per stage; RN50: 3,4,6,3


@dataclass
class CLIPArchConfig:
    """The whole model: two towers and the shared embedding space."""

    embed_dim: int = 512  # E, the shared image-text embedding size
    text: TextConfig = field(default_factory=TextConfig)
    vision: VisionConfig = field(default_factory=VisionConfig)
    logit_scale_init: float = math.log(1 / 0.07)  # log(1/temperature), paper section 2.5


PRESETS: dict[str, CLIPArchConfig] = {
    "vit-b-32": CLIPArchConfig(),
    "rn50": CLIPArchConfig(
        embed_dim=1024,
        vision=VisionConfig(width=64, heads=32, resnet_layers=(3, 4, 6, 3)),
    ),
    "tiny-vit": CLIPArchConfig(
        embed_dim=16,
        text=TextConfig(vocab_size=600, width=32, layers=2, heads=4),
        vision=VisionConfig(image_size=32, patch_size=8, width=32, layers=2, heads=4),
    ),
    "tiny-rn": CLIPArchConfig(
        embed_dim=16,
        text=TextConfig(vocab_size=600, width=32, layers=2, heads=4),
        vision=VisionConfig(image_size=64, width=8, heads=4, resnet_layers=(1, 1, 1, 1)),
    ),
}


def get_config(name: str) -> CLIPArchConfig:
    """Return a fresh copy of a named preset (``list(PRESETS)`` lists them).

    Args:
        name: one of ``PRESETS``.

    Returns:
        A copy, so changing it leaves the preset alone.
    """
    if name not in PRESETS:
        raise KeyError(f"unknown CLIP preset {name!r}; choose from {sorted(PRESETS)}")
    preset = PRESETS[name]
    return replace(preset, text=replace(preset.text), vision=replace(preset.vision))
