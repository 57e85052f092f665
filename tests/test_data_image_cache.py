"""The pre-resized image cache, and the augmentation its pictures share with decoded ones."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import albumentations as A
import numpy as np
import pytest
import torch
from albumentations.pytorch import ToTensorV2

from simpleclip.config import load_config
from simpleclip.data import (
    CaptionDataset,
    ImagePreprocessing,
    build_transforms,
    load_rgb,
    load_split,
)
from simpleclip.data.image_cache import build_image_cache
from simpleclip.data.transforms import after_eval_view, denormalize
from simpleclip.train import train
from simpleclip.train.data import new_model, training_data

TINY = ImagePreprocessing(
    input_size=64, mean=(0.5,) * 3, std=(0.5,) * 3, interpolation="bilinear", crop_pct=1.0
)


@pytest.fixture
def root(synthetic_root: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(synthetic_root, copy)
    return copy


def names(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "Images").iterdir())[:10]


def test_cache_holds_each_decoded_picture(root: Path) -> None:
    cache = build_image_cache(root / "Images", names(root), TINY, root / ".cache")
    assert cache.shape == (10, 64, 64, 3) and cache.dtype == np.uint8
    for row, name in enumerate(names(root)):
        assert np.array_equal(cache[row], np.asarray(load_rgb(root / "Images" / name)))


def test_cache_resizes_like_the_eval_transform(root: Path) -> None:
    pre = ImagePreprocessing(
        input_size=40, mean=(0.5,) * 3, std=(0.5,) * 3, crop_pct=0.875, interpolation="bilinear"
    )
    cache = build_image_cache(root / "Images", names(root), pre, root / ".cache")
    picture = np.asarray(load_rgb(root / "Images" / names(root)[0]))
    reference = denormalize(build_transforms(pre, train=False)(image=picture)["image"], pre)
    assert cache.shape[1:] == reference.shape
    assert np.abs(cache[0].astype(int) - reference.astype(int)).mean() < 3
    assert np.abs(cache[0].astype(int) - reference.astype(int)).max() <= 1  # one resize for both


def test_cache_is_reused_and_rebuilt_when_a_picture_changes(root: Path) -> None:
    first = build_image_cache(root / "Images", names(root), TINY, root / ".cache")
    again = build_image_cache(root / "Images", names(root), TINY, root / ".cache")
    assert again.filename == first.filename
    picture = root / "Images" / names(root)[3]
    picture.write_bytes(picture.read_bytes() + b"\0")
    changed = build_image_cache(root / "Images", names(root), TINY, root / ".cache")
    assert changed.filename != first.filename


def test_cached_eval_view_is_only_normalised() -> None:
    """Without augmentation a cached picture is not resized again: normalisation alone."""
    finish, size = after_eval_view(build_transforms(TINY, train=False))
    pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    out = finish(image=pixels)["image"]
    assert size == 64
    torch.testing.assert_close(out, (torch.from_numpy(pixels).permute(2, 0, 1) / 255 - 0.5) / 0.5)


def test_augmenting_a_cached_picture_keeps_left_right_and_colours() -> None:
    pixels = np.zeros((64, 64, 3), dtype=np.uint8)
    pixels[:, :32] = (220, 20, 20)  # red left half
    pixels[:, 32:] = (20, 20, 220)  # blue right half
    transform = build_transforms(TINY, train=True, crop_scale=(0.6, 1.0), color_jitter=0.3)
    finish, _ = after_eval_view(transform)
    out = torch.stack([finish(image=pixels)["image"] for _ in range(16)])
    assert not torch.allclose(out[0], out[1])  # each picture gets its own draw
    left, right = out[:, :, :, :6].mean(dim=(2, 3)), out[:, :, :, -6:].mean(dim=(2, 3))
    assert (left[:, 0] > left[:, 2]).all() and (right[:, 2] > right[:, 0]).all()


def test_the_cache_needs_a_transform_that_starts_with_the_eval_view(root, tiny_tokenizer):
    data = CaptionDataset(load_split(root, "train"), root / "Images", tiny_tokenizer)
    other = ImagePreprocessing(input_size=40, interpolation="bilinear")
    cache = build_image_cache(root / "Images", data.image_names, other, root / ".cache")
    with pytest.raises(ValueError, match=r"holds \(40, 40, 3\) pictures.*makes 224 x 224"):
        data.use_image_cache(cache.filename)  # the default transform is ImageNet's 224 px
    assert data.image_cache_path is None  # refused: pictures still come from their files
    data.transform = A.Compose([A.Normalize(), ToTensorV2()])
    with pytest.raises(ValueError, match="needs a transform from build_transforms"):
        data.use_image_cache(cache.filename)


def test_dataset_serves_cached_pictures_and_pickles_without_them(root, tiny_tokenizer) -> None:
    transform = build_transforms(TINY, train=False)
    data = CaptionDataset(load_split(root, "train"), root / "Images", tiny_tokenizer, transform)
    decoded = data[0]["image"]
    cache = build_image_cache(root / "Images", data.image_names, TINY, root / ".cache")
    data.use_image_cache(cache.filename)
    (root / "Images" / data.image_names[data.pair(0)[1]]).unlink()  # served from the cache now
    item = data[0]["image"]
    assert item.dtype == torch.float32 and item.shape == (3, 64, 64)
    assert torch.equal(item, decoded)
    assert len(pickle.dumps(data)) < cache.nbytes / 4  # workers reopen the file, no copy


# Short side 45 then a 40-px centre crop: a resize applied twice would change the pixels.
RESIZED = ImagePreprocessing(
    input_size=40, mean=(0.5,) * 3, std=(0.5,) * 3, interpolation="bilinear", crop_pct=0.875
)


def decoded_and_cached(root: Path, tokenizer) -> tuple[CaptionDataset, CaptionDataset]:
    """Two datasets with one augmenting transform and seed: from the files, from the cache."""
    transform = build_transforms(RESIZED, train=True, crop_scale=(0.5, 1.0), color_jitter=0.4)
    sets = [
        CaptionDataset(load_split(root, "train"), root / "Images", tokenizer, transform, seed=3)
        for _ in range(2)
    ]
    cache = build_image_cache(root / "Images", sets[1].image_names, RESIZED, root / ".cache")
    sets[1].use_image_cache(cache.filename)
    return sets[0], sets[1]


def test_cached_pictures_get_the_augmentation_of_decoded_ones(root: Path, tiny_tokenizer):
    """Augmentation on: the same seed, epoch and item give the same tensor from either path."""
    decoded, cached = decoded_and_cached(root, tiny_tokenizer)
    plain = CaptionDataset(
        load_split(root, "train"), root / "Images", tiny_tokenizer, build_transforms(RESIZED, False)
    )
    for epoch in (0, 2):
        decoded.set_epoch(epoch)
        cached.set_epoch(epoch)
        for index in range(0, len(decoded), 37):
            expected = decoded[index]["image"]
            assert torch.equal(cached[index]["image"], expected), (epoch, index)
            assert not torch.allclose(expected, plain[index]["image"])  # really augmented


def test_cached_pictures_change_across_epochs_and_replay(root: Path, tiny_tokenizer) -> None:
    _, cached = decoded_and_cached(root, tiny_tokenizer)
    first = cached[5]["image"]
    cached[6]  # another item in between (as in another worker) changes nothing
    assert torch.equal(cached[5]["image"], first)
    cached.set_epoch(1)
    moved = (cached[5]["image"] - first).abs().mean()
    assert moved > 0.05  # a new crop and jitter each epoch: many pixels change
    cached.set_epoch(0)
    assert torch.equal(cached[5]["image"], first)  # a resumed epoch replays its draws


def test_the_image_cache_switch_gives_the_same_training_tensors(root: Path) -> None:
    """``data.image_cache`` true or false, augmentation on: the same training set, exactly."""
    datasets = []
    for cache in ("true", "false"):
        config = load_config(
            "synthetic_tiny",
            [
                f"data.root={root}",
                "data.synthetic_images=0",
                "data.val_split=none",
                f"data.image_cache={cache}",
                "data.crop_scale=[0.5, 1]",
                "data.color_jitter=0.4",
            ],
        )
        torch.manual_seed(0)
        datasets.append(training_data(config, new_model(config, root), root)[0])
    with_cache, without = datasets
    assert with_cache.image_cache_path is not None and without.image_cache_path is None
    for index in (0, 17, 42):
        assert torch.equal(with_cache[index]["image"], without[index]["image"])


def test_training_from_the_cache_learns(synthetic_root: Path, tmp_path: Path) -> None:
    config = load_config(
        "synthetic_tiny",
        [
            f"data.root={synthetic_root}",
            "data.synthetic_images=0",
            f"train.out_dir={tmp_path}",
            "train.batch_size=32",
            "train.epochs=3",
            "head.embed_dim=32",
            "data.pairs=all",
            "data.image_cache=true",
            "data.crop_scale=[0.8, 1]",
            "data.color_jitter=0.2",
        ],
    )
    losses = [record["train_loss"] for record in train(config, progress=False).history]
    assert losses[-1] < 0.8 * losses[0]
