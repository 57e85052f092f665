"""Flickr30k and COCO folders read into the Flickr8k caption table, with their own splits."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from PIL import Image

from simpleclip.data import (
    CaptionDataset,
    CaptionFormatError,
    find_captions_file,
    find_images_dir,
    load_split,
    read_captions,
    split_images,
)
from simpleclip.data.formats import find_layout, read_coco, read_flickr30k_csv, read_karpathy

SPLITS = ("train", "dev", "test")


@pytest.fixture
def unwarned(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget which missing-image warnings this process already gave (they are said once)."""
    monkeypatch.setattr("simpleclip.data.captions._REPORTED", set())


def jpeg(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (200, 30, 30)).save(path, "JPEG")
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def write_json(path: Path, data: object) -> Path:
    return write(path, json.dumps(data))


def split_sets(root: Path) -> dict[str, set[str]]:
    return {s: set(load_split(root, s)["image"]) for s in SPLITS}


def assert_disjoint_and_complete(splits: dict[str, set[str]], images: set[str]) -> None:
    assert not splits["train"] & splits["dev"]
    assert not (splits["train"] | splits["dev"]) & splits["test"]
    assert set().union(*splits.values()) == images


# --- Flickr30k: Kaggle results.csv -------------------------------------------------------------


def flickr30k_folder(root: Path, n_images: int = 10, images: str = "flickr30k_images") -> Path:
    lines = ["image_name| comment_number| comment"]
    for i in range(n_images):
        jpeg(root / images / f"{i}.jpg")
        lines += [f"{i}.jpg| {k}| Photo {i} , caption {k} ." for k in range(5)]
    write(root / "results.csv", "\n".join(lines) + "\n")
    return root


def test_flickr30k_csv_reads_rows_and_repairs_the_fused_row(tmp_path: Path) -> None:
    path = write(
        tmp_path / "results.csv",
        "image_name| comment_number| comment\n"
        "1000092795.jpg| 0| Two young guys with shaggy hair look at their hands .\n"
        "1000092795.jpg| 1|  Two friends enjoy time spent together . \n"
        "\n"
        '2199200615.jpg| 4   A dog runs across the grass , "fast" .\n',  # the real file's fused row
    )
    table = read_flickr30k_csv(path)
    assert list(table.columns) == ["image", "caption_id", "caption"]
    assert table.values.tolist() == [
        ["1000092795.jpg", 0, "Two young guys with shaggy hair look at their hands ."],
        ["1000092795.jpg", 1, "Two friends enjoy time spent together ."],
        ["2199200615.jpg", 4, 'A dog runs across the grass , "fast" .'],
    ]


@pytest.mark.parametrize(
    ("text", "bad_line"),
    [
        ("image,caption\n1.jpg,A dog .\n", 1),
        ("image_name| comment_number| comment\n1.jpg| 0| ok\n1.jpg| x| not a number\n", 3),
        ("image_name| comment_number| comment\n1.jpg| 0| ok\n1.jpg| 1\n", 3),
        ("image_name| comment_number| comment\n1.jpg| 0| ok\n1.jpg| 1|  \n", 3),
        ("image_name| comment_number| comment\n1.jpg| 0| ok\n\n1.jpg| 1| a | b\n", 4),
    ],
)
def test_flickr30k_malformed_line_names_file_and_line(
    tmp_path: Path, text: str, bad_line: int
) -> None:
    path = write(tmp_path / "results.csv", text)
    with pytest.raises(CaptionFormatError, match=rf"results\.csv, line {bad_line}\b"):
        read_flickr30k_csv(path)


def test_flickr30k_csv_folder_gets_the_seeded_split_by_image(tmp_path: Path) -> None:
    root = flickr30k_folder(tmp_path / "f30k", n_images=10, images="Images")
    assert find_captions_file(root) == root / "results.csv"
    assert find_images_dir(root) == root / "Images"
    table = load_split(root, None)
    assert len(table) == 50 and table["caption_id"].tolist() == [0, 1, 2, 3, 4] * 10
    splits = split_sets(root)
    assert_disjoint_and_complete(splits, set(table["image"]))
    expected = split_images(list(dict.fromkeys(table["image"])), seed=0)
    assert splits == {s: set(v) for s, v in expected.items()}
    assert {len(v) for v in splits.values()} == {8, 1}


