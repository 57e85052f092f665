"""Partial fine-tuning: train only the last few blocks of a frozen pretrained encoder.

A pretrained encoder's early blocks compute generic features (edges, word pieces) that a small
dataset cannot improve, while its last blocks are the most task-specific. Unfreezing only those
adapts the encoder to the new task at a fraction of the cost and with less over-fitting than
full fine-tuning. The encoder stays in eval mode (BatchNorm statistics, dropout), as a frozen
one does: small CPU batches would only spoil the pretrained statistics.
Used by ``ImageEncoder`` and ``TextEncoder`` (``unfreeze_last``); measured in the Flickr8k-slice
benchmark (``benchmarks/flickr8k_slice.py``).
"""

from __future__ import annotations

import re

from timm.models import group_parameters
from torch import nn

# Transformer layers are numbered in the parameter names: BERT and MPNet "encoder.layer.3.",
# DistilBERT "transformer.layer.3.", CLIP-style "encoder.layers.3.".
LAYER_INDEX = re.compile(r"(?:^|\.)layers?\.(\d+)\.")


def unfreeze_last_blocks(backbone: nn.Module, count: int) -> list[str]:
    """Let the last ``count`` blocks of a timm model train again; returns their parameter names.

    Blocks come from timm's ``group_matcher`` (the same grouping timm uses for layer-wise
    learning-rate decay), so "last block" means the same thing for ResNets, EfficientNets and
    ViTs; the final head layers (e.g. ``conv_head``, the last norm) belong to the last block.
    """
    if not hasattr(backbone, "group_matcher"):
        raise ValueError(
            f"{type(backbone).__name__} does not describe its blocks (no timm group_matcher): "
            "partial fine-tuning needs a timm model. Use trainable=true or false instead."
        )
    groups = list(group_parameters(backbone, backbone.group_matcher(coarse=False)).values())
    return _unfreeze(backbone, groups, count, "blocks")


def unfreeze_last_layers(model: nn.Module, count: int) -> list[str]:
    """Let the last ``count`` transformer layers of a Hugging Face model train again.

    Embeddings and anything outside the numbered layers (e.g. BERT's unused pooler) stay frozen.
    """
    layers: dict[int, list[str]] = {}
    for name, _ in model.named_parameters():
        match = LAYER_INDEX.search(name)
        if match:
            layers.setdefault(int(match.group(1)), []).append(name)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no numbered layers to unfreeze")
    return _unfreeze(model, [layers[i] for i in sorted(layers)], count, "layers")


def _unfreeze(model: nn.Module, groups: list[list[str]], count: int, what: str) -> list[str]:
    if not 0 < count <= len(groups):
        raise ValueError(
            f"unfreeze_last={count}, but the model has {len(groups)} {what}: "
            f"choose 1 to {len(groups)} (0 keeps it frozen)."
        )
    names = {name for group in groups[-count:] for name in group}
    for name, param in model.named_parameters():
        if name in names:
            param.requires_grad_(True)
    return sorted(names)
