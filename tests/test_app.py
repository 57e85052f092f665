"""The app's handlers, called directly: answers for good inputs, clear messages for bad ones."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from simpleclip.app import (
    GENERIC_LABELS,
    SYNTHETIC_LABELS,
    ClipApp,
    build_blocks,
    default_labels,
    default_templates,
    find_checkpoints,
    find_image_folders,
)
from simpleclip.config import load_config
from simpleclip.model import build_model


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory, synthetic_root: Path, tiny_tokenizer):
    """A runs/ folder with one tiny model (random weights) saved the usual way."""
    torch.manual_seed(0)
    config = load_config("synthetic_tiny", [f"data.root={synthetic_root}", "head.embed_dim=32"])
    runs = tmp_path_factory.mktemp("runs")
    build_model(config, tokenizer=tiny_tokenizer).save(runs / "tiny" / "model")
    return runs


@pytest.fixture
def app(runs_dir: Path, synthetic_root: Path, tmp_path: Path) -> ClipApp:
    return ClipApp(runs_dir, synthetic_root.parent, cache_dir=tmp_path / "cache")


def test_choices_come_from_runs_and_data(app: ClipApp, runs_dir: Path, synthetic_root: Path):
    assert find_checkpoints(runs_dir) == [str(runs_dir / "tiny" / "model")]
    assert find_image_folders(synthetic_root.parent) == [str(synthetic_root / "Images")]
    assert app.checkpoints == find_checkpoints(runs_dir)
    assert app.folders == [str(synthetic_root / "Images")]
    chosen = ClipApp(runs_dir, synthetic_root.parent, checkpoint="mine", images="pics")
    assert chosen.checkpoints[0] == "mine" and chosen.folders[0] == "pics"
    assert find_checkpoints(runs_dir / "missing") == find_image_folders(runs_dir / "x") == []


def test_final_models_are_offered_first(tmp_path: Path) -> None:
    for folder in ("a/last", "a/best", "b/model", "b/best"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "model.safetensors").touch()
    found = [Path(p).relative_to(tmp_path).as_posix() for p in find_checkpoints(tmp_path)]
    assert found == ["b/model", "a/best", "b/best", "a/last"]


def test_default_labels_suit_the_folder(synthetic_root: Path, tmp_path: Path) -> None:
    assert default_labels(synthetic_root / "Images") == SYNTHETIC_LABELS
    assert len(SYNTHETIC_LABELS) == 30 and "purple triangle" in SYNTHETIC_LABELS
    assert default_labels(tmp_path) == default_labels(None) == GENERIC_LABELS
    assert default_templates(synthetic_root / "Images") == "shapes ensemble"
    assert default_templates(tmp_path) == "clip ensemble"


def test_search_returns_a_gallery_with_scores(app: ClipApp) -> None:
    gallery, message = app.search("a big red circle", app.checkpoints[0], app.folders[0], 4)
    assert len(gallery) == 4 and message == f"Best 4 of 120 pictures in {app.folders[0]}."
    picture, caption = gallery[0]
    assert isinstance(picture, Image.Image) and caption.endswith(".jpg")
    scores = [float(caption.split()[0]) for _, caption in gallery]
    assert scores == sorted(scores, reverse=True)


def test_search_says_how_many_files_it_skipped(app: ClipApp, synthetic_root: Path, tmp_path):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for picture in sorted((synthetic_root / "Images").iterdir())[:3]:
        shutil.copy(picture, mixed / picture.name)
    (mixed / "notes.txt").write_text("not a picture")
    (mixed / "broken.jpg").write_text("only pretends to be a JPEG")
    gallery, message = app.search("a star", app.checkpoints[0], str(mixed))
    assert len(gallery) == 3 and message == (
        f"Best 3 of 3 pictures in {mixed}. 2 files skipped: not pictures, or unreadable."
    )


@pytest.mark.parametrize("query", ["", "   ", None])
def test_empty_query_asks_for_a_description(app: ClipApp, query) -> None:
    assert app.search(query, app.checkpoints[0], app.folders[0]) == (
        [],
        "Type a description first, e.g. *a big red circle on the left*.",
    )


def test_empty_or_missing_folder_gives_a_message(app: ClipApp, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no pictures here")
    for folder, says in [
        ("empty", "No readable images"),
        ("notes", "No readable images"),
        ("missing", "No folder of pictures"),
    ]:
        gallery, message = app.search("a star", app.checkpoints[0], str(tmp_path / folder))
        assert gallery == [] and message.startswith("**Cannot search") and says in message
    _, message = app.search("a star", app.checkpoints[0], None)
    assert message == "Choose a folder of pictures first."


def test_a_bad_checkpoint_gives_a_message(app: ClipApp, tmp_path: Path) -> None:
    gallery, message = app.search("a star", str(tmp_path / "nothing"), app.folders[0])
    assert gallery == [] and "Cannot search" in message
    _, labels, message = app.classify(_a_picture(tmp_path), "a\nb", None, "single")
    assert labels == {} and "No checkpoint chosen" in message and "simpleclip demo" in message


def test_classify_gives_five_labels(app: ClipApp, synthetic_root: Path) -> None:
    upload = str(next((synthetic_root / "Images").iterdir()))
    labels = "\n".join(SYNTHETIC_LABELS)
    picture, top, message = app.classify(upload, labels, app.checkpoints[0], "shapes ensemble")
    assert isinstance(picture, Image.Image) and len(top) == 5
    assert set(top) <= set(SYNTHETIC_LABELS) and 0 < sum(top.values()) <= 1 + 1e-6
    assert list(top.values()) == sorted(top.values(), reverse=True)
    assert message.startswith(f"Best label: **{next(iter(top))}**")


def test_non_image_upload_gives_a_message(app: ClipApp, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a picture")
    picture, top, message = app.classify(str(text), "a\nb", app.checkpoints[0], "single")
    assert picture is None and top == {}
    assert message.startswith("**notes.txt is not a picture I can read.**")
    assert app.classify(None, "a\nb", app.checkpoints[0], "single")[2] == "Upload a picture first."


def test_fewer_than_two_labels_gives_a_message(app: ClipApp, tmp_path: Path) -> None:
    _, top, message = app.classify(
        _a_picture(tmp_path), " cat \n\n cat", app.checkpoints[0], "single"
    )
    assert top == {} and message == "Write at least two labels, one per line."


def test_the_page_builds_offline(app: ClipApp) -> None:
    import os

    blocks = build_blocks(app)
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False" and not blocks.analytics_enabled
    ids = {getattr(block, "elem_id", None) for block in blocks.blocks.values()}
    assert {"query", "gallery", "upload", "labels", "prediction", "classify-status"} <= ids


def test_cli_help_lists_app_without_importing_gradio() -> None:
    code = (
        "import sys; from simpleclip.cli import build_parser; "
        "build_parser().parse_args(['app', '--port', '1']); "
        "print('gradio' in sys.modules, 'torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False False", result.stderr


def _a_picture(folder: Path) -> str:
    path = folder / "red.png"
    Image.new("RGB", (40, 30), (200, 30, 30)).save(path)
    return str(path)
