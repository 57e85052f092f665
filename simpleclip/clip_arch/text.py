"""CLIP's text tower: a causal transformer read out at the end-of-text token.

Token ids -> token embedding + learned positional embedding -> residual attention blocks with a
causal mask -> final LayerNorm -> the hidden state at the end-of-text (EOT) token -> a linear
projection into the shared space (paper section 2.4: "the activations of the highest layer of
the transformer at the [EOS] token are treated as the feature representation of the text").
Because of the causal mask the EOT position has read the whole caption and no padding, so no
attention mask is needed. Taught in ``notebooks/09_clip_from_scratch.ipynb``.
"""

from __future__ import annotations

import torch
from torch import nn

from simpleclip.clip_arch.config import TextConfig
from simpleclip.clip_arch.transformer import Transformer, causal_mask


def eot_positions(ids: torch.Tensor, eot_token_id: int | None = None) -> torch.Tensor:
    """Where each sequence's end-of-text token sits.

    OpenAI's tokenizer gives ``<|endoftext|>`` the largest id in the vocabulary, so
    ``ids.argmax(-1)`` finds it (``eot_token_id=None``). That breaks if tokens are added after it,
    so newer Hugging Face configs look for the first position holding ``eot_token_id`` instead;
    ``transformers.CLIPModel`` keeps argmax for configs whose ``eos_token_id`` is the old value 2.
    With padding after the EOT token both rules pick the same position.

    Args:
        ids: token ids, each row holding one EOT token before any padding.
        eot_token_id: the id to look for, or None for the argmax rule.

    Shapes:
        ids (B, L) -> (B,)
    """
    if eot_token_id is None:
        return ids.argmax(dim=-1)  # argmax returns the first of equal maxima
    return (ids == eot_token_id).int().argmax(dim=-1)


class TextTransformer(nn.Module):
    """The text encoder of CLIP.

    Args:
        config: sizes of the tower.
        embed_dim: E, the shared embedding size ``text_projection`` maps into; None leaves the
            projection out, so ``forward`` gives the (B, D) features at the EOT token (the text
            tower of ``simpleclip.model.CLIPModel``, whose head is the projection).
    """

    def __init__(self, config: TextConfig, embed_dim: int | None) -> None:
        super().__init__()
        self.config = config
        width = config.width
        self.token_embedding = nn.Embedding(config.vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.empty(config.context_length, width))
        self.transformer = Transformer(
            width, config.layers, config.heads, config.mlp_ratio, config.activation
        )
        self.ln_final = nn.LayerNorm(width)
        # A plain matrix, used as x @ W (OpenAI's layout; an nn.Linear would store W transposed).
        self.text_projection: nn.Parameter | None = None
        if embed_dim is not None:
            self.text_projection = nn.Parameter(torch.empty(width, embed_dim))
        self.register_buffer("attn_mask", causal_mask(config.context_length), persistent=False)
        self.init_weights()

    def init_weights(self) -> None:
        """OpenAI's initialisation: small embeddings, output projections scaled by depth."""
        width, layers = self.config.width, self.config.layers
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=width**-0.5)
            nn.init.normal_(block.attn.out_proj.weight, std=width**-0.5 * (2 * layers) ** -0.5)
            nn.init.normal_(block.mlp.c_fc.weight, std=(2 * width) ** -0.5)
            nn.init.normal_(block.mlp.c_proj.weight, std=width**-0.5 * (2 * layers) ** -0.5)
        if self.text_projection is not None:
            nn.init.normal_(self.text_projection, std=width**-0.5)

    def forward_features(self, ids: torch.Tensor) -> torch.Tensor:
        """Hidden states of every position after the final LayerNorm.

        Args:
            ids: token ids, at most ``context_length`` per row (shorter batches are fine).

        Shapes:
            ids (B, L) -> (B, L, D)
        """
        n = ids.shape[1]
        if n > self.config.context_length:
            raise ValueError(f"{n} tokens exceed the context length {self.config.context_length}")
        x = self.token_embedding(ids) + self.positional_embedding[:n]  # (B, L, D)
        x = self.transformer(x, self.attn_mask[:n, :n])  # position i sees positions <= i
        return self.ln_final(x)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Projected (not normalised) text features, read at the EOT token; without a
        projection, the (B, D) hidden state there.

        Shapes:
            ids (B, L) -> (B, E), or (B, D) when ``embed_dim`` is None
        """
        x = self.forward_features(ids)  # (B, L, D)
        eot = eot_positions(ids, self.config.eot_token_id)  # (B,)
        pooled = x[torch.arange(x.shape[0], device=x.device), eot]  # (B, D)
        if self.text_projection is None:
            return pooled
        return pooled @ self.text_projection  # (B, D) @ (D, E) -> (B, E)
