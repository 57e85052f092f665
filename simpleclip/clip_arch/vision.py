"""CLIP's Vision Transformer image tower.

Pixels -> non-overlapping patches embedded by one strided convolution -> a learned class token
in front -> learned positional embedding -> an extra LayerNorm (``ln_pre``, CLIP's small change
to the ViT, paper section 2.4) -> residual attention blocks without a mask -> ``ln_post`` on the
class token -> a linear projection into the shared space. Dosovitskiy et al., 2020
(arXiv:2010.11929) describe the ViT itself. Taught in ``notebooks/09_clip_from_scratch.ipynb``.
"""

from __future__ import annotations

import torch
from torch import nn

from simpleclip.clip_arch.config import VisionConfig
from simpleclip.clip_arch.transformer import Transformer


class VisionTransformer(nn.Module):
    """The ViT image encoder of CLIP.

    Args:
        config: sizes of the tower (``resnet_layers`` must be None).
        embed_dim: E, the shared embedding size ``proj`` maps into; None leaves the projection
            out, so ``forward`` gives the (B, D) class-token features (the image tower of
            ``simpleclip.model.CLIPModel``, whose head is the projection).
    """

    def __init__(self, config: VisionConfig, embed_dim: int | None) -> None:
        super().__init__()
        self.config = config
        width, grid = config.width, config.image_size // config.patch_size
        scale = width**-0.5
        # A convolution with kernel = stride = patch size embeds each patch separately.
        self.conv1 = nn.Conv2d(
            3, width, kernel_size=config.patch_size, stride=config.patch_size, bias=False
        )
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid * grid + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(
            width, config.layers, config.heads, config.mlp_ratio, config.activation
        )
        self.ln_post = nn.LayerNorm(width)
        self.proj: nn.Parameter | None = None  # used as x @ proj
        if embed_dim is not None:
            self.proj = nn.Parameter(scale * torch.randn(width, embed_dim))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Hidden states of the class token and every patch after the last block.

        Args:
            x: normalised images at ``config.image_size`` (see ``clip_arch.preprocess``).

        Shapes:
            x (B, 3, H, W) -> (B, 1 + H*W/P², D)
        """
        size = self.config.image_size
        if x.shape[-2:] != (size, size):
            raise ValueError(f"expected {size}x{size} images, got {tuple(x.shape[-2:])}")
        x = self.conv1(x)  # (B, D, H/P, W/P)
        x = x.flatten(2).transpose(1, 2)  # (B, N, D), patches in reading order
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)  # (B, 1, D)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding  # (B, 1 + N, D)
        return self.transformer(self.ln_pre(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Projected (not normalised) image features, read at the class token; without a
        projection, the (B, D) class-token features.

        Shapes:
            x (B, 3, H, W) -> (B, E), or (B, D) when ``embed_dim`` is None
        """
        cls = self.ln_post(self.forward_features(x)[:, 0])  # (B, D)
        if self.proj is None:
            return cls
        return cls @ self.proj  # (B, D) @ (D, E) -> (B, E)
