"""CLIP's modified ResNet image tower (RN50 and its larger siblings).

Three changes to He et al.'s ResNet (paper section 2.4): a stem of three 3x3 convolutions with
an average pool instead of one 7x7 convolution and a max pool; anti-aliased strided blocks that
average-pool *before* the stride instead of striding a convolution (Zhang, 2019,
arXiv:1904.11486); and, instead of global average pooling, one layer of multi-head attention
whose single query is the mean of the final feature map (``encoders.pooling.AttentionPool2d``,
built in notebook 02, with OpenAI's parameter names). ``transformers`` has no CLIP-ResNet,
so pretrained weights come from OpenAI's checkpoints (``clip_arch.from_openai_state_dict``).
Names follow OpenAI's ``clip/model.py``. Taught in ``notebooks/09_clip_from_scratch.ipynb``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from simpleclip.clip_arch.config import VisionConfig
from simpleclip.encoders.pooling import AttentionPool2d


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> (avg-pool if strided) -> 1x1 convolutions, plus a shortcut.

    Args:
        inplanes: input channels.
        planes: bottleneck channels; the block outputs ``4 * planes``.
        stride: 1, or 2 to halve the resolution (by average pooling, not a strided conv).
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride > 1 or inplanes != out:
            # OpenAI names the pool "-1" so the conv and norm keep torchvision's "0" and "1".
            layers = [("-1", nn.AvgPool2d(stride)), ("0", nn.Conv2d(inplanes, out, 1, bias=False))]
            self.downsample = nn.Sequential(OrderedDict([*layers, ("1", nn.BatchNorm2d(out))]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shapes: x (B, C, H, W) -> (B, 4 * planes, H / stride, W / stride)."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(self.avgpool(out)))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ModifiedResNet(nn.Module):
    """The CLIP ResNet image encoder.

    Args:
        config: ``resnet_layers`` gives the bottlenecks per stage, ``width`` the stem width.
        embed_dim: E, the shared embedding size.

    Shapes:
        (B, 3, S, S) -> stem (B, width, S/4, S/4) -> stages (B, 32 * width, S/32, S/32) -> (B, E)
    """

    def __init__(self, config: VisionConfig, embed_dim: int) -> None:
        super().__init__()
        if config.resnet_layers is None:
            raise ValueError("ModifiedResNet needs config.resnet_layers, e.g. (3, 4, 6, 3)")
        self.config = config
        width = config.width
        # The stem: three 3x3 convolutions (the first strided), then a 2x2 average pool.
        self.conv1 = nn.Conv2d(3, width // 2, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.conv2 = nn.Conv2d(width // 2, width // 2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.conv3 = nn.Conv2d(width // 2, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.avgpool = nn.AvgPool2d(2)
        self.relu = nn.ReLU(inplace=True)
        blocks, inplanes = config.resnet_layers, width
        for stage, (n_blocks, stride) in enumerate(zip(blocks, (1, 2, 2, 2), strict=True), 1):
            planes = width * 2 ** (stage - 1)
            layer = [Bottleneck(inplanes, planes, stride)]
            layer += [Bottleneck(planes * 4, planes) for _ in range(n_blocks - 1)]
            setattr(self, f"layer{stage}", nn.Sequential(*layer))
            inplanes = planes * 4
        grid = config.image_size // 32  # five halvings: stem conv, stem pool, stages 2-4
        self.attnpool = AttentionPool2d(width * 32, grid, num_heads=config.heads, out_dim=embed_dim)
        self.init_weights()

    def init_weights(self) -> None:
        """OpenAI's initialisation: each residual branch starts as zero (bn3's scale is 0)."""
        pool = self.attnpool
        for linear in (pool.q_proj, pool.k_proj, pool.v_proj, pool.c_proj):
            nn.init.normal_(linear.weight, std=pool.c_proj.in_features**-0.5)
        for name, param in self.named_parameters():
            if name.startswith("layer") and name.endswith("bn3.weight"):
                nn.init.zeros_(param)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """Shapes: x (B, 3, S, S) -> (B, width, S/4, S/4)."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.relu(self.bn3(self.conv3(x)))
        return self.avgpool(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The final feature map, before attention pooling.

        Shapes:
            x (B, 3, S, S) -> (B, 32 * width, S/32, S/32)
        """
        x = self.stem(x.to(self.conv1.weight.dtype))
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Projected (not normalised) image features. Shapes: x (B, 3, S, S) -> (B, E)."""
        return self.attnpool(self.forward_features(x))
