"""Frozen-encoder feature caching: same training result, cache reuse and invalidation."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

import simpleclip.train.features as features_module
from simpleclip.data import CaptionDataset, load_split
from simpleclip.model import build_model
from simpleclip.train import train
from simpleclip.train.features import cached_features, compute_tower_features, feature_key

FROZEN = ("image.trainable=false", "text.trainable=false")


def test_cached_features_train_the_same_model_as_recomputing_them(
    tiny_config, synthetic_root, tmp_path
):
    recomputed = train(tiny_config(synthetic_root, tmp_path / "a", *FROZEN), progress=False)
    cache_on = "train.cache_features=true"
    cached_config = tiny_config(synthetic_root, tmp_path / "b", *FROZEN, cache_on)
    cached = train(cached_config, progress=False)
    for (name, a), (_, b) in zip(
        recomputed.model.state_dict().items(), cached.model.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4, msg=name)
    assert cached.history[-1]["val"]["t2i"]["R@5"] == pytest.approx(
        recomputed.history[-1]["val"]["t2i"]["R@5"], abs=0.05
    )


def test_cache_features_refuses_when_no_encoder_is_frozen(
    tiny_config, synthetic_root: Path, tmp_path: Path
):
    cached = (*FROZEN, "train.cache_features=true")
    for trainable_parts in (
        ("image.trainable=true", "text.trainable=true"),
        ("image.pooling=attention", "text.unfreeze_last=1"),
    ):
        config = tiny_config(synthetic_root, tmp_path / "c", *cached, *trainable_parts)
        with pytest.raises(ValueError, match="needs a frozen encoder"):
            train(config, progress=False)


def test_a_run_that_computes_the_cache_equals_one_that_reads_it(
    tiny_config, synthetic_root: Path, tmp_path: Path
):
    """Same seed, same model, whether the features were computed in this run or read from an
    earlier one: computing them must not draw from the RNG the heads' dropout uses (it did,
    through the DataLoader's seed, and repeated runs of a config then disagreed)."""
    data = tmp_path / "data"
    shutil.copytree(synthetic_root, data, ignore=shutil.ignore_patterns(".cache"))
    settings = (*FROZEN, "train.cache_features=true", "head.kind=mlp", "head.dropout=0.3")
    computing = train(tiny_config(data, tmp_path / "a", *settings), progress=False)
    reading = train(tiny_config(data, tmp_path / "b", *settings), progress=False)
    assert len(list((data / ".cache").glob("*-features-*.pt"))) == 4  # train and dev, 2 towers
    for (name, a), (_, b) in zip(
        computing.model.state_dict().items(), reading.model.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(a, b, atol=0, rtol=0, msg=name)


def test_locked_image_tuning_caches_the_image_tower_alone_and_trains_the_same_model(
    tiny_config, synthetic_root: Path, tmp_path: Path
):
    """LiT: image tower frozen, text tower trained. Cached image features give the model that
    encoding the pictures at every step gives (no augmentation, so the pictures are the same)."""
    data = tmp_path / "data"
    shutil.copytree(synthetic_root, data, ignore=shutil.ignore_patterns(".cache"))
    lit = ("image.trainable=false", "data.crop_scale=[1.0,1.0]", "data.color_jitter=0.0")
    recomputed = train(tiny_config(data, tmp_path / "a", *lit), progress=False)
    cached_config = tiny_config(data, tmp_path / "b", *lit, "train.cache_features=true")
    cached = train(cached_config, progress=False)
    assert sorted(p.name.split("-")[0] for p in (data / ".cache").glob("*-features-*.pt")) == [
        "image",
        "image",
    ]  # train and dev pictures; no caption features: the text tower is trained
    before = build_model(cached_config, tokenizer=cached.model.tokenizer).text_encoder
    text_moved = [
        (a - b).abs().max().item()
        for a, b in zip(
            cached.model.text_encoder.state_dict().values(),
            before.state_dict().values(),
            strict=True,
        )
    ]
    assert max(text_moved) > 1e-3  # the text tower really trained
    for (name, a), (_, b) in zip(
        recomputed.model.state_dict().items(), cached.model.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4, msg=name)
    for direction in ("t2i", "i2t"):  # dev recall from cached image features, the same
        got, expected = (
            cached.history[-1]["val"][direction],
            recomputed.history[-1]["val"][direction],
        )
        assert got == pytest.approx(expected, abs=1e-4)


@pytest.fixture
def setup(tiny_config, synthetic_root: Path, tmp_path: Path, tiny_tokenizer):
    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    torch.manual_seed(0)
    model = build_model(tiny_config(root, tmp_path / "x", *FROZEN), tokenizer=tiny_tokenizer)

    def dataset() -> CaptionDataset:
        return CaptionDataset(load_split(root, "dev"), root / "Images", tiny_tokenizer)

    return root, model, dataset


def test_cache_is_reused_and_invalidated_per_tower(setup, tmp_path: Path, monkeypatch) -> None:
    root, model, dataset = setup
    calls = []
    monkeypatch.setattr(
        features_module,
        "compute_tower_features",
        lambda m, d, tower, *a, **k: calls.append(tower) or compute_tower_features(m, d, tower),
    )
    first = cached_features(model, dataset(), tmp_path / "cache")
    again = cached_features(model, dataset(), tmp_path / "cache")
    assert calls == ["image", "text"]  # second call read both files
    torch.testing.assert_close(first, again)
    image = root / "Images" / dataset().image_names[0]
    image.write_bytes(image.read_bytes() + b"\0")  # the pictures changed, the captions did not
    cached_features(model, dataset(), tmp_path / "cache")
    assert calls == ["image", "text", "image"]
    with torch.no_grad():
        next(model.text_encoder.parameters()).add_(1.0)  # another text encoder
    cached_features(model, dataset(), tmp_path / "cache")
    assert calls == ["image", "text", "image", "text"]  # image features reused


def test_key_follows_encoder_weights_not_head_weights(setup) -> None:
    _, model, dataset = setup
    keys = {tower: feature_key(model, dataset(), tower) for tower in ("image", "text")}
    assert keys["image"] != keys["text"]
    with torch.no_grad():
        model.image_head.weight.add_(1.0)
        model.logit_scale.add_(1.0)
    for tower, key in keys.items():  # heads are trained on top: same features
        assert feature_key(model, dataset(), tower) == key
    with torch.no_grad():
        next(model.image_encoder.parameters()).add_(1.0)
    assert feature_key(model, dataset(), "image") != keys["image"]
    assert feature_key(model, dataset(), "text") == keys["text"]


def test_features_are_the_encoder_outputs(setup) -> None:
    _, model, dataset = setup
    data = dataset()
    features = {
        f"{tower}_features": compute_tower_features(model, data, tower, batch_size=5)
        for tower in ("image", "text")
    }
    assert features["image_features"].shape == (len(data.image_names), model.image_encoder.out_dim)
    assert features["text_features"].shape == (len(data.captions), model.text_encoder.out_dim)
    with torch.no_grad():
        direct = model.image_encoder(data.load_image(3)[None])[0]
    torch.testing.assert_close(features["image_features"][3], direct, atol=1e-5, rtol=1e-5)


def test_key_works_for_bfloat16_encoders(setup) -> None:
    _, model, dataset = setup
    key = feature_key(model, dataset(), "image")
    model.image_encoder.to(torch.bfloat16)  # the GPU path: numpy has no bfloat16
    assert feature_key(model, dataset(), "image") != key  # other numbers, another file


def test_a_damaged_or_old_cache_file_is_computed_again(setup, tmp_path: Path) -> None:
    _, model, dataset = setup
    first = cached_features(model, dataset(), tmp_path / "cache")
    files = sorted((tmp_path / "cache").glob("*-features-*.pt"))
    assert [f.name.split("-")[0] for f in files] == ["image", "text"]
    files[0].write_bytes(b"half a file")
    (tmp_path / "cache" / "image-features-0123456789abcdef01234567.pt").write_bytes(b"old")
    again = cached_features(model, dataset(), tmp_path / "cache")
    torch.testing.assert_close(again, first)
    assert isinstance(torch.load(files[0], weights_only=True), torch.Tensor)  # rewritten
