"""Pooling: turn an encoder's many output vectors into one feature vector per example.

An image backbone returns a grid of spatial features, a text encoder one vector per token; the
contrastive loss needs a single vector per image and per caption. Images: global average
pooling (timm's default) or CLIP's attention pooling (Radford et al. 2021, section 2.4: the
modified ResNet replaces average pooling with one layer of multi-head QKV attention whose query
is the mean-pooled feature). Text: the first token ([CLS]) or the mean over real tokens, with
padding masked out (Reimers & Gurevych 2019, Sentence-BERT). Taught in
``notebooks/02_image_encoders.ipynb`` and ``notebooks/03_text_encoders.ipynb``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class AttentionPool2d(nn.Module):
    """CLIP's attention pooling over a CNN feature map, in place of global average pooling.

    The spatial features become tokens; their mean is prepended as an extra token, a learned
    positional embedding is added, and the mean token alone queries all tokens in one
    multi-head attention layer. Its output, projected, is the pooled feature.

    Args:
        in_dim: channels C of the feature map.
        grid_size: side H = W of the feature map (the positional embedding is learned per cell).
        num_heads: attention heads; must divide ``in_dim``.
        out_dim: size of the pooled feature (default ``in_dim``).

    Shapes:
        (B, C, H, W) -> (B, out_dim)
    """

    def __init__(
        self, in_dim: int, grid_size: int, num_heads: int = 8, out_dim: int | None = None
    ) -> None:
        super().__init__()
        if in_dim % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide the feature width {in_dim}.")
        self.num_heads = num_heads
        self.grid_size = grid_size
        # One position per spatial cell plus one for the mean token, scaled as in CLIP.
        self.positional_embedding = nn.Parameter(
            torch.randn(grid_size * grid_size + 1, in_dim) / in_dim**0.5
        )
        self.q_proj = nn.Linear(in_dim, in_dim)
        self.k_proj = nn.Linear(in_dim, in_dim)
        self.v_proj = nn.Linear(in_dim, in_dim)
        self.c_proj = nn.Linear(in_dim, out_dim or in_dim)
        self.out_dim = out_dim or in_dim

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        B, C, H, W = feature_map.shape
        if feature_map.shape[-2:] != (self.grid_size, self.grid_size):
            raise ValueError(
                f"feature map is {H}x{W} but the pooling was built for "
                f"{self.grid_size}x{self.grid_size}; feed images of the encoder's input size."
            )
        tokens = feature_map.flatten(2).transpose(1, 2)  # (B, C, H, W) -> (B, HW, C)
        tokens = torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1)  # (B, 1+HW, C)
        tokens = tokens + self.positional_embedding  # broadcast over B
        heads = self.num_heads

        def split(x: torch.Tensor) -> torch.Tensor:  # (B, L, C) -> (B, heads, L, C / heads)
            return x.view(B, x.shape[1], heads, C // heads).transpose(1, 2)

        query = split(self.q_proj(tokens[:, :1]))  # only the mean token asks
        key, value = split(self.k_proj(tokens)), split(self.v_proj(tokens))
        pooled = F.scaled_dot_product_attention(query, key, value)  # (B, heads, 1, C / heads)
        pooled = pooled.transpose(1, 2).reshape(B, C)  # concatenate the heads
        return self.c_proj(pooled)  # (B, out_dim)


def mean_pool(hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average the token vectors of each sequence, ignoring padding.

    A plain ``hidden_states.mean(1)`` would mix the padding vectors in, so the same caption
    would get a different embedding depending on the longest caption in its batch.

    Args:
        hidden_states: the encoder's last hidden states.
        attention_mask: 1 for real tokens, 0 for padding.

    Returns:
        One vector per sequence.

    Shapes:
        (B, L, D), (B, L) -> (B, D)
    """
    mask = attention_mask.unsqueeze(-1).to(hidden_states.dtype)  # (B, L, 1)
    summed = (hidden_states * mask).sum(dim=1)  # (B, D)
    counts = mask.sum(dim=1).clamp(min=1.0)  # (B, 1); avoids 0/0 for an empty sequence
    return summed / counts


def first_token_pool(hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Take the first token's vector ([CLS] in BERT-style models) as the sequence's summary.

    Args:
        hidden_states: the encoder's last hidden states.
        attention_mask: unused; kept so every text pooling has the same signature.

    Returns:
        One vector per sequence.

    Shapes:
        (B, L, D), (B, L) -> (B, D)
    """
    del attention_mask  # the first token is always a real token
    return hidden_states[:, 0]


TEXT_POOLINGS = {"cls": first_token_pool, "mean": mean_pool}
