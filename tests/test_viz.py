"""Every picture renders to a non-blank PNG of the size it promises; the 2-D projection is PCA."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")  # no display in tests

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from PIL import Image

from simpleclip.viz import (
    plot_embedding_map,
    plot_image_to_texts,
    plot_similarity_matrix,
    plot_text_to_images,
    plot_training_curves,
    project_2d,
    save_figure,
)

DPI = 40  # small pictures: fast tests


def pictures(n: int, size: int = 32) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (size, size + 8, 3), dtype=np.uint8) for _ in range(n)]


def check_png(fig: Figure, path: Path, inches: tuple[float, float]) -> None:
    """The canvas is ``inches`` x DPI, and so is the PNG; it is not blank."""
    np.testing.assert_allclose(fig.get_size_inches(), inches)
    fig.set_dpi(DPI)
    width, height = round(inches[0] * DPI), round(inches[1] * DPI)
    assert fig.canvas.get_width_height() == (width, height)
    fig.savefig(path, dpi=DPI)  # no bbox_inches="tight": the size is exact
    plt.close(fig)
    with Image.open(path) as png:
        assert png.size == (width, height)
        assert np.asarray(png.convert("L")).std() > 5, "the picture is blank"


def test_similarity_matrix(tmp_path: Path) -> None:
    n = 4
    similarity = torch.eye(n) * 0.8 + 0.1
    captions = [f"caption number {i}" for i in range(n)]
    fig = plot_similarity_matrix(pictures(n), captions, similarity, logit_scale=np.log(1 / 0.07))
    assert len(fig.axes) == 2  # cosines, then the softmax the loss sees
    cell = 0.9  # inches per cell for n <= 10
    check_png(fig, tmp_path / "sim.png", (2 * (n * cell + 1.5) + 3, n * cell + 2.5))


def test_training_curves(tmp_path: Path) -> None:
    val = {d: {"R@1": 0.2, "R@5": 0.5, "R@10": 0.7} for d in ("t2i", "i2t")}
    history = [
        {"epoch": e, "step_losses": [3.0 - e, 2.9 - e], "val": val, "temperature": 0.07 - e / 100}
        for e in (1, 2, 3)
    ]
    fig = plot_training_curves(history)
    assert [ax.get_title() for ax in fig.axes] == [
        "training loss",
        "dev recall",
        "learned temperature",
    ]
    assert len(fig.axes[0].lines[0].get_xdata()) == 6  # every step of every epoch
    check_png(fig, tmp_path / "curves.png", (15, 3.8))


def test_text_to_images_grid_marks_true_matches(tmp_path: Path) -> None:
    scores = [0.9, 0.8, 0.7, 0.5, 0.4]
    labels = [f"{i}.jpg" for i in range(5)]
    correct = [False, True, False, False, False]
    fig = plot_text_to_images("a big red circle", pictures(5), scores, labels, correct, cell=2.0)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 5 and len(fig.axes) == 6  # a 3 x 2 grid, the last cell empty
    assert shown[0].get_title().startswith("#1  cos 0.90") and "0.jpg" in shown[0].get_title()
    assert shown[1].spines["left"].get_edgecolor() == to_rgba("tab:green")
    assert shown[0].spines["left"].get_edgecolor() == to_rgba("tab:red")
    check_png(fig, tmp_path / "t2i.png", (3 * 2.0, 2 * 2.0 + 0.7))


def test_image_to_texts_bars(tmp_path: Path) -> None:
    captions = ["a red circle", "a blue square at the top of the picture, quite big", "a star"]
    fig = plot_image_to_texts(pictures(1)[0], captions, [0.6, 0.3, -0.1], correct=[True, 0, 0])
    bars = fig.axes[1].patches
    assert [round(b.get_width(), 2) for b in bars] == [0.6, 0.3, -0.1]
    assert bars[0].get_facecolor() == to_rgba("tab:green")
    check_png(fig, tmp_path / "i2t.png", (10, 2.5))


def test_embedding_map(tmp_path: Path) -> None:
    torch.manual_seed(0)
    image_embeds = F.normalize(torch.randn(6, 16), dim=1)
    caption_image = torch.tensor([0, 0, 1, 2, 3, 4, 5, 5])
    text_embeds = F.normalize(image_embeds[caption_image] + 0.3 * torch.randn(8, 16), dim=1)
    captions = [f"caption {i}" for i in range(8)]
    fig = plot_embedding_map(image_embeds, text_embeds, caption_image, pictures(6), captions)
    ax = fig.axes[0]
    assert len(ax.lines) == 8  # one link per caption to its image
    assert len(ax.texts) == 8
    check_png(fig, tmp_path / "map.png", (9, 8))


def test_pca_matches_an_eigendecomposition_of_the_covariance() -> None:
    torch.manual_seed(0)
    points = torch.randn(50, 5) * torch.tensor([5.0, 3.0, 1.0, 0.5, 0.1]) + 2.0
    projected = torch.from_numpy(project_2d(points))
    centred = points - points.mean(0)
    _, vectors = torch.linalg.eigh(centred.T @ centred)  # ascending eigenvalues
    reference = centred @ vectors[:, [-1, -2]]  # the two largest
    for axis in range(2):  # an axis is only defined up to its sign
        sign = torch.sign((projected[:, axis] * reference[:, axis]).sum())
        torch.testing.assert_close(projected[:, axis], sign * reference[:, axis])


def test_unknown_or_unavailable_projection_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="pca"):
        project_2d(torch.randn(5, 3), method="umap")
    try:
        import sklearn  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="scikit-learn"):
            project_2d(torch.randn(5, 3), method="tsne")
    else:
        assert project_2d(torch.randn(12, 3), method="tsne").shape == (12, 2)


def test_save_figure_writes_a_png_and_closes_the_figure(tmp_path: Path) -> None:
    fig = plot_text_to_images("a query", pictures(2), [0.5, 0.4])
    path = save_figure(fig, tmp_path / "sub" / "grid.png", dpi=DPI)
    assert not plt.fignum_exists(fig.number)
    with Image.open(path) as png:
        width, height = png.size
    # bbox_inches="tight" trims the empty margins, then pads 0.1 inch on each side.
    pad = 2 * 0.1 * DPI + 1
    assert 0.5 * 2 * 2.2 * DPI < width <= 2 * 2.2 * DPI + pad and 0 < height <= 2.9 * DPI + pad
