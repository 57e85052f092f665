"""The app's handlers, called directly and through Gradio's API on 127.0.0.1: answers for good
inputs, clear messages for bad ones, and nothing outside the folders the server was given."""

from __future__ import annotations

import io
import json
import shutil
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

import simpleclip.app.handlers as handlers
from simpleclip.app import (
    GENERIC_LABELS,
    MAX_UPLOAD_BYTES,
    SYNTHETIC_LABELS,
    AllowedPaths,
    ClipApp,
    PathNotAllowed,
    build_blocks,
    check_exposure,
    default_labels,
    default_templates,
    example_query,
    exposure_line,
    find_checkpoints,
    find_image_folders,
    launch,
)
from simpleclip.cli import build_parser, main
from simpleclip.config import load_config
from simpleclip.data import load_rgb
from simpleclip.data.images import thumbnail
from simpleclip.inference import embed_pictures, embed_texts
from simpleclip.model import build_model

REFUSED = "is outside the folders this server was started with"
# gradio's own pandas calls warn under pandas 3; nothing to do with this app
pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory, synthetic_root: Path, tiny_tokenizer):
    """A runs/ folder with one tiny model (random weights) saved the usual way."""
    torch.manual_seed(0)
    config = load_config("synthetic_tiny", [f"data.root={synthetic_root}", "head.embed_dim=32"])
    runs = tmp_path_factory.mktemp("runs")
    build_model(config, tokenizer=tiny_tokenizer).save(runs / "tiny" / "model")
    return runs


