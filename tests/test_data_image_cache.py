"""The pre-resized image cache and batched augmentation."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from simpleclip.config import load_config
from simpleclip.data import CaptionDataset, ImagePreprocessing, build_transforms, load_rgb
from simpleclip.data.image_cache import BatchAugment, build_image_cache
from simpleclip.data.transforms import denormalize
from simpleclip.train import train

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


def test_eval_batch_transform_is_plain_normalisation() -> None:
    pixels = torch.randint(0, 256, (2, 8, 8, 3), dtype=torch.uint8)
    out = BatchAugment(TINY, train=False)(pixels)
    torch.testing.assert_close(out, (pixels.permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5)


def test_train_batch_augment_keeps_left_right_and_colours() -> None:
    pixels = torch.zeros(16, 64, 64, 3, dtype=torch.uint8)
    pixels[:, :, :32] = torch.tensor([220, 20, 20], dtype=torch.uint8)  # red left half
    pixels[:, :, 32:] = torch.tensor([20, 20, 220], dtype=torch.uint8)  # blue right half
    out = BatchAugment(TINY, train=True, crop_scale=(0.6, 1.0), color_jitter=0.3)(pixels)
    assert out.shape == (16, 3, 64, 64)
    assert not torch.allclose(out[0], out[1])  # each picture gets its own draw
    left, right = out[:, :, :, :6].mean(dim=(2, 3)), out[:, :, :, -6:].mean(dim=(2, 3))
    assert (left[:, 0] > left[:, 2]).all() and (right[:, 2] > right[:, 0]).all()


def test_dataset_serves_cached_pixels_and_pickles_without_them(root, tiny_tokenizer) -> None:
    from simpleclip.data import load_split

    data = CaptionDataset(load_split(root, "train"), root / "Images", tiny_tokenizer)
    cache = build_image_cache(root / "Images", data.image_names, TINY, root / ".cache")
    data.use_image_cache(cache.filename)
    item = data[0]["image"]
    assert item.dtype == torch.uint8 and item.shape == (64, 64, 3)
    assert len(pickle.dumps(data)) < cache.nbytes / 4  # workers reopen the file, no copy


def test_cached_batches_equal_the_decoded_ones(root: Path, tiny_tokenizer) -> None:
    """Without augmentation, cache + BatchAugment gives the per-item pipeline's tensors."""
    from simpleclip.data import load_split

    transform = build_transforms(TINY, train=True, crop_scale=(1.0, 1.0), color_jitter=0.0)
    decoded = CaptionDataset(load_split(root, "train"), root / "Images", tiny_tokenizer, transform)
    cached = CaptionDataset(load_split(root, "train"), root / "Images", tiny_tokenizer, transform)
    cache = build_image_cache(root / "Images", cached.image_names, TINY, root / ".cache")
    cached.use_image_cache(cache.filename)
    items = range(0, len(decoded), 7)
    finish = BatchAugment(TINY, train=True, crop_scale=(1.0, 1.0), color_jitter=0.0)
    expected = decoded.collate([decoded[i] for i in items])["images"]
    actual = finish(cached.collate([cached[i] for i in items])["images"])
    torch.testing.assert_close(actual, expected, atol=1e-6, rtol=0)


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
