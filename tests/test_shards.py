"""Webdataset shards: written from a caption folder, read back as the same pairs, split by
reader without a hang, corrupt samples skipped and counted, bad settings refused clearly.

The shards come from the session's synthetic set (``simpleclip shards``); the 2-process run is
``test_shards_distributed.py`` and the real img2dataset run ``test_shards_img2dataset.py``.
"""

from __future__ import annotations

import ast
import io
import json
import sys
import tarfile
import warnings
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("webdataset", reason="pip install 'simpleclip[scale]' (or requirements.txt)")

from simpleclip.cli import main
from simpleclip.config import ConfigError, load_config
from simpleclip.data import build_transforms, load_split
from simpleclip.data.shard_plan import check_split, expand_shards, shard_stream
from simpleclip.data.shard_writer import write_shards
from simpleclip.data.shards import ShardDataset
from simpleclip.data.transforms import ImagePreprocessing
from simpleclip.train import train

REPO = Path(__file__).resolve().parents[1]
PER_SHARD = 24  # the 120-picture set's 96 training pictures: 4 shards


@pytest.fixture(scope="module")
def shards(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_shards(synthetic_root, "train", tmp_path_factory.mktemp("shards"), PER_SHARD)


def _dataset(paths: list[Path], tokenizer, **options) -> ShardDataset:
    transform = build_transforms(ImagePreprocessing(input_size=32), train=False)
    return ShardDataset([str(p) for p in paths], tokenizer, transform, **options)


def _pairs_of_epoch(dataset: ShardDataset) -> list[tuple[int, int]]:
    seen = []
    for batch in dataset.loader():
        seen += zip(batch["image_ids"].tolist(), batch["text_ids"].tolist(), strict=True)
    return seen


def test_shards_hold_the_split_in_img2dataset_layout(shards, synthetic_root) -> None:
    train_split = load_split(synthetic_root, "train")
    assert [p.name for p in shards] == ["00000.tar", "00001.tar", "00002.tar", "00003.tar"]
    with tarfile.open(shards[0]) as tar:
        names = tar.getnames()
        meta = json.loads(tar.extractfile(names[1]).read())
        text = tar.extractfile(names[2]).read().decode()
    assert names[:3] == ["000000000.jpg", "000000000.json", "000000000.txt"]
    image = meta["image"]
    assert meta["captions"] == list(train_split[train_split["image"] == image]["caption"])
    assert text == meta["captions"][0]  # img2dataset's one caption
    stats = json.loads((shards[0].parent / "00000_stats.json").read_text())
    assert stats == {"count": PER_SHARD, "successes": PER_SHARD, "captions": 5 * PER_SHARD}
    with tarfile.open(shards[0]) as tar:  # the picture's own bytes, not re-encoded
        first = tar.extractfile("000000000.jpg").read()
    assert first == (synthetic_root / "Images" / image).read_bytes()


def test_an_epoch_gives_every_pair_of_the_split_once(shards, tiny_tokenizer) -> None:
    dataset = _dataset(shards, tiny_tokenizer, batch_size=16, shuffle_buffer=50)
    pairs = _pairs_of_epoch(dataset)
    assert len(pairs) == len(dataset) == 96 * 5 == dataset.steps * 16
    assert len(set(pairs)) == len(pairs)  # no pair twice
    assert set(Counter(i for i, _ in pairs).values()) == {5}  # each picture with its 5 captions
    dataset.set_epoch(1)
    again = _pairs_of_epoch(dataset)
    assert set(again) == set(pairs) and again != pairs  # the same pairs, another order


def test_one_caption_per_picture_and_epoch(shards, tiny_tokenizer) -> None:
    dataset = _dataset(shards, tiny_tokenizer, batch_size=16, pairs="one_per_image")
    first = _pairs_of_epoch(dataset)
    assert len(first) == 96 and len({i for i, _ in first}) == 96
    dataset.set_epoch(1)
    second = _pairs_of_epoch(dataset)
    assert {i for i, _ in second} == {i for i, _ in first} and set(second) != set(first)


def test_resampled_epochs_are_samples_per_epoch_long(shards, tiny_tokenizer) -> None:
    """Shards drawn with replacement: the epoch is ``samples_per_epoch`` pairs, whatever the
    shards hold, and pictures may come twice."""
    dataset = _dataset(
        shards[:1],
        tiny_tokenizer,
        batch_size=16,
        pairs="one_per_image",
        resampled=True,
        samples_per_epoch=64,
        num_workers=2,
    )  # one shard of 24 pictures, read by 2 workers: refused without resampling
    pairs = _pairs_of_epoch(dataset)
    assert len(pairs) == len(dataset) == 64 and dataset.steps == 4
    assert len({i for i, _ in pairs}) <= PER_SHARD


def test_readers_take_disjoint_shards_that_cover_the_epoch() -> None:
    urls = [f"{n:05d}.tar" for n in range(10)]
    passes = [next(shard_stream(urls, r, 4, seed=0, epoch=3, resampled=False)) for r in range(4)]
    assert sorted(u for p in passes for u in p) == urls and [len(p) for p in passes] == [3, 3, 2, 2]
    resampled = next(shard_stream(urls, 0, 4, seed=0, epoch=3, resampled=True))
    assert len(resampled) == 10 and len(set(resampled)) < 10  # drawn with replacement


def test_fewer_shards_than_readers_is_refused_with_what_to_change() -> None:
    with pytest.raises(ValueError) as refused:
        check_split(n_shards=3, ranks=2, workers=2, resampled=False)
    message = str(refused.value)
    assert "3 shards cannot feed 2 ranks × 2 DataLoader workers = 4 readers" in message
    assert "webdataset issue #188" in message
    for fix in ("--per-shard", "data.num_workers=1", "data.resampled=true"):
        assert fix in message
    check_split(n_shards=3, ranks=2, workers=2, resampled=True)  # resampling cannot starve
    check_split(n_shards=4, ranks=2, workers=2, resampled=False)


def test_a_hanging_configuration_is_refused_before_training(
    shards, synthetic_root, tiny_config, tmp_path
) -> None:
    pattern = str(shards[0].parent / "{00000..00001}.tar")  # 2 shards for 4 workers
    config = tiny_config(
        synthetic_root,
        tmp_path / "run",
        "data.format=webdataset",
        f"data.shards={pattern}",
        "data.num_workers=4",
        "data.val_split=none",
    )
    with pytest.raises(ValueError, match="2 shards cannot feed 1 ranks × 4 DataLoader"):
        train(config, progress=False)
    assert not (tmp_path / "run").exists()  # refused before the run folder was made


def test_bad_shard_settings_say_what_to_change(shards, tmp_path, capsys) -> None:
    with pytest.raises(ValueError, match=r"data.format=webdataset needs data.shards"):
        expand_shards([])
    with pytest.raises(FileNotFoundError, match=r"2 of 6 shards do not exist, e.g. .*00004.tar"):
        expand_shards([str(shards[0].parent / "{00000..00005}.tar")])
    with pytest.raises(ConfigError, match=r"data.format must be 'folder' or 'webdataset'"):
        load_config("synthetic_tiny", ["data.format=tar"])
    with pytest.raises(ConfigError, match=r"samples_per_epoch and data.shuffle_buffer must be"):
        load_config("synthetic_tiny", ["data.samples_per_epoch=-1"])
    command = ["train", "--config", "synthetic_tiny", "--set", f"train.out_dir={tmp_path}/r"]
    assert main([*command, "--set", "data.format=webdataset"]) == 1
    assert "needs data.shards" in capsys.readouterr().err  # one line, before any data is made
    assert main([*command, "--set", "data.format=webdataset", "--set", "data.shards=x.tar"]) == 1
    assert "1 of 1 shards do not exist, e.g. x.tar" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def _corrupt_copy(source: Path, target: Path) -> Path:
    """``source`` with one picture replaced by garbage and one caption removed."""
    with tarfile.open(source) as old, tarfile.open(target, "w") as new:
        for member in old:
            data = old.extractfile(member).read()
            if member.name == "000000001.jpg":
                data = b"not a jpeg at all"
            if member.name in ("000000002.txt", "000000002.json"):
                continue
            member.size = len(data)
            new.addfile(member, io.BytesIO(data))
    return target


def test_corrupt_samples_are_skipped_counted_and_reported(shards, tiny_tokenizer, tmp_path):
    bad = _corrupt_copy(shards[0], tmp_path / "00000.tar")
    dataset = _dataset([bad], tiny_tokenizer, batch_size=4, pairs="one_per_image", shuffle_buffer=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pairs = _pairs_of_epoch(dataset)
    said = "\n".join(str(w.message) for w in caught)
    assert "Skipped 4 undecodable or incomplete samples of the shards in epoch 1" in said
    assert "000000001: undecodable picture (UnidentifiedImageError)" in said  # named
    assert "000000002: no caption" in said
    # the garbage picture and the sample without a caption, in both passes over the shard:
    # the epoch keeps its 6 steps (24 pairs counted in the tar) by reading 2 pictures again
    assert dataset.skipped == 4
    assert len(pairs) == dataset.steps * 4 == PER_SHARD
    assert len({i for i, _ in pairs}) == PER_SHARD - 2


def test_shards_command_writes_each_split_and_prints_the_settings(
    synthetic_root, tmp_path, capsys
) -> None:
    command = ["shards", "--data", str(synthetic_root), "--split", "test", "--out", str(tmp_path)]
    assert main([*command, "--per-shard", "5"]) == 0
    test_images = load_split(synthetic_root, "test")["image"].nunique()
    assert len(list((tmp_path / "test").glob("*.tar"))) == -(-test_images // 5)  # rounded up
    assert f"data.shards={tmp_path}/test/{{00000.." in capsys.readouterr().out
    assert main(command) == 1
    assert "already holds shards: remove them" in capsys.readouterr().err


def test_webdataset_is_imported_only_when_shards_are_read() -> None:
    """No module of the package imports webdataset (or braceexpand) when it is imported: only
    functions that read or write shards do, so the package works without the [scale] extra."""
    optional = {"webdataset", "braceexpand", "img2dataset"}
    at_import = []
    for path in (REPO / "simpleclip").rglob("*.py"):
        for node in ast.parse(path.read_text()).body:  # module level only
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                names.append(getattr(node, "module", None) or "")
                at_import += [f"{path.name}: {n}" for n in names if n.split(".")[0] in optional]
    assert not at_import
    inside = (REPO / "simpleclip" / "data" / "shards.py").read_text()
    assert "        import webdataset\n" in inside  # in require_webdataset


def test_without_webdataset_the_error_says_how_to_install_it(monkeypatch, shards) -> None:
    monkeypatch.setitem(sys.modules, "webdataset", None)  # what a missing package looks like
    with pytest.raises(RuntimeError, match=r"pip install 'simpleclip\[scale\]'"):
        _dataset(shards, None, batch_size=16)
