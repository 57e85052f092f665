"""The transformer both CLIP towers share: pre-LayerNorm residual attention blocks.

Each block is ``x + attn(ln_1(x))`` then ``x + mlp(ln_2(x))`` (GPT-2 style, paper section 2.4).
The text tower passes a causal mask so a token sees only the tokens before it; the ViT passes
none. Parameter names follow OpenAI's ``clip/model.py`` (``ln_1``, ``attn.in_proj_weight``,
``mlp.c_fc``...) so its checkpoints load unchanged. One difference: OpenAI runs the blocks on
(L, B, D) tensors, we keep the batch first, (B, L, D). Taught in
``notebooks/09_clip_from_scratch.ipynb``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


class QuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)``: the fast GELU approximation every OpenAI CLIP was trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


def make_activation(name: str) -> nn.Module:
    """Return the activation called ``name`` ("quick_gelu" or "gelu", the exact erf form)."""
    if name == "quick_gelu":
        return QuickGELU()
    if name == "gelu":
        return nn.GELU()
    raise ValueError(f"unknown activation {name!r}; use 'quick_gelu' or 'gelu'")


def causal_mask(length: int) -> torch.Tensor:
    """Additive attention mask that hides the future: ``-inf`` above the diagonal, 0 elsewhere.

    Shapes:
        returns (L, L); row i is query position i, column j key position j.
    """
    return torch.full((length, length), float("-inf")).triu(1)


class SelfAttention(nn.Module):
    """Multi-head self-attention written out (the maths of ``nn.MultiheadAttention``).

    Args:
        width: D, the model width.
        heads: number of heads; each works in ``width // heads`` dimensions.
    """

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        # Queries, keys and values come from one (3D, D) matrix, stacked in that order.
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attend every position to every (unmasked) position.

        Args:
            x: the token sequence.
            mask: additive mask broadcast onto the scores, e.g. ``causal_mask(L)``.

        Shapes:
            x (B, L, D), mask (L, L) -> (B, L, D)
        """
        B, L, D = x.shape
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        # (B, L, D) -> (B, H, L, D/H): each head attends on its own slice of the features
        q, k, v = (t.view(B, L, self.heads, D // self.heads).transpose(1, 2) for t in (q, k, v))
        scores = q @ k.transpose(-2, -1) * (D // self.heads) ** -0.5  # (B, H, L, L)
        if mask is not None:
            scores = scores + mask
        out = scores.softmax(dim=-1) @ v  # (B, H, L, D/H)
        return self.out_proj(out.transpose(1, 2).reshape(B, L, D))


class ResidualAttentionBlock(nn.Module):
    """Pre-LayerNorm block: attention then MLP, each added back onto the residual stream.

    Args:
        width: D, the model width.
        heads: attention heads.
        mlp_ratio: the MLP's hidden size as a multiple of ``width``.
        activation: "quick_gelu" or "gelu".
    """

    def __init__(
        self, width: int, heads: int, mlp_ratio: float = 4.0, activation: str = "quick_gelu"
    ) -> None:
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.ln_1 = nn.LayerNorm(width)
        self.attn = SelfAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(
                [
                    ("c_fc", nn.Linear(width, hidden)),
                    ("gelu", make_activation(activation)),
                    ("c_proj", nn.Linear(hidden, width)),
                ]
            )
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Shapes: x (B, L, D), mask (L, L) -> (B, L, D)."""
        x = x + self.attn(self.ln_1(x), mask)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """A stack of ``layers`` residual attention blocks sharing one mask.

    Args:
        width: D, the model width.
        layers: number of blocks.
        heads: attention heads per block.
        mlp_ratio: MLP hidden size as a multiple of ``width``.
        activation: "quick_gelu" or "gelu".
    """

    def __init__(
        self,
        width: int,
        layers: int,
        heads: int,
        mlp_ratio: float = 4.0,
        activation: str = "quick_gelu",
    ) -> None:
        super().__init__()
        self.width, self.layers = width, layers
        self.resblocks = nn.ModuleList(
            ResidualAttentionBlock(width, heads, mlp_ratio, activation) for _ in range(layers)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Shapes: x (B, L, D), mask (L, L) -> (B, L, D)."""
        for block in self.resblocks:
            x = block(x, mask)
        return x