# --- Karpathy split files ----------------------------------------------------------------------


def karpathy_entry(filename: str, split: str, n: int = 2, filepath: str | None = None) -> dict:
    entry = {"filename": filename, "split": split}
    entry["sentences"] = [{"raw": f" {filename} caption {k} ", "tokens": []} for k in range(n)]
    return entry | ({"filepath": filepath} if filepath else {})


def test_karpathy_flickr30k_split_is_respected_and_restval_is_train(tmp_path: Path) -> None:
    root = flickr30k_folder(tmp_path / "f30k", n_images=6)  # results.csv too: Karpathy wins
    splits = ["train", "restval", "val", "val", "test", "train"]
    entries = [karpathy_entry(f"{i}.jpg", s) for i, s in enumerate(splits)]
    write_json(root / "dataset_flickr30k.json", {"images": entries, "dataset": "flickr30k"})
    assert find_captions_file(root) == root / "dataset_flickr30k.json"
    assert find_images_dir(root) == root / "flickr30k_images"
    assert load_split(root, None).values.tolist()[:2] == [
        ["0.jpg", 0, "0.jpg caption 0"],
        ["0.jpg", 1, "0.jpg caption 1"],
    ]
    assert split_sets(root) == {
        "train": {"0.jpg", "1.jpg", "5.jpg"},
        "dev": {"2.jpg", "3.jpg"},
        "test": {"4.jpg"},
    }


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"images": [karpathy_entry("a.jpg", "holdout")]}, r"images\[0\]: split"),
        ({"images": [{"filename": "a.jpg", "split": "train"}]}, r"images\[0\]: .*'sentences'"),
        ({"images": [karpathy_entry("a.jpg", "test") | {"sentences": [{}]}]}, r"sentences\[0\]"),
        ({"pictures": []}, r"dataset_coco\.json: expected a list under 'images'"),
    ],
)
def test_karpathy_errors_name_file_and_entry(tmp_path: Path, data: dict, where: str) -> None:
    path = write_json(tmp_path / "dataset_coco.json", data)
    with pytest.raises(CaptionFormatError, match=where):
        read_karpathy(path)


# --- COCO Captions ----------------------------------------------------------------------------


def coco_folder(root: Path, train: int = 4, val: int = 6) -> Path:
    """COCO 2017 layout; image ids 1..train are train2017, the next ``val`` are val2017."""
    for folder, ids in (
        ("train2017", range(1, train + 1)),
        ("val2017", range(train + 1, train + val + 1)),
    ):
        images = [{"id": i, "file_name": f"{i:012d}.jpg", "height": 8} for i in ids]
        # Annotations interleave images, as in the real files; the last image gets 6 captions.
        notes = [
            {"image_id": i, "id": 100 * i + k, "caption": f"pic {i} no {k}\n"}
            for k in range(5)
            for i in ids
        ]
        notes.append({"image_id": ids[-1], "id": 0, "caption": "one more"})
        write_json(
            root / "annotations" / f"captions_{folder}.json",
            {"images": images, "annotations": notes},
        )
        for i in ids:
            jpeg(root / folder / f"{i:012d}.jpg")
    return root


def test_coco_2017_table_has_folder_prefixes(tmp_path: Path) -> None:
    root = coco_folder(tmp_path / "coco", train=2, val=1)
    table, source = read_coco(root / "annotations")
    assert table.values.tolist()[:3] == [
        ["train2017/000000000001.jpg", 0, "pic 1 no 0"],
        ["train2017/000000000002.jpg", 0, "pic 2 no 0"],
        ["train2017/000000000001.jpg", 1, "pic 1 no 1"],
    ]
    assert len(table) == 2 * 5 + 1 + 1 * 5 + 1
    assert table.groupby("image")["caption_id"].max().tolist() == [4, 5, 5]
    assert source == {
        "train2017/000000000001.jpg": "train",
        "train2017/000000000002.jpg": "train",
        "val2017/000000000003.jpg": "val2017",
    }