@pytest.fixture(autouse=True)
def user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Indexes and thumbnails of apps made without a folder for them go here, not to ~/.cache."""
    monkeypatch.setenv("SIMPLECLIP_CACHE", str(tmp_path / "user-cache"))
    return tmp_path / "user-cache"


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


def test_the_example_description_fits_the_folder(app: ClipApp, runs_dir, tmp_path) -> None:
    assert example_query(app.folders[0]) == "a big red circle on the left"  # the shapes
    photos, token, bare = tmp_path / "photos", tmp_path / "token", tmp_path / "bare"
    for root in (photos, token, bare):
        (root / "Images").mkdir(parents=True)
    (photos / "captions.txt").write_text(
        "image,caption\nkid.jpg,A girl going into a wooden building .\nkid.jpg,A girl .\n"
    )
    (token / "Flickr8k.token.txt").write_text("dog.jpg#0\tA black dog runs in the grass .\n")
    assert example_query(photos / "Images") == "a girl going into a wooden building"
    assert example_query(token / "Images") == "a black dog runs in the grass"
    assert example_query(bare / "Images") == example_query(None) == "a dog running on the beach"
    (bare / "captions.txt").write_text("not,a,caption,file\n")
    assert example_query(bare / "Images") == "a dog running on the beach"  # unreadable: generic
    allowed = ClipApp(runs_dir, tmp_path / "photos", cache_dir=tmp_path / "cache")
    assert allowed.example_query(str(photos / "Images")) == "a girl going into a wooden building"
    assert allowed.example_query(str(token / "Images")) == "a dog running on the beach"  # refused
    assert allowed.search("  ", allowed.checkpoints[0], str(photos / "Images")) == (
        [],
        "Type a description first, e.g. *a girl going into a wooden building*.",
    )


def test_the_description_box_suggests_what_fits_the_folder(app: ClipApp) -> None:
    blocks = build_blocks(app)
    [query] = [b for b in blocks.blocks.values() if getattr(b, "elem_id", None) == "query"]
    assert query.placeholder == "a big red circle on the left"
    [change] = [fn for fn in blocks.fns.values() if fn.name == "suggest_query"]
    assert change.fn(None).placeholder == "a dog running on the beach"


def test_search_returns_a_gallery_with_scores(app: ClipApp) -> None:
    gallery, message = app.search("a big red circle", app.checkpoints[0], app.folders[0], 4)
    assert len(gallery) == 4 and message == f"Best 4 of 120 pictures in {app.folders[0]}."
    thumbnail, caption = gallery[0]
    assert Path(thumbnail).parent == app.thumbnail_dir and caption.endswith(".jpg")
    picture = Path(app.folders[0]) / caption.split()[1]
    with Image.open(thumbnail) as shown, Image.open(picture) as original:
        assert shown.format == "JPEG" and shown.size == original.size == (64, 64)
    scores = [float(caption.split()[0]) for _, caption in gallery]
    assert scores == sorted(scores, reverse=True)


def test_a_pretrained_clip_given_with_checkpoint_is_offered_and_searches(
    runs_dir: Path, synthetic_root: Path, clip_folder: Path, tmp_path: Path
) -> None:
    app = ClipApp(runs_dir, synthetic_root.parent, checkpoint=clip_folder, cache_dir=tmp_path)
    assert app.checkpoints == [str(clip_folder), str(runs_dir / "tiny" / "model")]
    query, folder = "a big red circle", Path(app.folders[0])
    gallery, message = app.search(query, app.checkpoints[0], str(folder), 3)
    assert message == f"Best 3 of 120 pictures in {folder}."
    model = app.model(app.checkpoints[0])
    files = sorted(folder.glob("*.jpg"))
    scores = embed_pictures(model, files)[0] @ embed_texts(model, [query])[0]
    assert [caption.split()[1] for _, caption in gallery] == [
        files[i].name for i in scores.topk(3).indices
    ]


def test_the_first_search_reports_pictures_encoded_out_of_all(app: ClipApp) -> None:
    calls: list[tuple[int, int]] = []
    checkpoint, folder = app.checkpoints[0], app.folders[0]
    app.search("a star", checkpoint, folder, 3, progress=lambda *done_of: calls.append(done_of))
    assert calls == [(64, 120), (120, 120)]  # after each batch of 64, up to all 120 pictures
    app.search("a circle", checkpoint, folder, 3, progress=lambda *done_of: calls.append(done_of))
    assert len(calls) == 2  # the second search reads the cache: nothing to encode, no progress


def test_search_says_how_many_files_it_skipped(runs_dir: Path, synthetic_root: Path, tmp_path):
    app = ClipApp(runs_dir, tmp_path, cache_dir=tmp_path / "cache")  # tmp_path/* is allowed
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


def test_thumbnails_are_shrunk_copies(tmp_path: Path) -> None:
    wide = tmp_path / "wide.png"
    Image.new("RGBA", (600, 300), (200, 30, 30, 255)).save(wide)
    shrunk = thumbnail(wide)
    assert shrunk.mode == "RGB" and shrunk.size == (256, 128)  # aspect ratio kept
    assert shrunk.getpixel((128, 64)) == (200, 30, 30)
    assert thumbnail(_a_picture(tmp_path)).size == (40, 30)  # small ones are not enlarged
    assert thumbnail(wide, size=64).size == (64, 32)


def test_concurrent_searches_get_whole_thumbnail_files(app: ClipApp) -> None:
    checkpoint, folder, query = app.checkpoints[0], app.folders[0], "a big red circle"
    app.search(query, checkpoint, folder, 1)  # the index, and the best picture's thumbnail
    with ThreadPoolExecutor(8) as pool:  # as Gradio runs handlers: in threads, at once
        searches = [pool.submit(app.search, query, checkpoint, folder) for _ in range(8)]
        answers = [search.result() for search in searches]
    galleries = [gallery for gallery, _ in answers]
    assert len(galleries[0]) == 12 and all(gallery == galleries[0] for gallery in galleries)
    for thumbnail_file, caption in galleries[0]:
        with Image.open(thumbnail_file) as shown:
            shown.load()  # decodes all of it: a half-written file fails here
            original = load_rgb(Path(folder) / caption.split()[1])
            difference = np.abs(np.asarray(shown, int) - np.asarray(original, int)).mean()
            assert shown.size == original.size and difference < 8  # JPEG's loss only
    written = sorted(p.name for p in app.thumbnail_dir.iterdir())  # no temporary files left
    assert written == sorted(Path(path).name for path, _ in galleries[0])


def test_a_changed_picture_gets_a_new_thumbnail(app: ClipApp, tmp_path: Path) -> None:
    picture = Path(_a_picture(tmp_path))
    first = app.thumbnail_file(picture)
    assert app.thumbnail_file(picture) == first  # written once
    Image.new("RGB", (50, 30), (30, 30, 200)).save(picture)
    second = app.thumbnail_file(picture)
    with Image.open(first) as old, Image.open(second) as new:
        assert second != first and old.size == (40, 30) and new.size == (50, 30)
        assert new.getpixel((25, 15))[2] > 150 > old.getpixel((20, 15))[2]  # blue, then red


@pytest.mark.parametrize("query", ["", "   ", None])
def test_empty_query_asks_for_a_description(app: ClipApp, query) -> None:
    assert app.search(query, app.checkpoints[0], app.folders[0]) == (
        [],
        "Type a description first, e.g. *a big red circle on the left*.",
    )


def test_empty_or_missing_folder_gives_a_message(runs_dir: Path, tmp_path: Path) -> None:
    app = ClipApp(runs_dir, tmp_path, cache_dir=tmp_path / "cache")  # tmp_path/* is allowed
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


def test_a_bad_checkpoint_gives_a_message(app: ClipApp, runs_dir: Path, tmp_path: Path) -> None:
    gallery, message = app.search("a star", str(runs_dir / "nothing"), app.folders[0])
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


def _a_picture(folder: Path) -> str:
    path = folder / "red.png"
    Image.new("RGB", (40, 30), (200, 30, 30)).save(path)
    return str(path)


# What the app may open: the server decides, the page only asks.


def test_allowed_paths_resolve_before_checking(tmp_path: Path) -> None:
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    (data / "set" / "Images").mkdir(parents=True)
    elsewhere.mkdir()
    (data / "escape").symlink_to(elsewhere)
    (data / "linked").symlink_to(data / "set")  # a link that stays inside is fine
    access = AllowedPaths(folders=[data], checkpoints=[tmp_path / "runs"])
    assert access.check_folder(data / "set" / "Images") == (data / "set" / "Images").resolve()
    assert access.allows_folder(data / "linked" / "Images") and access.allows_folder(data)
    assert access.allows_folder(f"{data}/set/../set/Images")
    for outside in [elsewhere, f"{data}/../elsewhere", data / "escape", "/etc"]:
        with pytest.raises(PathNotAllowed, match=f"picture folder .* {REFUSED}.*--images"):
            access.check_folder(outside)
    assert access.allows_checkpoint(tmp_path / "runs" / "a" / "best")
    with pytest.raises(PathNotAllowed, match=f"checkpoint .* {REFUSED}.*--checkpoint"):
        access.check_checkpoint(data / "set")
    assert AllowedPaths(any_path=True).allows_folder("/etc")


def test_handlers_refuse_folders_and_checkpoints_outside(app: ClipApp, tmp_path: Path) -> None:
    with pytest.raises(PathNotAllowed, match=f"picture folder {tmp_path} {REFUSED}"):
        app.search("a star", app.checkpoints[0], str(tmp_path))
    with pytest.raises(PathNotAllowed, match=f"checkpoint {tmp_path} {REFUSED}"):
        app.search("a star", str(tmp_path), app.folders[0])
    with pytest.raises(PathNotAllowed, match=f"checkpoint {tmp_path} {REFUSED}"):
        app.classify(_a_picture(tmp_path), "a\nb", str(tmp_path), "single")
    assert app.suggestions(str(tmp_path)) == ("\n".join(GENERIC_LABELS), "clip ensemble")
    assert app.suggestions(app.folders[0]) == ("\n".join(SYNTHETIC_LABELS), "shapes ensemble")


def test_pictures_that_link_outside_are_not_shown(runs_dir, synthetic_root, tmp_path) -> None:
    pictures, outside = tmp_path / "data" / "pics", tmp_path / "outside"
    pictures.mkdir(parents=True)
    outside.mkdir()
    first, second, third = sorted((synthetic_root / "Images").iterdir())[:3]
    shutil.copy(first, pictures / first.name)
    shutil.copy(second, pictures / second.name)
    shutil.copy(third, outside / third.name)
    (pictures / "link.jpg").symlink_to(outside / third.name)
    app = ClipApp(runs_dir, tmp_path / "data", cache_dir=tmp_path / "cache")
    gallery, message = app.search("a star", app.checkpoints[0], str(pictures), 3)
    assert len(gallery) == 2 and "link.jpg" not in str(gallery)
    assert message.endswith("1 not shown: they link outside the folder.")


def test_huge_uploads_are_refused_before_decoding(app, tmp_path, monkeypatch) -> None:
    assert Image.MAX_IMAGE_PIXELS is not None  # PIL's decompression-bomb guard stays on
    monkeypatch.setattr(handlers, "MAX_UPLOAD_PIXELS", 1_000)
    picture, top, message = app.classify(_a_picture(tmp_path), "a\nb", app.checkpoints[0], "single")
    assert picture is None and top == {}
    assert message.startswith("**red.png is too large: 40 x 30 pixels.** Upload a picture")


def test_anything_goes_only_locally_unless_acknowledged(capsys) -> None:
    check_exposure("127.0.0.1", any_path=True)
    check_exposure("0.0.0.0", any_path=False)
    check_exposure("0.0.0.0", any_path=True, i_know_this_exposes_files=True)
    with pytest.raises(ValueError, match="--i-know-this-exposes-files"):
        check_exposure("0.0.0.0", any_path=True)
    assert main(["app", "--allow-any-path", "--host", "0.0.0.0"]) == 1  # refused before serving
    assert "--i-know-this-exposes-files" in capsys.readouterr().err
    access = AllowedPaths(folders=["/d"], checkpoints=["/r"])
    line = exposure_line("0.0.0.0", 7860, access)
    assert "ANYONE ON YOUR NETWORK" in line and "pictures in /d; checkpoints in /r" in line
    line = exposure_line("127.0.0.1", 7860, AllowedPaths(any_path=True))
    assert "this machine only" in line and "every folder and checkpoint" in line


def test_cli_paths_are_repeatable_and_the_old_names_still_work() -> None:
    args = build_parser().parse_args(
        ["app", "--runs", "r", "--data", "d", "--images", "a", "--images", "b"]
    )
    assert (args.runs_dir, args.data_dir) == (Path("r"), Path("d"))
    assert args.images == [Path("a"), Path("b")] and args.checkpoint is None
    assert not args.allow_any_path
    chosen = ClipApp("r", "d", images=args.images)
    assert chosen.folders == ["a", "b"] and chosen.access.allows_folder("b/sub")


@pytest.fixture(scope="module")
def served(runs_dir: Path, synthetic_root: Path, tmp_path_factory) -> Iterator[SimpleNamespace]:
    """The app on 127.0.0.1; its data folder links a dataset in, and holds an escape link."""
    tmp = tmp_path_factory.mktemp("served")
    data, outside = tmp / "data", tmp / "outside"
    data.mkdir()
    outside.mkdir()
    (data / "set").symlink_to(synthetic_root)  # found at start, so allowed although linked
    (data / "escape").symlink_to(outside)
    for picture in sorted((synthetic_root / "Images").iterdir())[:3]:
        shutil.copy(picture, outside / picture.name)
    shutil.copytree(runs_dir / "tiny" / "model", outside / "model")
    app = ClipApp(runs_dir, data, cache_dir=tmp / "cache")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    blocks = launch(app, port=port, block=False)
    yield SimpleNamespace(url=f"http://127.0.0.1:{port}", app=app, data=data, outside=outside)
    blocks.close()


def _call(url: str, api: str, *data: Any) -> tuple[str, Any]:
    """One call of Gradio's HTTP API, as `gradio_client` makes it: ``(event, payload)``."""
    posted = httpx.post(f"{url}/gradio_api/call/{api}", json={"data": list(data)}, timeout=60)
    posted.raise_for_status()
    answer = httpx.get(f"{url}/gradio_api/call/{api}/{posted.json()['event_id']}", timeout=60)
    lines = answer.text.strip().splitlines()
    return lines[-2].removeprefix("event: "), json.loads(lines[-1].removeprefix("data: "))


