"""Image decoding, transforms, the dataset's two sampling modes, collate, and bad images."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from simpleclip.data import (
    CaptionDataset,
    ImageLoadError,
    ImagePreprocessing,
    build_transforms,
    denormalize,
    load_rgb,
    load_split,
    pad_token_ids,
    to_pixels,
)

SMALL = ImagePreprocessing(input_size=32, mean=(0.5,) * 3, std=(0.5,) * 3, crop_pct=1.0)


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "RGBA", "LA", "I;16"])
def test_load_rgb_converts_every_mode(tmp_path: Path, mode: str) -> None:
    source = Image.new("RGB", (8, 6), (200, 30, 30)).convert(mode)
    path = tmp_path / ("x.tiff" if mode in ("CMYK", "I;16") else "x.png")
    source.save(path)
    image = load_rgb(path)
    assert image.mode == "RGB" and image.size == (8, 6)


def test_transparent_pixels_become_white(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))  # fully transparent black
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    rgba.save(tmp_path / "a.png")
    pixels = np.asarray(load_rgb(tmp_path / "a.png"))
    assert pixels[0, 0].tolist() == [255, 0, 0] and pixels[3, 3].tolist() == [255, 255, 255]


def test_to_pixels_gives_files_images_and_arrays_the_same_rgb_pixels(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (4, 4), (0, 90, 0, 0))  # transparent, hidden colour green
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    rgba.save(tmp_path / "a.png")
    expected = np.asarray(load_rgb(tmp_path / "a.png"))
    assert expected[3, 3].tolist() == [255, 255, 255]
    for picture in (tmp_path / "a.png", str(tmp_path / "a.png"), rgba, np.asarray(rgba)):
        pixels = to_pixels(picture)
        assert pixels.dtype == np.uint8 and np.array_equal(pixels, expected), type(picture)
    grey = to_pixels(np.full((3, 5), 7, dtype=np.uint8))
    assert grey.shape == (3, 5, 3) and (grey == 7).all()
    with pytest.raises(ValueError, match="must be uint8"):
        to_pixels(np.zeros((4, 4, 3), dtype=np.float32))


@pytest.mark.parametrize("content", [b"", b"not an image at all", "truncated"])
def test_bad_image_error_names_the_file(tmp_path: Path, content) -> None:
    path = tmp_path / "broken.jpg"
    if content == "truncated":
        Image.new("RGB", (64, 64), (1, 2, 3)).save(path, quality=95)
        path.write_bytes(path.read_bytes()[:300])
    else:
        path.write_bytes(content)
    with pytest.raises(ImageLoadError, match=r"broken\.jpg"):
        load_rgb(path)


def test_eval_transform_shape_and_normalisation_round_trip() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, size=(40, 48, 3), dtype=np.uint8)
    pre = ImagePreprocessing(input_size=40, mean=(0.2, 0.3, 0.4), std=(0.5, 0.6, 0.7), crop_pct=1)
    tensor = build_transforms(pre, train=False)(image=pixels)["image"]
    assert tensor.shape == (3, 40, 40) and tensor.dtype == torch.float32
    crop = pixels[:, 4:44]  # short side already 40: the centre crop only trims the width
    assert np.abs(denormalize(tensor, pre).astype(int) - crop).max() <= 1


def test_train_transform_keeps_left_right_and_hue() -> None:
    """No flip, no hue shift: a red left half stays red and on the left."""
    pixels = np.zeros((64, 64, 3), dtype=np.uint8)
    pixels[:, :32] = (220, 20, 20)
    pixels[:, 32:] = (20, 20, 220)
    transform = build_transforms(SMALL, train=True)
    for _ in range(20):
        out = denormalize(transform(image=pixels)["image"], SMALL).astype(int)
        left, right = out[:, :8].mean(axis=(0, 1)), out[:, -8:].mean(axis=(0, 1))
        assert left[0] > left[2] and right[2] > right[0]


def make_dataset(root: Path, tokenizer, **kwargs) -> CaptionDataset:
    captions = load_split(root, "train")
    transform = build_transforms(SMALL, train=False)
    return CaptionDataset(captions, root / "Images", tokenizer, transform, **kwargs)


def test_all_pairs_mode_visits_every_caption_once(synthetic_root: Path, tiny_tokenizer) -> None:
    data = make_dataset(synthetic_root, tiny_tokenizer)
    n_images = len(data.image_names)
    assert len(data) == 5 * n_images
    item = data[7]
    assert item["image"].shape == (3, 32, 32)
    decoded = tiny_tokenizer.decode(item["input_ids"], skip_special_tokens=True)
    assert decoded == data.captions[7].lower()
    assert item["image_id"] == data.caption_image[7]


def test_one_per_image_mode_has_no_duplicate_images_and_varies_by_epoch(
    synthetic_root: Path, tiny_tokenizer
) -> None:
    data = make_dataset(synthetic_root, tiny_tokenizer, pairs="one_per_image", seed=1)
    assert len(data) == len(data.image_names)
    batch = data.collate([data[i] for i in range(len(data))])
    assert batch["image_ids"].unique().numel() == len(data)
    epoch0 = list(data._chosen)
    data.set_epoch(1)
    assert data._chosen != epoch0
    data.set_epoch(0)
    assert data._chosen == epoch0  # deterministic: resuming reproduces the epoch
    for image, caption in enumerate(data._chosen):  # each choice is one of its own captions
        assert data.caption_image[caption] == image


def test_tokenized_once_and_collate_pads_to_longest(
    synthetic_root: Path, tiny_tokenizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make_dataset(synthetic_root, tiny_tokenizer)

    def refuse(*args, **kwargs):
        raise AssertionError("captions were tokenized again at batch time")

    monkeypatch.setattr(type(tiny_tokenizer), "__call__", refuse)
    batch = next(iter(DataLoader(data, batch_size=8, collate_fn=data.collate)))
    lengths = [len(data.token_ids[i]) for i in range(8)]
    assert batch["input_ids"].shape == (8, max(lengths))
    assert batch["attention_mask"].sum(1).tolist() == lengths
    pad = batch["input_ids"][batch["attention_mask"] == 0]
    assert (pad == tiny_tokenizer.pad_token_id).all()
    assert batch["images"].shape == (8, 3, 32, 32)


@pytest.mark.parametrize("side", ["right", "left"])
def test_batches_are_padded_as_the_tokenizer_pads_on_its_own_side(
    synthetic_root: Path, tiny_tokenizer, side: str
) -> None:
    """Ids tokenized once and padded per batch equal ``tokenizer(texts, padding=True)``, for a
    tokenizer that pads on the left too (the dataset used to pad every one on the right)."""
    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.padding_side = side
    data = make_dataset(synthetic_root, tokenizer)
    rows = [0, 3, 7, 11, 20]
    expected = tokenizer([data.captions[i] for i in rows], padding=True, return_tensors="pt")
    assert expected["attention_mask"].sum(1).unique().numel() > 1  # the lengths differ
    for batch in (data.collate_text(rows), data.collate([data[i] for i in rows])):
        assert torch.equal(batch["input_ids"], expected["input_ids"])
        assert torch.equal(batch["attention_mask"], expected["attention_mask"])
    real_at_the_end = bool(batch["attention_mask"][:, -1].all())
    assert real_at_the_end == (side == "left")


def test_pad_token_ids_refuses_an_unknown_side() -> None:
    with pytest.raises(ValueError, match="padding_side"):
        pad_token_ids([[1, 2], [3]], pad_token_id=0, padding_side="middle")


def test_augmentations_are_reproducible_per_epoch_and_item(
    synthetic_root: Path, tiny_tokenizer
) -> None:
    captions = load_split(synthetic_root, "train")
    train_tf = build_transforms(SMALL, train=True)
    data = CaptionDataset(captions, synthetic_root / "Images", tiny_tokenizer, train_tf, seed=3)
    first = data[4]["image"]
    data[5]  # other items in between (as in another worker) change nothing
    torch.testing.assert_close(data[4]["image"], first)
    data.set_epoch(1)
    assert not torch.allclose(data[4]["image"], first)  # a new draw each epoch
    data.set_epoch(0)
    torch.testing.assert_close(data[4]["image"], first)


def test_identical_captions_share_a_text_id(synthetic_root: Path, tiny_tokenizer) -> None:
    data = make_dataset(synthetic_root, tiny_tokenizer)
    texts = [c.lower().strip() for c in data.captions]
    for a, b in [(0, 1), (2, 2), *[(i, j) for i in range(30) for j in range(30)]]:
        assert (texts[a] == texts[b]) == (data.caption_text_id[a] == data.caption_text_id[b])


@pytest.fixture
def damaged_root(synthetic_root: Path, tmp_path: Path) -> Path:
    root = tmp_path / "damaged"
    shutil.copytree(synthetic_root, root)
    names = load_split(root, "train")["image"].unique()
    (root / "Images" / names[0]).write_bytes(b"garbage")
    (root / "Images" / names[1]).unlink()
    return root


def test_corrupt_image_raises_clear_error_even_in_a_worker(damaged_root: Path, tiny_tokenizer):
    with pytest.warns(UserWarning, match="5 captions of 1 images"):
        captions = load_split(damaged_root, "train")  # drops the deleted image
    data = CaptionDataset(captions, damaged_root / "Images", tiny_tokenizer)
    bad = data.image_names[0]
    loader = DataLoader(data, batch_size=4, num_workers=1, collate_fn=data.collate)
    with pytest.raises(ImageLoadError, match=bad):
        next(iter(loader))


def test_missing_image_is_refused_up_front(damaged_root: Path, synthetic_root, tiny_tokenizer):
    captions = load_split(synthetic_root, "train")  # the caption table of the intact set
    with pytest.raises(FileNotFoundError, match="1 images are missing"):
        CaptionDataset(captions, damaged_root / "Images", tiny_tokenizer)


def test_skip_bad_images_drops_and_counts(damaged_root: Path, synthetic_root, tiny_tokenizer):
    captions = load_split(synthetic_root, "train")
    with pytest.warns(UserWarning, match="Skipped 2 missing or unreadable images") as record:
        data = CaptionDataset(
            captions, damaged_root / "Images", tiny_tokenizer, skip_bad_images=True
        )
    garbage, deleted = captions["image"].unique()[:2]
    assert garbage in str(record[0].message) and deleted in str(record[0].message)
    assert len(data.image_names) == captions["image"].nunique() - 2
    batch = data.collate([data[i] for i in range(len(data))])  # every remaining image decodes
    assert batch["images"].shape[0] == len(data)


def test_real_photos_load_through_the_dataset(
    shared_flickr: Path, tiny_tokenizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("simpleclip.data.captions._REPORTED", set())  # said once per process
    with pytest.warns(UserWarning, match="have no file"):
        captions = load_split(shared_flickr, "test")
    data = CaptionDataset(captions, shared_flickr / "Images", tiny_tokenizer)
    assert len(data.image_names) == 125 and len(data) == 625
    assert data[0]["image"].shape == (3, 224, 224)


def test_splits_join_with_a_plus(synthetic_root: Path) -> None:
    train, dev = (set(load_split(synthetic_root, s)["image"]) for s in ("train", "dev"))
    joined = load_split(synthetic_root, "train+dev")
    assert set(joined["image"]) == train | dev and not train & dev
    assert len(joined) == 5 * len(train | dev)  # every caption of both
    with pytest.raises(ValueError, match=r"join them with '\+'"):
        load_split(synthetic_root, "train+tset")


def test_a_16_bit_picture_keeps_its_tones(tmp_path: Path) -> None:
    """Probe 7f: PIL's convert("RGB") clips 16-bit grey at 255, so a 0..65535 ramp came out
    98% white; each value must map to its top 8 bits."""
    ramp = np.linspace(0, 65535, 256, dtype=np.uint16).reshape(16, 16)
    Image.fromarray(ramp).save(tmp_path / "grey16.png")  # mode I;16
    pixels = np.asarray(load_rgb(tmp_path / "grey16.png"))
    assert pixels.shape == (16, 16, 3)
    np.testing.assert_array_equal(pixels[..., 0], (ramp >> 8).astype(np.uint8))
    assert (pixels == 255).mean() < 0.01
