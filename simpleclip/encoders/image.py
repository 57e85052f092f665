"""Image encoders: a timm backbone that turns a batch of images into one feature vector each.

CLIP's image tower is any vision backbone with its classifier removed (Radford et al. 2021,
section 2.4: ResNets with attention pooling, and Vision Transformers). Here that backbone
comes from timm, created with ``num_classes=0`` so it returns pooled features instead of 1000
ImageNet scores; ``ImageEncoder.preprocessing`` tells the dataset how to size and normalise
pixels for it. Named presets run from a random 64 px CNN (tests, CPU smoke runs) to ViT and
BEiT. Taught in ``notebooks/02_image_encoders.ipynb``; the timm docs list every name:
https://huggingface.co/docs/timm.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, get_args

import timm
import torch
from torch import nn

from simpleclip.config import ImagePooling
from simpleclip.data.transforms import ImagePreprocessing
from simpleclip.encoders.errors import EncoderLoadError
from simpleclip.encoders.local_weights import mismatch_report, read_state_dict, weights_file
from simpleclip.encoders.partial import unfreeze_last_blocks
from simpleclip.encoders.pooling import AttentionPool2d

# How the random 64 px presets want their pixels (timm's pretrained_cfg keys).
TINY_PRETRAINED_CFG: dict[str, Any] = {
    "input_size": (3, 64, 64),
    "mean": (0.5, 0.5, 0.5),
    "std": (0.5, 0.5, 0.5),
    "interpolation": "bilinear",
    "crop_pct": 1.0,
    "crop_mode": "center",
}


@dataclass(frozen=True)
class ImagePreset:
    """A named image encoder: which timm model to build, and how."""

    timm_name: str | None  # passed to timm.create_model; None for TinyCNN, built in this file
    note: str  # one line shown when listing presets
    has_weights: bool = True  # False: random weights only, `pretrained` is ignored
    timm_kwargs: dict[str, Any] = field(default_factory=dict)  # architecture overrides


IMAGE_PRESETS: dict[str, ImagePreset] = {
    "tiny": ImagePreset(None, "random 4-block CNN, 64 px: tests and CPU smoke runs", False),
    "tiny_vit": ImagePreset(
        "vit_tiny_patch16_224",
        "random 2-layer ViT, 64 px, 8 px patches: tests and CPU smoke runs",
        has_weights=False,
        timm_kwargs={"img_size": 64, "patch_size": 8, "depth": 2, "embed_dim": 64, "num_heads": 2},
    ),
    "resnet18": ImagePreset("resnet18", "small ImageNet ResNet, 512-d"),
    "resnet50": ImagePreset("resnet50", "the classic tutorial's encoder, 2048-d"),
    "vit_tiny_patch16_224": ImagePreset("vit_tiny_patch16_224", "small ViT, 192-d"),
    "vit_base_patch16_224.augreg2_in21k_ft_in1k": ImagePreset(
        "vit_base_patch16_224.augreg2_in21k_ft_in1k", "ViT-B/16 (ImageNet-21k, then 1k), 768-d"
    ),
    "beit_base_patch16_224": ImagePreset("beit_base_patch16_224", "BEiT-B/16, 768-d"),
}


class TinyCNN(nn.Module):
    """Four stride-2 conv blocks and a spatial average: a 64 px encoder that trains on a CPU.

    Exposes the parts of timm's interface ``ImageEncoder`` uses: ``num_features``,
    ``forward_features`` and a ``pretrained_cfg`` that describes its preprocessing.

    Shapes:
        forward_features: (B, 3, S, S) -> (B, C, S/16, S/16); forward: -> (B, C)
    """

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 256)) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        in_channels = 3
        for width in widths:  # each block halves the resolution
            blocks += [
                nn.Conv2d(in_channels, width, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            in_channels = width
        self.features = nn.Sequential(*blocks)
        self.num_features = widths[-1]
        self.pretrained_cfg = dict(TINY_PRETRAINED_CFG)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_features(images).mean(dim=(2, 3))  # global average pooling


def create_backbone(
    model_name: str,
    pretrained: bool = True,
    weights: str | Path | None = None,
    num_classes: int = 0,
) -> nn.Module:
    """Build a preset or any timm model without its classifier, so it outputs features.

    Args:
        model_name: a key of ``IMAGE_PRESETS`` or any name ``timm.list_models()`` knows,
            optionally with a weight tag (``"resnet50.a1_in1k"``).
        pretrained: load ImageNet weights (downloads once into the Hugging Face cache).
        weights: with ``pretrained``, read them from this local file (timm key names,
            safetensors or PyTorch) instead of the hub.
        num_classes: 0 (CLIP's case) drops the ImageNet classifier; 1000 keeps it, to look at
            what the pretrained network recognises (notebook 02).

    Returns:
        A module with ``num_features`` whose forward gives pooled features.

    Raises:
        EncoderLoadError: unknown name, weights neither cached nor downloadable, or a
            weights file that is missing or saved from another architecture.
    """
    preset = IMAGE_PRESETS.get(model_name)
    if preset is not None and preset.timm_name is None:
        return TinyCNN()
    timm_name = preset.timm_name if preset else model_name
    kwargs: dict[str, Any] = dict(preset.timm_kwargs) if preset else {}
    if preset is not None and not preset.has_weights:
        pretrained = False
        kwargs["pretrained_cfg_overlay"] = dict(TINY_PRETRAINED_CFG)
    if not timm.is_model(timm_name):  # checked first so a typo fails fast, even offline
        raise EncoderLoadError(_unknown_name_message(model_name))
    if weights is not None and pretrained:
        return _backbone_from_file(model_name, timm_name, weights, kwargs, num_classes)
    try:
        return timm.create_model(
            timm_name, pretrained=pretrained, num_classes=num_classes, **kwargs
        )
    except (OSError, RuntimeError) as err:
        raise EncoderLoadError(_download_failed_message(model_name)) from err


def _backbone_from_file(
    model_name: str,
    timm_name: str,
    weights: str | Path,
    kwargs: dict[str, Any],
    num_classes: int = 0,
) -> nn.Module:
    """timm's own pretrained loading, pointed at a local file; a readable error if it misfits."""
    file = weights_file(weights, model_name)
    overlay = {**kwargs.pop("pretrained_cfg_overlay", {}), "file": str(file)}
    try:
        return timm.create_model(
            timm_name,
            pretrained=True,
            num_classes=num_classes,
            pretrained_cfg_overlay=overlay,
            **kwargs,
        )
    except (RuntimeError, KeyError, ValueError) as err:
        model = timm.create_model(timm_name, pretrained=False, **kwargs)  # with its classifier
        raise EncoderLoadError(
            f"{file} does not fit image encoder {model_name!r} (timm {timm_name!r}): "
            f"{mismatch_report(model, read_state_dict(file))}. Was it saved from this "
            "architecture, with timm's key names? Set image.name to the model it came from."
        ) from err


def _unknown_name_message(model_name: str) -> str:
    names = dict.fromkeys([*IMAGE_PRESETS, *timm.list_models()])  # ordered, no duplicates
    close = difflib.get_close_matches(model_name, list(names), n=3)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    family = model_name.split("_")[0].split(".")[0].rstrip("0123456789")  # "resnet5" -> "resnet"
    return (
        f"Unknown image encoder {model_name!r}: neither a simpleclip preset "
        f"({', '.join(IMAGE_PRESETS)}) nor a timm model.{hint} "
        f"List timm's names with timm.list_models('*{family}*')."
    )


def _download_failed_message(model_name: str) -> str:
    return (
        f"Could not load pretrained weights for image encoder {model_name!r}. Check the name "
        "and weight tag with timm.list_models(pretrained=True); if it is right, connect to the "
        "internet once so timm fills the Hugging Face cache (afterwards HF_HUB_OFFLINE=1 works "
        "offline). To run with no download, use pretrained=False or the 'tiny' preset."
    )


def preprocessing_from_timm(model: nn.Module) -> ImagePreprocessing:
    """Read input size, normalisation, interpolation and crop from timm's data config.

    Args:
        model: a timm model (or any module with a timm-style ``pretrained_cfg``).

    Returns:
        The ``ImagePreprocessing`` the dataset transforms should use for this model.
    """
    config = timm.data.resolve_model_data_config(model)
    _, height, width = config["input_size"]
    if height != width:
        raise ValueError(f"only square inputs are supported, got {height}x{width}")
    interpolation = config["interpolation"]
    if interpolation not in ("nearest", "bilinear", "bicubic", "area"):
        interpolation = "bicubic"  # e.g. "random", a train-time setting
    return ImagePreprocessing(
        input_size=height,
        mean=tuple(config["mean"]),
        std=tuple(config["std"]),
        interpolation=interpolation,
        crop_pct=config["crop_pct"],
    )


class ImageEncoder(nn.Module):
    """A backbone plus a pooling: images in, one feature vector per image out.

    Args:
        model_name: a key of ``IMAGE_PRESETS`` or any timm model name.
        pretrained: load pretrained weights (ignored by the random ``tiny`` presets).
        weights: a local weights file to load instead of downloading (see ``create_backbone``).
        trainable: False freezes the backbone: no gradients, and BatchNorm statistics and
            dropout stay in eval mode even when the parent model calls ``.train()``.
        unfreeze_last: with ``trainable=False``, still train the last N blocks (partial
            fine-tuning, ``simpleclip.encoders.partial``); the backbone stays in eval mode.
        mean, std: pixel normalisation to use instead of the model's own (weights ported from
            another framework may expect another one, e.g. 0.5 for TensorFlow models).
        pooling: ``"avg"``, the backbone's own global pooling (average for CNNs and BEiT, the
            class token for timm's ViT); or ``"attention"``, CLIP's attention pooling over a
            CNN feature map. The attention pooling is new, so it trains even when frozen.
        pool_dim: output size of the attention pooling (default: the backbone width).
        pool_heads: attention heads (default: one per 64 channels).

    Shapes:
        (B, 3, S, S) -> (B, out_dim), with S = ``preprocessing.input_size``

    Example:
        >>> encoder = ImageEncoder("tiny")
        >>> encoder(torch.randn(2, 3, 64, 64)).shape
        torch.Size([2, 256])
    """

    def __init__(
        self,
        model_name: str = "resnet50",
        pretrained: bool = True,
        trainable: bool = True,
        pooling: ImagePooling = "avg",
        pool_dim: int | None = None,
        pool_heads: int | None = None,
        weights: str | Path | None = None,
        unfreeze_last: int = 0,
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
    ) -> None:
        super().__init__()
        if pooling not in get_args(ImagePooling):
            raise ValueError(f"pooling must be one of {get_args(ImagePooling)}, got {pooling!r}")
        self.model_name = model_name
        self.trainable = trainable
        self.backbone = create_backbone(model_name, pretrained, weights)
        self.preprocessing = preprocessing_from_timm(self.backbone)
        if mean is not None or std is not None:
            pre = self.preprocessing
            mean, std = tuple(mean or pre.mean), tuple(std or pre.std)
            self.preprocessing = replace(pre, mean=mean, std=std)
        self.pool: AttentionPool2d | None = None
        if pooling == "attention":
            channels, grid = self._feature_map_size()
            heads = pool_heads or max(1, channels // 64)
            self.pool = AttentionPool2d(channels, grid, heads, pool_dim)
        self.out_dim: int = self.pool.out_dim if self.pool else self.backbone.num_features
        if unfreeze_last and trainable:
            raise ValueError(
                "unfreeze_last applies to a frozen encoder (trainable=False); a "
                "trainable one already trains every block."
            )
        if not trainable:
            self.backbone.requires_grad_(False)
            self.backbone.eval()
        if unfreeze_last:
            unfreeze_last_blocks(self.backbone, unfreeze_last)

    def _feature_map_size(self) -> tuple[int, int]:
        """Channels and side of the backbone's feature map, found by one dummy forward pass."""
        size = self.preprocessing.input_size
        was_training = self.backbone.training
        self.backbone.eval()  # keeps BatchNorm running statistics untouched
        with torch.no_grad():
            feature_map = self.backbone.forward_features(torch.zeros(1, 3, size, size))
        self.backbone.train(was_training)
        if feature_map.ndim != 4 or feature_map.shape[2] != feature_map.shape[3]:
            raise ValueError(
                f"attention pooling needs a square CNN feature map (B, C, H, W); "
                f"{self.model_name!r} gives {tuple(feature_map.shape)}. Use pooling='avg'."
            )
        return feature_map.shape[1], feature_map.shape[2]

    def train(self, mode: bool = True) -> ImageEncoder:
        """Switch train/eval mode, but a frozen backbone always stays in eval mode."""
        super().train(mode)
        if not self.trainable:
            self.backbone.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.pool is None:
            return self.backbone(images)  # (B, out_dim): timm pools, no classifier
        return self.pool(self.backbone.forward_features(images))  # (B, C, H, W) -> (B, out_dim)