@pytest.mark.parametrize("where", ["outside", "dot-dot", "symlink", "checkpoint"])
def test_the_api_refuses_paths_outside_the_allowed_ones(served: SimpleNamespace, where: str):
    folder, checkpoint = served.app.folders[0], served.app.checkpoints[0]
    if where == "checkpoint":
        checkpoint = str(served.outside / "model")
    else:
        folder = {
            "outside": str(served.outside),
            "dot-dot": f"{served.data}/../outside",
            "symlink": str(served.data / "escape"),
        }[where]
    event, payload = _call(served.url, "search", "a star", checkpoint, folder, 3)
    assert event == "error" and payload["title"] == "Not allowed"
    assert payload["error"].startswith("Not allowed: the ") and REFUSED in payload["error"]


def test_allowed_folders_work_through_the_api(served: SimpleNamespace) -> None:
    checkpoint = served.app.checkpoints[0]
    for folder in (served.app.folders[0], f"{served.data}/set/../set/Images"):
        event, (gallery, message) = _call(served.url, "search", "a star", checkpoint, folder, 3)
        assert event == "complete" and len(gallery) == 3
        assert message == f"Best 3 of 120 pictures in {folder}."


def test_concurrent_api_searches_all_get_whole_thumbnails(served: SimpleNamespace) -> None:
    checkpoint, folder = served.app.checkpoints[0], served.app.folders[0]
    search = ("search", "a star", checkpoint, folder, 6)
    _call(served.url, *search)  # the index, built once

    def search_and_fetch(_: int) -> list[bytes]:  # what gradio_client does with each answer
        event, (gallery, _) = _call(served.url, *search)
        assert event == "complete"
        return [httpx.get(item["image"]["url"]).raise_for_status().content for item in gallery]

    with ThreadPoolExecutor(10) as pool:  # the same six pictures, to ten clients at once
        answers = list(pool.map(search_and_fetch, range(30)))
    assert all(answer == answers[0] for answer in answers) and len(answers[0]) == 6
    for thumbnail_bytes in answers[0]:
        Image.open(io.BytesIO(thumbnail_bytes)).load()  # whole and decodable


