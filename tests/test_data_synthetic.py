"""The built-in synthetic set: Flickr8k layout, truthful captions, determinism, held-out pair."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from simpleclip.data import load_split, make_synthetic, read_captions
from simpleclip.data.synthetic import COLORS, HELD_OUT, SHAPE_WORDS


def digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(path.relative_to(root).as_posix().encode() + path.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    a = make_synthetic(tmp_path / "a", n_images=30, seed=5)
    b = make_synthetic(tmp_path / "b", n_images=30, seed=5)
    c = make_synthetic(tmp_path / "c", n_images=30, seed=6)
    assert digest(a) == digest(b) != digest(c)


def test_flickr8k_layout_read_by_the_same_loader(synthetic_root: Path) -> None:
    captions = read_captions(synthetic_root / "captions.txt", synthetic_root / "Images")
    assert captions["image"].nunique() == 120 and len(captions) == 600
    assert captions.groupby("image")["caption"].nunique().eq(5).all()  # 5 different wordings
    sizes = {load_split(synthetic_root, s)["image"].nunique() for s in ("train", "dev", "test")}
    assert sizes == {96, 12}
    with Image.open(next((synthetic_root / "Images").iterdir())) as image:
        assert image.size == (64, 64) and image.mode == "RGB"


def test_captions_name_the_colours_and_shapes_that_are_drawn(synthetic_root: Path) -> None:
    scenes = pd.read_csv(synthetic_root / "scenes.csv").set_index("image")
    captions = read_captions(synthetic_root / "captions.txt")
    for row in captions.itertuples():
        scene = scenes.loc[row.image]
        colors = {scene.color1, scene.color2} - {np.nan}
        assert {c for c in COLORS if c in row.caption.split()} == colors
        kinds = [scene.kind1] + ([scene.kind2] if scene.n_shapes == 2 else [])
        for kind in kinds:
            words = SHAPE_WORDS[kind] + (["dot"] if kind == "circle" else [])
            assert any(w in row.caption for w in words), (row.caption, kind)


def test_drawn_colour_is_where_the_caption_says(tmp_path: Path) -> None:
    """A one-shape 'left' picture has its shape's colour on the left, not on the right."""
    root = make_synthetic(tmp_path / "s", n_images=200, seed=1)
    scenes = pd.read_csv(root / "scenes.csv")
    left = scenes[(scenes.n_shapes == 1) & (scenes.position1 == "left")]
    assert len(left) > 5
    for row in left.itertuples():
        pixels = np.asarray(Image.open(root / "Images" / row.image)).astype(int)
        target = np.array(COLORS[row.color1])
        close = np.abs(pixels - target).sum(axis=2) < 90
        assert close[:, :32].sum() > 10 * max(close[:, 32:].sum(), 1)


def test_held_out_pair_never_in_train_but_present_elsewhere(tmp_path: Path) -> None:
    root = make_synthetic(tmp_path / "s", n_images=600, seed=0)
    scenes = pd.read_csv(root / "scenes.csv")
    color, kind = HELD_OUT
    has = ((scenes.color1 == color) & (scenes.kind1 == kind)) | (
        (scenes.color2 == color) & (scenes.kind2 == kind)
    )
    assert not has[scenes.split == "train"].any()
    assert has[scenes.split != "train"].sum() >= 3


def test_existing_folder_is_reused_or_refused_never_overwritten(tmp_path: Path) -> None:
    root = make_synthetic(tmp_path / "s", n_images=20)
    before = digest(root)
    assert make_synthetic(root, n_images=20) == root and digest(root) == before
    with pytest.raises(FileExistsError, match="Nothing was overwritten"):
        make_synthetic(root, n_images=21)
    user_folder = tmp_path / "mine"
    user_folder.mkdir()
    (user_folder / "photo.jpg").write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="not a synthetic set"):
        make_synthetic(user_folder, n_images=20)
    assert (user_folder / "photo.jpg").read_bytes() == b"precious"
