"""Projection heads: map image and text features into one shared embedding space.

The two encoders speak different languages (a 2048-d ResNet vector, a 768-d DistilBERT vector);
a dot product between an image and a caption only means something once both are projected to
the same ``embed_dim``. CLIP uses one linear map per tower (Radford et al. 2021, section 2.5,
figure 3: ``W_i``, ``W_t``); the classic Keras/PyTorch tutorials use a small MLP with a
residual connection and LayerNorm. When both encoders already output the same width, the
projection can be dropped altogether. Taught in ``notebooks/04_projection_heads.ipynb``.
"""

from __future__ import annotations

from typing import get_args

import torch
from torch import nn

from simpleclip.config import HeadKind

HEAD_KINDS = get_args(HeadKind)  # ("mlp", "linear", "none")


class ProjectionHead(nn.Module):
    """The tutorial's head: Linear -> GELU -> Linear -> Dropout, a residual, then LayerNorm.

    Args:
        in_dim: width of the encoder's features.
        embed_dim: width of the shared embedding space.
        dropout: dropout on the second linear layer's output.

    Shapes:
        (B, in_dim) -> (B, embed_dim)
    """

    def __init__(self, in_dim: int, embed_dim: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        self.projection = nn.Linear(in_dim, embed_dim)
        self.gelu = nn.GELU()
        self.fc = nn.Linear(embed_dim, embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.layer_norm = nn.LayerNorm(embed_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        projected = self.projection(features)  # (B, in_dim) -> (B, E)
        x = self.dropout(self.fc(self.gelu(projected)))
        return self.layer_norm(x + projected)  # the residual keeps the linear path easy to learn


def build_head(kind: str, in_dim: int, embed_dim: int = 256, dropout: float = 0.1) -> nn.Module:
    """One projection head by name.

    Args:
        kind: ``"mlp"`` (``ProjectionHead``), ``"linear"`` (CLIP's bias-free linear map) or
            ``"none"`` (identity: the features are the embeddings, ``embed_dim`` is ignored).
        in_dim: width of the encoder's features.
        embed_dim: width of the shared embedding space.
        dropout: dropout of the ``mlp`` head.

    Returns:
        A module mapping (B, in_dim) to (B, embed_dim), or to (B, in_dim) for ``"none"``.
    """
    if kind == "mlp":
        return ProjectionHead(in_dim, embed_dim, dropout)
    if kind == "linear":
        return nn.Linear(in_dim, embed_dim, bias=False)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown projection head {kind!r}; choose one of {HEAD_KINDS}")


def build_heads(
    kind: str, image_dim: int, text_dim: int, embed_dim: int = 256, dropout: float = 0.1
) -> tuple[nn.Module, nn.Module]:
    """The image and text heads of a CLIP model, checked to meet in one space.

    Args:
        kind: ``"mlp"``, ``"linear"`` or ``"none"`` (see ``build_head``); ``"none"`` needs
            ``image_dim == text_dim``.
        image_dim: width of the image encoder's features.
        text_dim: width of the text encoder's features.
        embed_dim: width of the shared space (ignored for ``"none"``).
        dropout: dropout of the ``mlp`` heads.

    Returns:
        ``(image_head, text_head)``.

    Raises:
        ValueError: ``kind="none"`` with encoders of different widths.

    Example:
        >>> image_head, text_head = build_heads("mlp", image_dim=2048, text_dim=768)
        >>> image_head(torch.randn(4, 2048)).shape == text_head(torch.randn(4, 768)).shape
        True
    """
    if kind == "none" and image_dim != text_dim:
        raise ValueError(
            f"projection 'none' compares features directly, but the image encoder outputs "
            f"{image_dim}-d and the text encoder {text_dim}-d vectors. Pick encoders of equal "
            "width (e.g. beit_base_patch16_224 with distilbert-base-uncased, both 768) or use "
            "a 'linear' or 'mlp' projection."
        )
    return (
        build_head(kind, image_dim, embed_dim, dropout),
        build_head(kind, text_dim, embed_dim, dropout),
    )