def test_coco_2017_train_is_train_and_val_is_halved_into_dev_and_test(tmp_path: Path) -> None:
    root = coco_folder(tmp_path / "coco", train=4, val=6)
    assert find_captions_file(root) == root / "annotations" / "captions_train2017.json"
    assert find_images_dir(root) == root
    splits = split_sets(root)
    assert splits["train"] == {f"train2017/{i:012d}.jpg" for i in range(1, 5)}
    val = {f"val2017/{i:012d}.jpg" for i in range(5, 11)}
    assert_disjoint_and_complete(splits, splits["train"] | val)
    assert len(splits["dev"]) == len(splits["test"]) == 3
    other_seed = {s: set(load_split(root, s, seed=1)["image"]) for s in ("dev", "test")}
    assert other_seed["dev"] | other_seed["test"] == val  # seeded: same images, new halves


def test_coco_prefix_resolves_to_a_real_file_through_caption_dataset(
    tmp_path: Path, tiny_tokenizer
) -> None:
    root = coco_folder(tmp_path / "coco", train=2, val=2)
    data = CaptionDataset(load_split(root, "test"), find_images_dir(root), tiny_tokenizer)
    assert data.image_names[0].startswith("val2017/")
    assert data[0]["image"].shape == (3, 224, 224)
    Path(root / data.image_names[0]).write_bytes(b"not a jpeg")
    with pytest.warns(UserWarning, match=r"Skipped 1 .*: val2017/0000000000\d\d\.jpg"):
        CaptionDataset(load_split(root, "dev+test"), root, tiny_tokenizer, skip_bad_images=True)


def test_only_val2017_downloaded_still_reads(tmp_path: Path) -> None:
    root = coco_folder(tmp_path / "coco", train=2, val=4)
    (root / "annotations" / "captions_train2017.json").unlink()
    assert find_captions_file(root).name == "captions_val2017.json"
    assert load_split(root, "train").empty and load_split(root, "dev+test")["image"].nunique() == 4


def test_karpathy_coco_reads_2014_names_and_maps_them_onto_a_2017_download(
    tmp_path: Path,
) -> None:
    entries = [
        karpathy_entry("COCO_val2014_000000000001.jpg", "test", filepath="val2014"),
        karpathy_entry("COCO_train2014_000000000002.jpg", "restval", filepath="train2014"),
        karpathy_entry("COCO_val2014_000000000003.jpg", "val", filepath="val2014"),
    ]
    data = {"images": entries, "dataset": "coco"}
    old = tmp_path / "coco2014"
    write_json(old / "dataset_coco.json", data)
    for e in entries:
        jpeg(old / e["filepath"] / e["filename"])
    assert split_sets(old)["test"] == {"val2014/COCO_val2014_000000000001.jpg"}

    new = coco_folder(tmp_path / "coco2017", train=2, val=1)  # 2017 files, Karpathy's split
    write_json(new / "dataset_coco.json", data)
    assert split_sets(new) == {
        "train": {"train2017/000000000002.jpg"},
        "dev": {"val2017/000000000003.jpg"},
        "test": {"train2017/000000000001.jpg"},
    }


ONE_IMAGE = [{"id": 1, "file_name": "a.jpg"}]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('{"images": [],\n "annotations": [\n  {"image_id": 1,, }]}', r", line 3\b"),
        ({"images": ONE_IMAGE, "annotations": [{"image_id": 2, "caption": "x"}]}, r"image_id 2"),
        ({"images": ONE_IMAGE, "annotations": [{"image_id": 1, "caption": " "}]}, r"'caption'"),
        (
            {"images": [{"id": "1", "file_name": "a.jpg"}], "annotations": []},
            r"images\[0\]: .*'id'",
        ),
    ],
)
def test_coco_errors_name_file_and_place(tmp_path: Path, text: str | dict, where: str) -> None:
    path = tmp_path / "annotations" / "captions_val2017.json"
    if isinstance(text, str):
        write(path, text)  # not JSON at all
    else:
        write_json(path, text)
    with pytest.raises(CaptionFormatError, match=rf"captions_val2017\.json.*{where}"):
        read_coco(tmp_path / "annotations")


