"""Evaluation pictures: the worst retrievals are found, and every picture is written, no wider
than a notebook column."""

from __future__ import annotations

import torch
from PIL import Image

from simpleclip.data import CaptionDataset, build_transforms, load_split
from simpleclip.evaluate import Embeddings, compute_embeddings
from simpleclip.evaluate.figures import draw_evaluation_figures, worst_captions
from simpleclip.model import build_model


def test_worst_captions_are_those_whose_picture_ranks_last() -> None:
    similarity = torch.tensor(
        [  # [caption, picture]
            [0.9, 0.1, 0.3],  # rank 1
            [0.8, 0.5, 0.7],  # its picture (1) ranks 3
            [0.1, 0.6, 0.4],  # its picture (2) ranks 2
        ]
    )
    embeddings = Embeddings(torch.eye(3), similarity, torch.arange(3))
    assert worst_captions(embeddings, count=2) == [(1, 3), (2, 2)]


def test_evaluation_figures_are_written(tiny_config, synthetic_root, tmp_path, tiny_tokenizer):
    torch.manual_seed(0)
    config = tiny_config(synthetic_root, tmp_path / "run")
    model = build_model(config, tokenizer=tiny_tokenizer).eval()
    dataset = CaptionDataset(
        load_split(synthetic_root, "test"),
        synthetic_root / "Images",
        tiny_tokenizer,
        build_transforms(model.image_encoder.preprocessing, train=False),
    )
    paths = draw_evaluation_figures(model, dataset, compute_embeddings(model, dataset), tmp_path)
    names = sorted(p.name for p in paths)
    assert names == [
        "failure_1.png",
        "failure_2.png",
        "failure_3.png",
        "image_to_texts.png",
        "similarity_matrix.png",
        "text_to_images.png",
    ]
    for path in paths:
        with Image.open(path) as picture:
            assert 400 < picture.width <= 1100 and picture.height > 200  # a notebook column


def test_a_failure_shows_its_own_picture_with_its_rank(monkeypatch, tmp_path) -> None:
    import simpleclip.evaluate.figures as figures

    drawn = {}
    monkeypatch.setattr(figures, "picture", lambda dataset, model, i: i)
    monkeypatch.setattr(figures, "save_figure", lambda figure, path: path)
    monkeypatch.setattr(
        figures,
        "plot_text_to_images",
        lambda query, images, scores, **kw: drawn.update(images=images, **kw),
    )
    similarity = torch.tensor([[0.1, 0.9, 0.8, 0.7, 0.6]])  # caption 0's picture (0) ranks 5
    embeddings = Embeddings(torch.eye(5), similarity, torch.tensor([0]))
    dataset = type("D", (), {"captions": ["q"], "image_names": list("abcde")})()
    figures.draw_text_query(None, dataset, embeddings, 0, tmp_path / "f.png", top_k=3)
    assert drawn["images"] == [1, 2, 0]  # the top 2, then its own picture
    assert drawn["ranks"] == [1, 2, 5]
    assert drawn["correct"] == [False, False, True]
