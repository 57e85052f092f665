"""Image encoders: pooled features (no classifier), preprocessing, attention pooling, freezing."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

from simpleclip.data import build_transforms, load_rgb
from simpleclip.encoders import (
    IMAGE_PRESETS,
    AttentionPool2d,
    EncoderLoadError,
    ImageEncoder,
    preprocessing_from_timm,
)
from simpleclip.encoders import image as image_module

TINY_PRESETS = ["tiny", "tiny_vit"]


def images(batch: int = 4, size: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", TINY_PRESETS)
def test_tiny_presets_give_one_feature_vector_per_image(name: str) -> None:
    encoder = ImageEncoder(name)
    size = encoder.preprocessing.input_size
    assert size == 64
    features = encoder(images(size=size))
    assert features.shape == (4, encoder.out_dim)
    assert torch.isfinite(features).all()


def test_classifier_is_removed_for_any_timm_name() -> None:
    # "test_resnet" is not a preset: the name goes straight to timm.
    with_classifier = timm.create_model("test_resnet", pretrained=False)
    assert with_classifier.eval()(images()).shape[-1] == 1000
    encoder = ImageEncoder("test_resnet", pretrained=False).eval()
    features = encoder(images())
    assert features.shape == (4, encoder.out_dim)
    assert encoder.out_dim == with_classifier.num_features != 1000
    assert isinstance(encoder.backbone.get_classifier(), nn.Identity)


@pytest.mark.parametrize("name", [*TINY_PRESETS, "test_resnet", "test_vit"])
def test_preprocessing_matches_timm_data_config(name: str) -> None:
    encoder = ImageEncoder(name, pretrained=False)
    config = timm.data.resolve_model_data_config(encoder.backbone)
    pre = encoder.preprocessing
    assert (3, pre.input_size, pre.input_size) == tuple(config["input_size"])
    assert pre.mean == pytest.approx(config["mean"])
    assert pre.std == pytest.approx(config["std"])
    assert pre.interpolation == config["interpolation"]
    assert pre.crop_pct == pytest.approx(config["crop_pct"])


def test_preprocessing_reads_the_model_not_a_default() -> None:
    # Two models with different data configs must give different preprocessing.
    tiny = preprocessing_from_timm(ImageEncoder("tiny").backbone)
    resnet = preprocessing_from_timm(timm.create_model("resnet18", pretrained=False))
    assert (tiny.input_size, tiny.mean) == (64, (0.5, 0.5, 0.5))
    assert (resnet.input_size, resnet.mean) == (224, pytest.approx((0.485, 0.456, 0.406)))


def test_dataset_transforms_feed_the_encoder(synthetic_root) -> None:
    encoder = ImageEncoder("tiny").eval()
    transform = build_transforms(encoder.preprocessing, train=False)
    paths = sorted((synthetic_root / "Images").glob("*.jpg"))[:3]
    pixels = torch.stack([transform(image=np.asarray(load_rgb(p)))["image"] for p in paths])
    assert pixels.shape == (3, 3, 64, 64)
    assert encoder(pixels).shape == (3, encoder.out_dim)


def clip_attention_pool_reference(pool: AttentionPool2d, x: torch.Tensor) -> torch.Tensor:
    """CLIP's own formulation (model.py, AttentionPool2d): sequence-first, torch's MHA kernel."""
    x = x.flatten(start_dim=2).permute(2, 0, 1)  # (B, C, H, W) -> (HW, B, C)
    x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0)
    x = x + pool.positional_embedding[:, None, :].to(x.dtype)
    out, _ = F.multi_head_attention_forward(
        query=x[:1],
        key=x,
        value=x,
        embed_dim_to_check=x.shape[-1],
        num_heads=pool.num_heads,
        q_proj_weight=pool.q_proj.weight,
        k_proj_weight=pool.k_proj.weight,
        v_proj_weight=pool.v_proj.weight,
        in_proj_weight=None,
        in_proj_bias=torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]),
        bias_k=None,
        bias_v=None,
        add_zero_attn=False,
        dropout_p=0.0,
        out_proj_weight=pool.c_proj.weight,
        out_proj_bias=pool.c_proj.bias,
        use_separate_proj_weight=True,
        training=False,
        need_weights=False,
    )
    return out.squeeze(0)


@pytest.mark.parametrize("out_dim", [None, 48])
def test_attention_pool_matches_clips_formulation(out_dim: int | None) -> None:
    torch.manual_seed(0)
    pool = AttentionPool2d(in_dim=32, grid_size=4, num_heads=4, out_dim=out_dim)
    x = torch.randn(3, 32, 4, 4)
    assert pool(x).shape == (3, out_dim or 32)
    torch.testing.assert_close(pool(x), clip_attention_pool_reference(pool, x))


def test_attention_pool_without_positions_ignores_pixel_order() -> None:
    torch.manual_seed(0)
    pool = AttentionPool2d(in_dim=16, grid_size=3, num_heads=4, out_dim=8)
    x = torch.randn(2, 16, 3, 3)
    with torch.no_grad():
        pool.positional_embedding.zero_()  # without positions the pool is a set function
    shuffled = x.flatten(2)[..., torch.randperm(9)].view_as(x)
    torch.testing.assert_close(pool(shuffled), pool(x), atol=1e-6, rtol=1e-5)


def test_attention_pooling_differs_from_average_and_learns() -> None:
    torch.manual_seed(0)
    avg = ImageEncoder("tiny", pooling="avg").eval()
    attn = ImageEncoder("tiny", pooling="attention", pool_dim=96).eval()
    attn.backbone.load_state_dict(avg.backbone.state_dict())  # same features, other pooling
    x = images()
    assert attn.out_dim == 96 and attn(x).shape == (4, 96)
    same_width = ImageEncoder("tiny", pooling="attention").eval()
    same_width.backbone.load_state_dict(avg.backbone.state_dict())
    assert not torch.allclose(same_width(x), avg(x), atol=1e-3)

    attn.train()
    attn(x).pow(2).sum().backward()
    for name, param in [*attn.pool.named_parameters(), *attn.backbone.named_parameters()]:
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_attention_pooling_refuses_token_outputs_and_wrong_sizes() -> None:
    with pytest.raises(ValueError, match="pooling='avg'"):
        ImageEncoder("tiny_vit", pooling="attention")
    encoder = ImageEncoder("tiny", pooling="attention")
    with pytest.raises(ValueError, match="input size"):
        encoder(images(size=96))


def _bn_buffers(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items() if "running" in k}


@pytest.mark.parametrize("trainable", [True, False])
def test_freezing_stops_gradients_and_batchnorm_updates(trainable: bool) -> None:
    encoder = ImageEncoder("tiny", trainable=trainable)
    encoder.train()  # what a parent model's .train() does at every epoch
    before = _bn_buffers(encoder)
    assert before, "the tiny CNN should have BatchNorm layers"
    features = encoder(images())  # one training step
    if trainable:
        optimizer = torch.optim.SGD(encoder.parameters(), lr=0.1)
        features.pow(2).mean().backward()
        optimizer.step()
    else:
        assert not features.requires_grad  # nothing to backpropagate into
    after = _bn_buffers(encoder)
    changed = any(not torch.equal(before[k], after[k]) for k in before)
    assert changed == trainable
    assert encoder.backbone.training == trainable
    assert all(p.requires_grad == trainable for p in encoder.backbone.parameters())


def test_frozen_backbone_gets_no_gradient_but_new_attention_pool_does() -> None:
    encoder = ImageEncoder("tiny", trainable=False, pooling="attention").train()
    encoder(images()).sum().backward()
    assert all(p.grad is None for p in encoder.backbone.parameters())
    assert all(p.grad is not None for p in encoder.pool.parameters())


def test_unknown_name_fails_fast_with_suggestions() -> None:
    with pytest.raises(EncoderLoadError) as info:
        ImageEncoder("resnet5O")  # letter O typed for a zero
    message = str(info.value)
    assert "'resnet5O'" in message and "'resnet50'" in message
    assert "timm.list_models" in message and "tiny" in message


def test_pretrained_download_failure_gives_one_clear_error(monkeypatch) -> None:
    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(image_module.timm, "create_model", offline)
    with pytest.raises(EncoderLoadError) as info:
        ImageEncoder("resnet50")
    message = str(info.value)
    assert "'resnet50'" in message and "HF_HUB_OFFLINE" in message and "'tiny'" in message
    assert isinstance(info.value.__cause__, OSError)


def test_bad_weight_tag_is_reported_with_the_model_name() -> None:
    with pytest.raises(EncoderLoadError, match=r"resnet18\.no_such_tag"):
        ImageEncoder("resnet18.no_such_tag")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "out_dim"),
    [
        ("resnet50", 2048),
        ("resnet18", 512),
        ("vit_tiny_patch16_224", 192),
        ("vit_base_patch16_224.augreg2_in21k_ft_in1k", 768),
        ("beit_base_patch16_224", 768),
    ],
)
def test_real_size_presets_build_offline_with_random_weights(name: str, out_dim: int) -> None:
    assert name in IMAGE_PRESETS
    encoder = ImageEncoder(name, pretrained=False).eval()
    assert encoder.out_dim == out_dim
    size = encoder.preprocessing.input_size
    assert size == 224
    with torch.no_grad():
        assert encoder(torch.randn(1, 3, size, size)).shape == (1, out_dim)


@pytest.mark.slow
def test_resnet50_attention_pooling_like_clip() -> None:
    encoder = ImageEncoder("resnet50", pretrained=False, pooling="attention", pool_dim=1024)
    assert encoder.pool.grid_size == 7 and encoder.pool.num_heads == 32
    with torch.no_grad():
        assert encoder.eval()(torch.randn(1, 3, 224, 224)).shape == (1, 1024)