# --- shared guarantees ----------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["flickr30k", "coco"])
def test_missing_images_are_dropped_with_exactly_one_warning(
    tmp_path: Path, layout: str, unwarned: None
) -> None:
    if layout == "coco":
        root = coco_folder(tmp_path / "coco", train=4, val=4)
        gone = [root / "train2017" / "000000000001.jpg", root / "val2017" / "000000000006.jpg"]
    else:
        root = flickr30k_folder(tmp_path / "f30k", n_images=10)
        gone = [root / "flickr30k_images" / "3.jpg", root / "flickr30k_images" / "7.jpg"]
    for path in gone:
        path.unlink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tables = [load_split(root, s) for s in (*SPLITS, None, "train+dev")]
    said = [str(w.message) for w in caught if "have no file" in str(w.message)]
    assert len(said) == 1 and "captions of 2 images" in said[0], said
    assert len(tables[3]) == sum(len(t) for t in tables[:3])
    assert not {p.name for p in gone} & {Path(i).name for i in tables[3]["image"]}


def test_no_image_folder_is_a_clear_error(tmp_path: Path) -> None:
    write(tmp_path / "results.csv", "image_name| comment_number| comment\n1.jpg| 0| A dog .\n")
    with pytest.raises(FileNotFoundError, match="flickr30k_images, Images"):
        load_split(tmp_path, "train")
    write(tmp_path / "coco" / "annotations" / "captions_val2017.json", '{"images": []}')
    with pytest.raises(FileNotFoundError, match="train2017, val2017"):
        load_split(tmp_path / "coco", None)
    with pytest.raises(FileNotFoundError, match=r"results\.csv or dataset_flickr30k\.json"):
        find_captions_file(tmp_path / "coco" / "annotations")


def test_own_pictures_with_an_image_caption_csv(tmp_path: Path) -> None:
    """Your own photos: Images/ plus a two-column captions.txt, any number of captions each."""
    root = tmp_path / "mine"
    rows = [(f"holiday_{i}.jpg", f'Day {i} at the sea, with "friends" .') for i in range(20)]
    rows.append(("holiday_0.jpg", "A second caption for the first day ."))
    for image, _ in rows:
        jpeg(root / "Images" / image)
    lines = [f'{image},"{caption.replace(chr(34), 2 * chr(34))}"' for image, caption in rows]
    write(root / "captions.txt", "image,caption\n" + "\n".join(lines) + "\n")
    assert find_captions_file(root) == root / "captions.txt"
    table = load_split(root, None)
    assert list(zip(table["image"], table["caption"], strict=True)) == rows
    assert_disjoint_and_complete(split_sets(root), {image for image, _ in rows})


def test_flickr8k_files_win_over_other_layouts(tmp_path: Path) -> None:
    root = flickr30k_folder(tmp_path / "both", n_images=2, images="Images")
    write_json(root / "dataset_flickr30k.json", {"images": [karpathy_entry("0.jpg", "test")]})
    write(root / "captions.txt", "image,caption\n0.jpg,A Flickr8k caption .\n")
    assert find_captions_file(root) == root / "captions.txt"
    assert load_split(root, None)["caption"].tolist() == ["A Flickr8k caption ."]


def test_flickr8k_slice_loads_as_before(shared_flickr: Path, unwarned: None) -> None:
    with pytest.warns(UserWarning, match="dropped"):
        table = read_captions(shared_flickr / "captions.txt", shared_flickr / "Images")
    splits = split_images(table["image"].unique(), shared_flickr)
    assert find_layout(shared_flickr) is None  # nothing here looks like Flickr30k or COCO
    for split in SPLITS:
        expected = table[table["image"].isin(set(splits[split]))].reset_index(drop=True)
        assert load_split(shared_flickr, split).equals(expected)


def test_a_data_root_that_is_a_file_is_called_a_file(tmp_path: Path) -> None:
    """Probe 5j: data.root pointing at a file got 'No caption file in <file>' and a download
    command into it; it must say the path is a file and name its folder."""
    path = tmp_path / "captions.txt"
    path.write_text("image,caption\n")
    with pytest.raises(
        FileNotFoundError, match=rf"data\.root is a file, not a folder: .*parent {tmp_path}"
    ):
        find_captions_file(path)
