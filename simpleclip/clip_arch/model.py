"""OpenAI's CLIP, put together: an image tower, a text tower and a learned temperature.

``encode_image`` and ``encode_text`` map both modalities into one E-dimensional space; the
logits are cosine similarities times ``exp(logit_scale)``, where ``logit_scale`` =
log(1/temperature) starts at log(1/0.07) (paper section 2.5 and Figure 3's pseudocode).
Images must be preprocessed like CLIP's training data: resized (bicubic) and centre-cropped to
``image_size`` (224 for the released models), scaled to [0, 1] and normalised with CLIP's
mean/std (``clip_arch.preprocess``). Taught in ``notebooks/09_clip_from_scratch.ipynb``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from simpleclip.clip_arch.config import CLIPArchConfig, get_config
from simpleclip.clip_arch.resnet import ModifiedResNet
from simpleclip.clip_arch.text import TextTransformer
from simpleclip.clip_arch.vision import VisionTransformer


class CLIP(nn.Module):
    """The CLIP model of Radford et al. (2021), ViT or ResNet image tower.

    Args:
        config: sizes of both towers and the shared space.

    Example:
        >>> model = CLIP(get_config("tiny-vit")).eval()
        >>> images = torch.randn(2, 3, 32, 32)
        >>> ids = torch.tensor([[598, 40, 41, 599, 0]])  # start, two tokens, end, padding
        >>> model.encode_image(images).shape, model.encode_text(ids).shape
        (torch.Size([2, 16]), torch.Size([1, 16]))
        >>> logits_per_image, logits_per_text = model(images, ids)  # (2, 1) and (1, 2)
    """

    def __init__(self, config: CLIPArchConfig) -> None:
        super().__init__()
        self.config = config
        if config.vision.resnet_layers is None:
            self.visual: nn.Module = VisionTransformer(config.vision, config.embed_dim)
        else:
            self.visual = ModifiedResNet(config.vision, config.embed_dim)
        self.text = TextTransformer(config.text, config.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(config.logit_scale_init))

    def encode_image(self, x: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Embed preprocessed images.

        Args:
            x: images normalised with CLIP's mean/std at ``config.vision.image_size``.
            normalize: scale each embedding to unit length; False gives the projected
                features, like ``transformers.CLIPModel.get_image_features``.

        Shapes:
            x (B, 3, S, S) -> (B, E)
        """
        features = self.visual(x)
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, ids: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Embed token ids from ``clip_arch.BPETokenizer`` (start, text, end, then padding).

        Args:
            ids: token ids, one end-of-text token per row.
            normalize: scale each embedding to unit length; False gives the projected
                features, like ``transformers.CLIPModel.get_text_features``.

        Shapes:
            ids (B, L) -> (B, E)
        """
        features = self.text(ids)
        return F.normalize(features, dim=-1) if normalize else features

    def forward(self, x: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scaled cosine similarities between every image and every text.

        ``logit_scale`` is used as is; training code usually clamps it at log(100).

        Shapes:
            x (B, 3, S, S), ids (N, L) -> logits_per_image (B, N), logits_per_text (N, B)
        """
        image_embeds = self.encode_image(x)  # (B, E)
        text_embeds = self.encode_text(ids)  # (N, E)
        logits_per_image = self.logit_scale.exp() * image_embeds @ text_embeds.T  # (B, N)
        return logits_per_image, logits_per_image.T


def build_clip(config: CLIPArchConfig | str = "tiny-vit") -> CLIP:
    """A randomly initialised CLIP from a config or a preset name (see ``config.PRESETS``).

    Example:
        >>> model = build_clip("rn50")  # 102 M parameters, OpenAI's initialisation
    """
    return CLIP(get_config(config) if isinstance(config, str) else config)
