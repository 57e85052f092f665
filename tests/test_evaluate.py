"""Recall@K on hand-made similarity matrices with known answers, and its invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from simpleclip.data import load_rgb
from simpleclip.evaluate import (
    Embeddings,
    format_recall_table,
    recall_from_ranks,
    retrieval_metrics,
    retrieval_ranks,
)


def test_ranks_on_a_hand_made_example_with_five_captions_per_image() -> None:
    # 2 images as unit vectors along x and y; 10 captions, 5 per image.
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    angle = torch.tensor([0.1, 0.2, 1.5, 0.3, 0.4, 1.4, 1.3, 0.2, 1.2, 1.1])  # radians from x
    texts = torch.stack([angle.cos(), angle.sin()], dim=1)
    owner = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    t2i, i2t = retrieval_ranks(images, texts, owner)
    # A caption is nearer to x than to y when its angle < pi/4 (0.785).
    assert t2i.tolist() == [1, 1, 2, 1, 1, 1, 1, 2, 1, 1]
    # Image 0's best caption is caption 0 (angle 0.1): rank 1. Image 1 (y axis): captions sorted
    # by closeness to y are angles 1.5 (owner 0), 1.4 (owner 1) -> its best is rank 2.
    assert i2t.tolist() == [1, 2]


def test_ties_count_against_the_model() -> None:
    collapsed = torch.ones(4, 3) / 3**0.5  # every embedding identical
    t2i, i2t = retrieval_ranks(collapsed, collapsed, torch.arange(4))
    assert t2i.tolist() == [4, 4, 4, 4] and i2t.tolist() == [4, 4, 4, 4]
    metrics = recall_from_ranks(t2i, ks=(1,))
    assert metrics["R@1"] == 0.0


def test_perfect_embeddings_score_one() -> None:
    images = F.normalize(torch.randn(50, 16), dim=1)
    owner = torch.arange(50).repeat_interleave(5)
    metrics = retrieval_metrics(Embeddings(images, images[owner], owner))
    for direction in ("t2i", "i2t"):
        assert metrics[direction]["R@1"] == 1.0 and metrics[direction]["median_rank"] == 1
    assert metrics["n_images"] == 50 and metrics["n_captions"] == 250


def test_random_embeddings_give_about_k_over_n() -> None:
    torch.manual_seed(0)
    n = 400
    images, texts = F.normalize(torch.randn(n, 64), dim=1), F.normalize(torch.randn(n, 64), dim=1)
    metrics = retrieval_metrics(Embeddings(images, texts, torch.arange(n)))
    for k in (1, 5, 10):
        assert metrics["t2i"][f"R@{k}"] == pytest.approx(k / n, abs=3 * (k / n) ** 0.5 / n**0.5)
    assert metrics["t2i"]["mean_rank"] == pytest.approx((n + 1) / 2, rel=0.1)


def test_chunked_and_unchunked_agree() -> None:
    torch.manual_seed(1)
    images = F.normalize(torch.randn(37, 8), dim=1)
    owner = torch.randint(0, 37, (170,))
    texts = F.normalize(images[owner] + 0.8 * torch.randn(170, 8), dim=1)
    whole = retrieval_ranks(images, texts, owner, chunk_size=10_000)
    chunked = retrieval_ranks(images, texts, owner, chunk_size=7)
    assert torch.equal(whole[0], chunked[0]) and torch.equal(whole[1], chunked[1])


def test_table_shows_percentages() -> None:
    images = torch.eye(3)
    table = format_recall_table(retrieval_metrics(Embeddings(images, images, torch.arange(3))))
    assert "text -> image" in table and "100.0" in table and "(3 images, 3 captions" in table


def test_eval_split_reads_the_split_the_way_the_model_expects(
    tiny_config, synthetic_root, tmp_path, tiny_tokenizer
) -> None:
    from simpleclip.data import build_transforms, load_split
    from simpleclip.evaluate import compute_embeddings, eval_split
    from simpleclip.model import build_model

    config = tiny_config(synthetic_root, tmp_path / "run", "data.max_length=6")
    model = build_model(config, tokenizer=tiny_tokenizer).eval()
    test = eval_split(model, synthetic_root, "test")
    assert test.image_names == list(dict.fromkeys(load_split(synthetic_root, "test")["image"]))
    assert max(len(ids) for ids in test.token_ids) == 6  # the model's own caption length
    tokens = model.tokenize(test.captions[:3])
    rows = zip(tokens["input_ids"], tokens["attention_mask"], strict=True)
    assert test.token_ids[:3] == [ids[mask == 1].tolist() for ids, mask in rows]
    eval_tf = build_transforms(model.preprocessing, train=False)
    direct = eval_tf(image=np.asarray(load_rgb(test.images_dir / test.image_names[0])))["image"]
    torch.testing.assert_close(test.load_image(0), direct)
    every = eval_split(model, synthetic_root, "all")
    assert len(every.image_names) == 120 and set(test.image_names) < set(every.image_names)
    assert len(compute_embeddings(model, test).image_embeds) == len(test.image_names)
    first = eval_split(model, synthetic_root, "test", first_n_images=3)
    assert first.image_names == test.image_names[:3]  # the split's first pictures, in order
    own = [c for c, i in zip(test.captions, test.caption_image, strict=True) if i < 3]
    assert first.captions == own and len(own) > 3  # with every caption of each
    torch.testing.assert_close(first.load_image(2), test.load_image(2))


def test_model_scale_is_the_capped_exp_of_logit_scale(tiny_config, tmp_path, tiny_tokenizer):
    from simpleclip.loss import contrastive_logits
    from simpleclip.model import build_model

    model = build_model(tiny_config(tmp_path, tmp_path / "run"), tokenizer=tiny_tokenizer)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(20.0))
    assert model.scale.item() == pytest.approx(20.0)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(500.0))  # past the cap: 100, as the loss uses it
    assert model.scale.item() == pytest.approx(100.0)
    unit = F.normalize(torch.randn(3, 4), dim=1)
    logits, _ = contrastive_logits(unit, unit, model.logit_scale)
    torch.testing.assert_close(logits, model.scale * unit @ unit.T)
