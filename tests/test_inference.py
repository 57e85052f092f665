"""Inference: a plain no-grad forward's embeddings, in eval mode, whatever the caller's mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from simpleclip.data import CaptionDataset, build_transforms, load_split
from simpleclip.inference import (
    caption_batches,
    embed_images,
    embed_pictures,
    embed_texts,
    encode_batches,
    eval_mode,
)
from simpleclip.model import CLIPModel, build_model


@pytest.fixture
def model(tiny_config, synthetic_root: Path, tiny_tokenizer) -> CLIPModel:
    """The tiny model with heavy dropout in its heads, left in train mode."""
    torch.manual_seed(0)
    config = tiny_config(synthetic_root, Path("unused"), "head.kind=mlp", "head.dropout=0.5")
    return build_model(config, tokenizer=tiny_tokenizer).train()


@pytest.fixture
def dataset(model: CLIPModel, synthetic_root: Path) -> CaptionDataset:
    return CaptionDataset(
        load_split(synthetic_root, "test"),
        synthetic_root / "Images",
        model.tokenizer,
        build_transforms(model.preprocessing, train=False),
    )


def test_image_embeddings_equal_a_plain_forward_in_eval_mode(model, dataset) -> None:
    pixels = torch.stack([dataset.load_image(i) for i in range(7)])  # (7, 3, S, S)
    with torch.no_grad():
        reference = model.eval().encode_image(pixels)
        features = model.image_encoder(pixels)
    model.train()
    for images in (pixels, dataset.images(), pixels.split(3)):  # tensor, dataset, batches
        got = embed_images(model, images, batch_size=3)
        torch.testing.assert_close(got[:7], reference, atol=1e-5, rtol=1e-5)
    raw = embed_images(model, pixels, batch_size=4, features=True)
    torch.testing.assert_close(raw, features, atol=1e-5, rtol=1e-5)
    assert got.dtype == torch.float32 and got.device.type == "cpu" and not got.requires_grad


def test_text_embeddings_equal_a_plain_forward_in_eval_mode(model, dataset) -> None:
    sentences = ["a red circle", "a big blue square on the left", "a star"]
    with torch.no_grad():
        reference = model.eval().encode_text(**model.tokenize(sentences))
        tokens = dataset.collate_text(range(len(dataset.captions)))
        own = model.encode_text(**tokens)
        features = model.text_encoder(**tokens)
    model.train()
    torch.testing.assert_close(
        embed_texts(model, sentences, batch_size=2), reference, atol=1e-5, rtol=1e-5
    )
    batches = caption_batches(dataset, batch_size=4)  # the dataset's own token ids
    torch.testing.assert_close(embed_texts(model, batches), own, atol=1e-5, rtol=1e-5)
    raw = embed_texts(model, caption_batches(dataset, batch_size=4), features=True)
    torch.testing.assert_close(raw, features, atol=1e-5, rtol=1e-5)


def test_dropout_is_off_while_embedding_and_the_mode_comes_back(model, dataset) -> None:
    pixels = torch.stack([dataset.load_image(i) for i in range(4)])
    with torch.no_grad():  # the heads' dropout really is active in train mode
        assert not torch.allclose(model.encode_image(pixels), model.encode_image(pixels))
    first, second = embed_images(model, pixels), embed_images(model, pixels)
    torch.testing.assert_close(first, second, atol=0, rtol=0)
    texts = ["a red circle", "a green star"]
    torch.testing.assert_close(embed_texts(model, texts), embed_texts(model, texts), atol=0, rtol=0)
    torch.testing.assert_close(embed_texts(model, texts[0]), embed_texts(model, texts[:1]))
    assert model.training and model.image_head.training and model.text_head.training


def test_encoding_leaves_the_random_number_generator_alone(model, dataset) -> None:
    """A DataLoader draws its seed from the global RNG: encoding a split (feature cache, dev
    evaluation) must not change the dropout masks training draws next."""
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    embed_images(model, dataset.images(), batch_size=4)  # a DataLoader over a dataset
    embed_texts(model, caption_batches(dataset, batch_size=4))
    torch.testing.assert_close(torch.rand(4), expected, atol=0, rtol=0)


def test_eval_mode_restores_every_sub_module_even_after_an_error() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5), nn.BatchNorm1d(2)).train()
    model[2].eval()  # e.g. a frozen backbone kept in eval mode inside a training model
    with pytest.raises(RuntimeError), eval_mode(model):
        assert not any(module.training for module in model.modules())
        raise RuntimeError("a failing batch")
    assert [module.training for module in model.modules()] == [True, True, True, False]


def test_encode_batches_accepts_mappings_and_nothing() -> None:
    model = nn.Linear(3, 2)
    batches = [{"x": torch.randn(2, 3)}, {"x": torch.randn(1, 3)}]
    out = encode_batches(model, lambda x: model(x), batches)
    with torch.no_grad():
        torch.testing.assert_close(out, model(torch.cat([b["x"] for b in batches])))
    assert encode_batches(model, model, []).shape == (0, 0)


def test_embed_pictures_encodes_the_readable_ones_and_reports_the_others(
    model, dataset, tmp_path: Path
) -> None:
    """Files, images and arrays alike; a broken file is reported by name, never dropped silently."""
    from simpleclip.data import load_rgb

    files = [dataset.images_dir / name for name in dataset.image_names[:3]]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a picture")
    picture = load_rgb(files[1])
    pictures = [
        files[0],
        broken,
        picture,
        np.asarray(picture),
        str(files[2]),
        tmp_path / "gone.png",
    ]
    embeds, reasons = embed_pictures(model, pictures, batch_size=4)
    assert [bool(r) for r in reasons] == [False, True, False, False, False, True]
    assert reasons[1].startswith("cannot decode") and "broken.jpg" in reasons[1]
    assert "gone.png" in reasons[5] and str(tmp_path) not in reasons[1] + reasons[5]
    assert model.training  # the caller's mode comes back
    pixels = torch.stack([dataset.load_image(i) for i in (0, 1, 1, 2)])
    with torch.no_grad():
        reference = model.eval().encode_image(pixels)
    torch.testing.assert_close(embeds, reference, atol=1e-5, rtol=1e-5)
    empty, none = embed_pictures(model, [])
    assert empty.shape == (0, 0) and none == []
