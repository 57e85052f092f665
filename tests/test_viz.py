"""Every picture shows the data it was given (pixels, values, colour limits) and renders to a
non-blank PNG; the 2-D projection is PCA."""

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
from matplotlib.patches import Rectangle
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


def check_png(fig: Figure, path: Path) -> None:
    """The figure saves to a PNG that is not blank."""
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    with Image.open(path) as png:
        assert png.format == "PNG"
        assert np.asarray(png.convert("L")).std() > 5, "the picture is blank"


def test_similarity_matrix_shows_the_cosines_and_the_softmax_the_loss_sees(
    tmp_path: Path,
) -> None:
    n, scale = 4, np.log(1 / 0.07)
    similarity = torch.eye(n) * 0.8 + 0.1 + 0.05 * torch.arange(n).float()  # rows differ
    captions = [f"caption number {i}" for i in range(n)]
    fig = plot_similarity_matrix(pictures(n), captions, similarity, logit_scale=scale)
    thumbs, cosines, softmax = fig.axes
    titles = [t.get_text() for t in fig.texts]
    assert titles[0].startswith("cosine similarity") and titles[1].startswith("softmax over")
    np.testing.assert_allclose(cosines.images[0].get_array(), similarity.numpy())
    assert cosines.images[0].get_clim() == (-1, 1) and softmax.images[0].get_clim() == (0, 1)
    logits = np.exp(scale) * similarity.double().numpy()
    reference = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)  # row-wise softmax
    np.testing.assert_allclose(softmax.images[0].get_array(), reference, rtol=1e-5)
    assert [t.get_text() for t in cosines.get_yticklabels()] == captions
    outlined = [p for p in cosines.patches if isinstance(p, Rectangle) and not p.get_fill()]
    assert sorted(p.get_xy() for p in outlined) == [(i - 0.5, i - 0.5) for i in range(n)]
    assert len(cosines.texts) == n * n  # every value written in its cell
    for thumb, image in zip(thumbs.images, pictures(n), strict=True):  # pixels untouched
        np.testing.assert_array_equal(thumb.get_array(), image)
    assert len(plot_similarity_matrix(pictures(n), captions, similarity).axes) == 2
    check_png(fig, tmp_path / "sim.png")


LONG_CAPTIONS = [  # as long as Flickr8k's long ones: they must be wrapped and shortened
    "A little girl in a pink dress and white tights climbs the wooden stairs of a playhouse .",
    "Two large brown dogs with black collars are running through the tall green grass",
    "A man in a blue jacket and a black helmet rides his bicycle down a steep rocky hill .",
]


@pytest.mark.parametrize("n", [8, 12])
def test_similarity_matrix_fits_a_notebook_column_with_readable_thumbnails(
    n: int, tmp_path: Path
) -> None:
    """Stored as the notebook stores it (100 dpi, tight box): at most 1,100 px wide, each
    thumbnail at least 64 px and centred over its column, every text at least 8 pt."""
    captions = [LONG_CAPTIONS[i % 3] for i in range(n)]
    similarity = torch.rand(n, n) * 2 - 1
    fig = plot_similarity_matrix(pictures(n, 224), captions, similarity, logit_scale=4.6)
    fig.savefig(tmp_path / "sim.png", dpi=100, bbox_inches="tight")
    with Image.open(tmp_path / "sim.png") as png:
        assert png.width <= 1100
    thumbs, cosines, _ = fig.axes
    renderer = fig.canvas.get_renderer()  # the figure is at 100 dpi after savefig
    for col, thumb in enumerate(thumbs.images):
        box = thumb.get_window_extent(renderer)
        assert box.width >= 64 and box.height >= 64, (col, box.width, box.height)
        centre = cosines.transData.transform((col, 0))[0]
        assert abs((box.x0 + box.x1) / 2 - centre) < 1
    texts = [*cosines.texts, *cosines.get_yticklabels(), *fig.texts]
    assert min(t.get_fontsize() for t in texts) >= 8
    for label in cosines.get_yticklabels():  # wrapped, shortened, no longer than the caption
        assert label.get_text().count("\n") <= 2 and len(label.get_text()) <= 90
    plt.close(fig)


def test_training_curves_plot_every_step_every_epoch_and_the_temperature(
    tmp_path: Path,
) -> None:
    val = {d: {"R@1": 0.2, "R@5": 0.5, "R@10": 0.7} for d in ("t2i", "i2t")}
    history = [
        {"epoch": e, "step_losses": [3.0 - e, 2.9 - e], "val": val, "temperature": 0.07 - e / 100}
        for e in (1, 2, 3)
    ]
    fig = plot_training_curves(history)
    loss_ax, recall_ax, temp_ax = fig.axes
    assert [ax.get_title() for ax in fig.axes] == [
        "training loss",
        "dev recall",
        "learned temperature",
    ]
    np.testing.assert_allclose(loss_ax.lines[0].get_ydata(), [2.0, 1.9, 1.0, 0.9, 0.0, -0.1])
    assert len(recall_ax.lines) == 6  # R@1, 5, 10 in both directions
    assert sorted(line.get_ydata()[0] for line in recall_ax.lines) == [20, 20, 50, 50, 70, 70]
    np.testing.assert_allclose(temp_ax.lines[0].get_ydata(), [0.06, 0.05, 0.04])
    check_png(fig, tmp_path / "curves.png")