def test_the_file_route_serves_thumbnails_and_nothing_else(served: SimpleNamespace) -> None:
    app = served.app
    _, (gallery, _) = _call(served.url, "search", "a star", app.checkpoints[0], app.folders[0], 1)
    thumbnail = httpx.get(gallery[0]["image"]["url"])
    assert thumbnail.status_code == 200 and thumbnail.headers["content-type"].startswith("image/")
    Image.open(gallery[0]["image"]["path"]).verify()
    picture = next(Path(app.folders[0]).iterdir())
    thumb_dir = Path(gallery[0]["image"]["path"]).parent
    for path in [
        "/etc/passwd",
        f"{thumb_dir}/../../../etc/passwd",
        picture,  # an allowed picture itself: the page only ever needs thumbnails
        served.outside / picture.name,
        Path(app.checkpoints[0]) / "model.safetensors",
    ]:
        answer = httpx.get(f"{served.url}/gradio_api/file={path}")
        assert answer.status_code in (403, 404) and b"root:" not in answer.content, path


def test_uploads_are_limited_and_stay_in_gradios_folder(served, tmp_path: Path) -> None:
    from gradio.utils import get_upload_folder

    upload = f"{served.url}/gradio_api/upload"
    too_big = httpx.post(upload, files={"files": ("big.png", b"0" * (MAX_UPLOAD_BYTES + 1))})
    assert too_big.status_code == 413 and "maximum allowed size" in too_big.text
    with open(_a_picture(tmp_path), "rb") as picture:
        [stored] = httpx.post(upload, files={"files": ("red.png", picture)}).json()
    assert Path(stored).resolve().is_relative_to(Path(get_upload_folder()).resolve())
    file = {"path": stored, "meta": {"_type": "gradio.FileData"}}
    checkpoint = served.app.checkpoints[0]
    event, (_, labels, message) = _call(served.url, "classify", file, "a\nb", checkpoint, "single")
    assert event == "complete" and len(labels["confidences"]) == 2 and "Best label" in message
    outside = str(served.outside / "model")
    event, payload = _call(served.url, "classify", file, "a\nb", outside, "single")
    assert event == "error" and REFUSED in payload["error"]
    not_uploaded = {"path": str(next(served.outside.glob("*.jpg"))), "meta": file["meta"]}
    event, _ = _call(served.url, "classify", not_uploaded, "a\nb", checkpoint, "single")
    assert event == "error"  # Gradio reads only files that were uploaded to it
