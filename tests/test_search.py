"""Search over a folder: broken files are skipped, scores are cosines, the cache is trustworthy."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from simpleclip.cli import main
from simpleclip.config import load_config
from simpleclip.data import build_transforms, load_rgb
from simpleclip.model import CLIPModel, build_model
from simpleclip.search import ImageIndex, cache_path, default_cache_dir, model_fingerprint

N_GOOD = 12  # readable pictures in the `photos` folder


def tiny_model(root: Path, tokenizer, seed: int = 0) -> CLIPModel:
    torch.manual_seed(seed)
    config = load_config("synthetic_tiny", [f"data.root={root}", "head.embed_dim=32"])
    return build_model(config, tokenizer=tokenizer).eval()  # random weights: fast


@pytest.fixture(scope="module")
def model(synthetic_root: Path, tiny_tokenizer) -> CLIPModel:
    return tiny_model(synthetic_root, tiny_tokenizer)


@pytest.fixture
def photos(tmp_path: Path, synthetic_root: Path) -> Path:
    """11 JPEGs (one in a sub-folder), a PNG, and four files that are not in the index."""
    folder = tmp_path / "photos"
    (folder / "holiday").mkdir(parents=True)
    sources = sorted((synthetic_root / "Images").glob("*.jpg"))
    for source in sources[:10]:
        shutil.copy(source, folder / source.name)
    shutil.copy(sources[10], folder / "holiday" / "beach.JPG")  # upper-case extension
    load_rgb(sources[11]).save(folder / "shape.png")
    data = sources[12].read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "text.jpg").write_text("not a picture at all")
    (folder / "notes.txt").write_text("a note")
    (folder / ".hidden.jpg").write_bytes(data)  # hidden files are left out entirely
    return folder


def direct_embed(model: CLIPModel, path: Path) -> torch.Tensor:
    """The naive reference: one picture, decoded and encoded by hand. Shapes: -> (E,)."""
    transform = build_transforms(model.image_encoder.preprocessing, train=False)
    pixels = transform(image=np.asarray(load_rgb(path)))["image"][None]
    with torch.no_grad():
        return model.encode_image(pixels)[0]


def count_encodes(model: CLIPModel, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the batch size of every ``encode_image`` call."""
    calls: list[int] = []
    original = model.encode_image

    def counting(images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        calls.append(len(images))
        return original(images, normalize)

    monkeypatch.setattr(model, "encode_image", counting)
    return calls


def test_broken_files_are_skipped_and_reported(model: CLIPModel, photos: Path, tmp_path: Path):
    index = ImageIndex.build(
        model, photos, batch_size=5, cache_dir=tmp_path / "cache", progress=False
    )
    assert len(index) == N_GOOD and index.image_embeds.shape == (N_GOOD, 32)
    assert photos / "holiday" / "beach.JPG" in index.paths and photos / "shape.png" in index.paths
    reasons = {s.path.name: s.reason for s in index.skipped}
    assert set(reasons) == {"truncated.jpg", "text.jpg", "notes.txt"}
    assert (
        reasons["truncated.jpg"].startswith("cannot decode")
        and "truncated" in reasons["truncated.jpg"]
    )
    assert reasons["text.jpg"].startswith("cannot decode")
    assert reasons["notes.txt"] == "not an image file"
    assert "12 pictures indexed" in index.summary() and "2 unreadable, 1 not images" in (
        index.summary()
    )
    assert str(photos) in index.summary()
    # the reasons name the file, not the machine's folders; a notebook names the folder itself
    assert not any(str(photos) in s.reason for s in index.skipped)
    assert "indexed in photos (" in index.summary(folder="photos")
    assert str(photos) not in index.summary(folder="photos")


def test_hits_are_sorted_cosine_similarities(model: CLIPModel, photos: Path, tmp_path: Path):
    index = ImageIndex.build(model, photos, cache_dir=tmp_path / "cache", progress=False)
    query = "a big red circle on the left"
    hits = index.search(query, top_k=5)
    assert len(hits) == 5
    with torch.no_grad():
        text = model.encode_text(**model.tokenize([query]))[0]
    direct = {path: float(direct_embed(model, path) @ text) for path in index.paths}
    expected = sorted(direct, key=direct.get, reverse=True)[:5]
    assert [hit.path for hit in hits] == expected
    for hit in hits:
        assert hit.score == pytest.approx(direct[hit.path], abs=1e-5)
    assert len(index.search(query, top_k=100)) == N_GOOD  # top_k larger than the folder
    with pytest.raises(ValueError, match="top_k"):
        index.search(query, top_k=0)


def test_search_by_image_finds_the_image_itself_first(model, photos: Path, tmp_path: Path):
    index = ImageIndex.build(model, photos, cache_dir=tmp_path / "cache", progress=False)
    first = index.search_image(photos / "shape.png", top_k=3)[0]
    assert first.path == photos / "shape.png" and first.score == pytest.approx(1.0, abs=1e-5)


def test_the_cache_is_reused_without_encoding_again(
    model: CLIPModel, photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache_dir = tmp_path / "cache"
    calls = count_encodes(model, monkeypatch)
    first = ImageIndex.build(model, photos, batch_size=4, cache_dir=cache_dir, progress=False)
    assert sum(calls) == N_GOOD and first.encoded == N_GOOD + 2 and first.reused == 0
    calls.clear()
    again = ImageIndex.build(model, photos, batch_size=4, cache_dir=cache_dir, progress=False)
    assert calls == [] and again.encoded == 0 and again.reused == N_GOOD + 2
    assert again.paths == first.paths and [s.path for s in again.skipped] == [
        s.path for s in first.skipped
    ]
    torch.testing.assert_close(again.image_embeds, first.image_embeds)
    saved = torch.load(cache_path(photos, model_fingerprint(model), cache_dir), weights_only=True)
    assert saved["embeds"].shape == (N_GOOD, 32)
    assert not list(photos.rglob("*.pt")), "the searched folder must not be written to"


def test_the_cache_notices_changed_added_and_removed_files(
    model: CLIPModel, photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache_dir = tmp_path / "cache"
    ImageIndex.build(model, photos, cache_dir=cache_dir, progress=False)
    calls = count_encodes(model, monkeypatch)
    names = sorted(p.name for p in photos.glob("synth_*.jpg"))

    shutil.copy(photos / names[0], photos / "added.jpg")
    index = ImageIndex.build(model, photos, cache_dir=cache_dir, progress=False)
    assert index.encoded == 1 and len(index) == N_GOOD + 1 and sum(calls) == 1

    changed = photos / names[1]
    before = index.image_embeds[index.paths.index(changed)]
    shutil.copy(photos / "shape.png", changed)  # new content (PIL reads it whatever its name)
    stat = changed.stat()
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # an edit, 1 s later
    index = ImageIndex.build(model, photos, cache_dir=cache_dir, progress=False)
    assert index.encoded == 1
    after = index.image_embeds[index.paths.index(changed)]
    torch.testing.assert_close(after, direct_embed(model, changed))
    assert not torch.allclose(before, after)

    (photos / names[2]).unlink()
    shutil.copy(photos / names[3], photos / "truncated.jpg")  # the broken file is repaired
    index = ImageIndex.build(model, photos, cache_dir=cache_dir, progress=False)
    assert index.encoded == 1 and len(index) == N_GOOD + 1
    assert photos / names[2] not in index.paths and photos / "truncated.jpg" in index.paths


def test_a_different_model_encodes_everything_again(
    model: CLIPModel, photos: Path, tmp_path: Path, synthetic_root: Path, tiny_tokenizer
) -> None:
    cache_dir = tmp_path / "cache"
    ImageIndex.build(model, photos, cache_dir=cache_dir, progress=False)
    other = tiny_model(synthetic_root, tiny_tokenizer, seed=1)
    assert model_fingerprint(other) != model_fingerprint(model)
    index = ImageIndex.build(other, photos, cache_dir=cache_dir, progress=False)
    assert index.encoded == N_GOOD + 2 and index.reused == 0
    torch.testing.assert_close(index.image_embeds[0], direct_embed(other, index.paths[0]))


def test_a_damaged_cache_file_is_rebuilt(model: CLIPModel, photos: Path, tmp_path: Path):
    cache_dir = tmp_path / "cache"
    ImageIndex.build(model, photos, cache_dir=cache_dir, progress=False)
    cache_path(photos, model_fingerprint(model), cache_dir).write_bytes(b"garbage")
    index = ImageIndex.build(model, photos, cache_dir=cache_dir, progress=False)
    assert index.encoded == N_GOOD + 2 and len(index) == N_GOOD


def test_an_index_written_by_an_older_version_is_ignored(
    model: CLIPModel, photos: Path, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "cache"
    ImageIndex.build(model, photos, cache_dir=cache_dir, progress=False)
    path = cache_path(photos, model_fingerprint(model), cache_dir)
    saved = torch.load(path, weights_only=True)
    torch.save({**saved, "version": saved["version"] - 1}, path)
    index = ImageIndex.build(model, photos, cache_dir=cache_dir, progress=False)
    assert index.encoded == N_GOOD + 2 and len(index) == N_GOOD


def test_cache_off_and_default_location(
    model: CLIPModel, photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIMPLECLIP_CACHE", str(tmp_path / "default"))
    assert default_cache_dir() == tmp_path / "default" / "search"  # its own sub-folder
    ImageIndex.build(model, photos, cache=False, progress=False)
    assert not (tmp_path / "default").exists()
    ImageIndex.build(model, photos, progress=False)
    assert len(list((tmp_path / "default" / "search").glob("*.pt"))) == 1
    assert [p.name for p in (tmp_path / "default").iterdir()] == ["search"]


def test_a_folder_without_readable_pictures_is_a_clear_error(model, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="the folder is empty"):
        ImageIndex.build(model, empty, cache=False, progress=False)
    (empty / "a.jpg").write_text("not a picture")
    (empty / "b.txt").write_text("nor this")
    with pytest.raises(ValueError, match=r"No readable images.*2 files"):
        ImageIndex.build(model, empty, cache=False, progress=False)
    with pytest.raises(FileNotFoundError, match="No folder"):
        ImageIndex.build(model, tmp_path / "missing", cache=False, progress=False)


def test_the_command_prints_the_best_files_and_writes_a_grid(
    model: CLIPModel, photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    checkpoint = model.save(tmp_path / "model")
    grid = tmp_path / "grid.png"
    common = ["--checkpoint", str(checkpoint), "--cache-dir", str(tmp_path / "cache")]
    args = ["search", "a small blue square", "--images", str(photos), "--top-k", "4"]
    assert main([*args, *common, "--grid", str(grid)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "Best matches for 'a small blue square':"
    assert [line.split()[0] for line in lines[1:5]] == ["1", "2", "3", "4"]
    scores = [float(line.split()[1]) for line in lines[1:5]]
    assert scores == sorted(scores, reverse=True)
    assert "3 files skipped (2 unreadable, 1 not images)" in out and "skipped text.jpg" in out
    with Image.open(grid) as picture:
        assert picture.size[0] > 100 and picture.size[1] > 100
    assert main([*args, *common]) == 0
    assert "0 files decoded now, 14 reused from the cache" in capsys.readouterr().out

    (tmp_path / "empty").mkdir()
    assert main(["search", "a dog", "--images", str(tmp_path / "empty"), *common]) == 1
    err = capsys.readouterr().err
    assert err.startswith("simpleclip search: error: No readable images") and "empty" in err


def test_a_picture_declaring_too_many_pixels_is_skipped_undecoded(
    model: CLIPModel, tmp_path: Path
) -> None:
    from PIL import Image

    folder = tmp_path / "pictures"
    folder.mkdir()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(folder / "red.png")
    Image.new("1", (13_000, 13_000)).save(folder / "bomb.png")  # 20 KB declaring 169 Mpx
    index = ImageIndex.build(model, folder, cache_dir=tmp_path / "cache", progress=False)
    assert [p.name for p in index.paths] == ["red.png"]
    (skipped,) = index.skipped
    assert skipped.path.name == "bomb.png" and "13000 x 13000 pixels" in skipped.reason
