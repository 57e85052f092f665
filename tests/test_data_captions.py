"""Caption files in both formats, quoting, malformed lines, partial downloads, splits."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest

from simpleclip.data import CaptionFormatError, load_split, read_captions, split_images
from simpleclip.data.splits import SPLIT_FILES, canonical_split


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def unwarned(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget which missing-image warnings this process already gave (they are said once)."""
    monkeypatch.setattr("simpleclip.data.captions._REPORTED", set())


def test_reads_kaggle_csv_with_commas_and_doubled_quotes(tmp_path: Path) -> None:
    path = write(
        tmp_path / "captions.txt",
        "image,caption\n"
        "a.jpg,  A dog runs .  \n"
        'a.jpg,"A dog, brown, runs ."\n'
        'b.jpg,"She said ""hello"" ."\n',
    )
    table = read_captions(path)
    assert list(table.columns) == ["image", "caption_id", "caption"]
    assert table["image"].tolist() == ["a.jpg", "a.jpg", "b.jpg"]
    assert table["caption_id"].tolist() == [0, 1, 0]
    assert table["caption"].tolist() == [
        "A dog runs .",
        "A dog, brown, runs .",
        'She said "hello" .',
    ]


def test_reads_token_format_with_hash_in_caption(tmp_path: Path) -> None:
    path = write(
        tmp_path / "Flickr8k.token.txt",
        "a.jpg#0\tA dog runs .\na.jpg#1\tA dog wears #5 .\n\nb.jpg#0\t Two cats . \n",
    )
    table = read_captions(path)
    assert table.values.tolist() == [
        ["a.jpg", 0, "A dog runs ."],
        ["a.jpg", 1, "A dog wears #5 ."],
        ["b.jpg", 0, "Two cats ."],
    ]


@pytest.mark.parametrize(
    ("name", "text", "bad_line"),
    [
        ("captions.txt", "image,caption\na.jpg,ok\na.jpg,too,many,fields\n", 3),
        ("captions.txt", "image,caption\na.jpg,ok\nb.jpg,\n", 3),
        ("token.txt", "a.jpg#0\tok\na.jpg 1 no tab\n", 2),
        ("token.txt", "a.jpg#0\tok\na.jpg#x\tnot a number\n", 2),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path: Path, name: str, text: str, bad_line: int):
    path = write(tmp_path / name, text)
    with pytest.raises(CaptionFormatError, match=rf"{name}, line {bad_line}\b"):
        read_captions(path)


def test_images_dir_drops_missing_rows_with_one_counting_warning(tmp_path: Path) -> None:
    images = tmp_path / "Images"
    images.mkdir()
    (images / "a.jpg").write_bytes(b"x")
    path = write(
        tmp_path / "t.txt",
        "a.jpg#0\tkept\nb.jpg#0\tgone\nb.jpg#1\tgone too\n2258277193_586949ec62.jpg.1#0\tbogus\n",
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = read_captions(path, images_dir=images)
    assert table["caption"].tolist() == ["kept"]
    assert len(caught) == 1
    assert "3 captions of 2 images" in str(caught[0].message)


def test_missing_images_are_reported_once_per_run_not_once_per_split(
    synthetic_root: Path, tmp_path: Path, recwarn: pytest.WarningsRecorder
) -> None:
    partial = tmp_path / "partial"
    shutil.copytree(synthetic_root, partial)
    for name in sorted((partial / "Images").iterdir())[:3]:
        name.unlink()  # 15 captions now have no file
    splits = {split: load_split(partial, split) for split in ("train", "dev", "test")}
    load_split(partial, "train+dev")
    said = [str(w.message) for w in recwarn if "have no file" in str(w.message)]
    assert len(said) == 1 and "15 captions of 3 images" in said[0]
    assert sum(len(table) for table in splits.values()) == 5 * (120 - 3)

    (partial / "Images" / sorted(splits["train"]["image"])[0]).unlink()  # a new cause: said again
    load_split(partial, "test")
    said = [str(w.message) for w in recwarn if "have no file" in str(w.message)]
    assert len(said) == 2 and "20 captions of 4 images" in said[1]


def test_real_slice_warns_once_for_all_three_splits(
    shared_flickr: Path, unwarned: None, recwarn: pytest.WarningsRecorder
) -> None:
    sizes = [
        load_split(shared_flickr, split)["image"].nunique() for split in ("train", "dev", "test")
    ]
    said = [str(w.message) for w in recwarn if "have no file" in str(w.message)]
    assert sizes == [753, 113, 125]
    assert len(said) == 1 and "captions of 7091 images" in said[0], said


def test_real_caption_files_agree_and_bogus_key_is_dropped(
    shared_flickr: Path, unwarned: None
) -> None:
    csv_table = read_captions(shared_flickr / "captions.txt")
    token_table = read_captions(shared_flickr / "Flickr8k.token.txt")
    assert len(csv_table) == 40455 and csv_table["image"].nunique() == 8091
    assert "2258277193_586949ec62.jpg.1" in set(token_table["image"])
    common = token_table[token_table["image"].isin(set(csv_table["image"]))]
    assert common.reset_index(drop=True).equals(csv_table)  # same captions, same order
    with pytest.warns(UserWarning, match="dropped"):
        present = read_captions(shared_flickr / "Flickr8k.token.txt", shared_flickr / "Images")
    assert present["image"].nunique() == 1000
    assert set(present["caption_id"]) == {0, 1, 2, 3, 4}


def test_official_split_files_win_and_are_disjoint(shared_flickr: Path, unwarned: None) -> None:
    with pytest.warns(UserWarning):
        images = read_captions(shared_flickr / "captions.txt", shared_flickr / "Images")["image"]
    splits = split_images(images.unique(), shared_flickr)
    assert {k: len(v) for k, v in splits.items()} == {"train": 753, "dev": 113, "test": 125}
    assert not set(splits["train"]) & set(splits["test"])
    assert not set(splits["dev"]) & (set(splits["train"]) | set(splits["test"]))


def test_seeded_split_is_by_image_disjoint_complete_and_deterministic() -> None:
    images = [f"img{i}.jpg" for i in range(101)]
    first = split_images(images, fractions=(0.8, 0.1, 0.1), seed=3)
    again = split_images(images, fractions=(0.8, 0.1, 0.1), seed=3)
    other = split_images(images, fractions=(0.8, 0.1, 0.1), seed=4)
    assert first == again and first != other
    parts = [set(first[s]) for s in ("train", "dev", "test")]
    assert sum(len(p) for p in parts) == 101 and set().union(*parts) == set(images)
    assert len(first["train"]) == 81 and len(first["dev"]) == 10


def test_split_files_that_overlap_are_refused(tmp_path: Path) -> None:
    for split, filename in SPLIT_FILES.items():
        write(tmp_path / filename, "a.jpg\n" if split != "dev" else "a.jpg\nb.jpg\n")
    with pytest.raises(ValueError, match="overlap"):
        split_images(["a.jpg", "b.jpg"], tmp_path)


def test_split_names() -> None:
    assert canonical_split("val") == "dev"
    with pytest.raises(ValueError, match="train, dev"):
        canonical_split("training")