def test_text_to_images_grid_marks_true_matches(tmp_path: Path) -> None:
    scores = [0.9, 0.8, 0.7, 0.5, 0.4]
    labels = [f"{i}.jpg" for i in range(5)]
    correct = [False, True, False, False, False]
    images = pictures(5)
    fig = plot_text_to_images("a big red circle", images, scores, labels, correct, cell=2.0)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 5 and len(fig.axes) == 6  # a 3 x 2 grid, the last cell empty
    for ax, image in zip(shown, images, strict=True):  # best first, pixels untouched
        np.testing.assert_array_equal(ax.images[0].get_array(), image)
    assert shown[0].get_title().startswith("#1  cos 0.90") and "0.jpg" in shown[0].get_title()
    assert shown[1].spines["left"].get_edgecolor() == to_rgba("tab:green")
    assert shown[0].spines["left"].get_edgecolor() == to_rgba("tab:red")
    assert "a big red circle" in fig.get_suptitle()
    check_png(fig, tmp_path / "t2i.png")


def test_image_to_texts_bars(tmp_path: Path) -> None:
    captions = ["a red circle", "a blue square at the top of the picture, quite big", "a star"]
    image = pictures(1)[0]
    fig = plot_image_to_texts(image, captions, [0.6, 0.3, -0.1], correct=[True, 0, 0])
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), image)
    bars = fig.axes[1].patches
    assert [round(b.get_width(), 2) for b in bars] == [0.6, 0.3, -0.1]
    assert bars[0].get_facecolor() == to_rgba("tab:green")
    assert bars[1].get_facecolor() == to_rgba("tab:red")
    labels = [t.get_text() for t in fig.axes[1].get_yticklabels()]
    assert labels[0] == "#1 a red circle" and labels[2] == "#3 a star"
    assert fig.axes[1].yaxis_inverted()  # the best caption on top
    check_png(fig, tmp_path / "i2t.png")


def test_embedding_map(tmp_path: Path) -> None:
    torch.manual_seed(0)
    image_embeds = F.normalize(torch.randn(6, 16), dim=1)
    caption_image = torch.tensor([0, 0, 1, 2, 3, 4, 5, 5])
    text_embeds = F.normalize(image_embeds[caption_image] + 0.3 * torch.randn(8, 16), dim=1)
    fig = plot_embedding_map(image_embeds, text_embeds, caption_image, pictures(6))
    ax = fig.axes[0]
    points = project_2d(torch.cat([image_embeds, text_embeds]))
    image_xy, text_xy = points[:6], points[6:]
    assert len(ax.lines) == 8  # one link per caption to its image
    for line, start, owner in zip(ax.lines, text_xy, caption_image, strict=True):
        np.testing.assert_allclose(line.get_xydata(), [start, image_xy[owner]], rtol=1e-5)
    np.testing.assert_allclose(ax.collections[0].get_offsets(), image_xy, rtol=1e-5)
    np.testing.assert_allclose(ax.collections[1].get_offsets(), text_xy, rtol=1e-5)
    check_png(fig, tmp_path / "map.png")


def test_embedding_map_labels_never_overlap_and_are_readable() -> None:
    """Captions far apart are all written; captions on one spot get one label, not a pile."""
    spread = torch.eye(6)  # six orthogonal captions: far apart on the map
    fig = plot_embedding_map(spread, spread, torch.arange(6), captions=list("abcdef"))
    assert sorted(t.get_text() for t in fig.axes[0].texts) == list("abcdef")
    plt.close(fig)
    image_embeds = torch.eye(5)
    same = image_embeds[[0] * 5]  # five captions with the same embedding
    captions = [f"caption number {i}" for i in range(5)]
    fig = plot_embedding_map(image_embeds, same, [0] * 5, captions=captions, max_labels=3)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == ["caption number 0"]
    assert ax.texts[0].get_fontsize() >= 8
    plt.close(fig)
    many = torch.eye(20)
    fig = plot_embedding_map(many, many, torch.arange(20), captions=[str(i) for i in range(20)])
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    assert len(boxes) == 12  # max_labels
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    plt.close(fig)


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
    assert path == tmp_path / "sub" / "grid.png"  # the missing folder is created
    assert not plt.fignum_exists(fig.number)
    with Image.open(path) as png:
        assert png.format == "PNG" and np.asarray(png.convert("L")).std() > 5
