"""Projection heads: the tutorial MLP against a hand-written reference, kinds, and dim checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from simpleclip.heads import HEAD_KINDS, ProjectionHead, build_head, build_heads


def test_projection_head_matches_the_tutorial_formula() -> None:
    torch.manual_seed(0)
    head = ProjectionHead(in_dim=12, embed_dim=8, dropout=0.1).eval()
    x = torch.randn(5, 12)
    projected = x @ head.projection.weight.T + head.projection.bias
    hidden = F.gelu(projected) @ head.fc.weight.T + head.fc.bias
    expected = F.layer_norm(
        hidden + projected, (8,), head.layer_norm.weight, head.layer_norm.bias, eps=1e-5
    )
    torch.testing.assert_close(head(x), expected)


def test_projection_head_dropout_only_in_training() -> None:
    torch.manual_seed(0)
    head = ProjectionHead(in_dim=12, embed_dim=64, dropout=0.5)
    x = torch.randn(5, 12)
    assert not torch.allclose(head.train()(x), head(x))
    torch.testing.assert_close(head.eval()(x), head(x))


def test_projection_head_trains_both_paths() -> None:
    head = ProjectionHead(in_dim=12, embed_dim=8)
    (head(torch.randn(5, 12)) * torch.randn(5, 8)).sum().backward()
    for name, param in head.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("kind", HEAD_KINDS)
def test_build_head_kinds(kind: str) -> None:
    x = torch.randn(3, 16)
    head = build_head(kind, in_dim=16, embed_dim=8).eval()
    if kind == "none":
        assert head(x) is x and not list(head.parameters())
    else:
        assert head(x).shape == (3, 8)
    if kind == "linear":
        assert isinstance(head, nn.Linear) and head.bias is None  # CLIP's W_i, W_t


def test_build_head_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="'mlp', 'linear', 'none'"):
        build_head("transformer", in_dim=16)


@pytest.mark.parametrize("kind", ["mlp", "linear"])
def test_build_heads_meet_in_one_space(kind: str) -> None:
    image_head, text_head = build_heads(kind, image_dim=48, text_dim=32, embed_dim=16)
    image_embeds, text_embeds = image_head(torch.randn(4, 48)), text_head(torch.randn(4, 32))
    assert image_embeds.shape == text_embeds.shape == (4, 16)  # embed_dim, whatever the inputs
    assert (image_embeds @ text_embeds.T).shape == (4, 4)


def test_no_projection_compares_features_directly() -> None:
    image_head, text_head = build_heads("none", image_dim=768, text_dim=768)
    features = torch.randn(2, 768)
    assert image_head(features) is features and text_head(features) is features
    assert image_head(features).shape[-1] == 768  # the encoders' width; embed_dim is ignored


def test_no_projection_with_different_widths_names_both() -> None:
    with pytest.raises(ValueError) as info:
        build_heads("none", image_dim=2048, text_dim=768)
    message = str(info.value)
    assert "2048" in message and "768" in message and "'linear'" in message
