"""Caches: one folder rule, fingerprints for any dtype, file stamps, damaged files ignored."""

from __future__ import annotations

import copy
import os
import stat
from pathlib import Path

import pytest
import torch
from torch import nn

from simpleclip.cache import (
    data_cache_dir,
    digest,
    file_stamp,
    read_cache_file,
    user_cache_dir,
    weights_fingerprint,
)
from simpleclip.checkpoint import atomic_file
from simpleclip.search import default_cache_dir


def test_writable_data_keeps_its_cache_beside_it(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    assert data_cache_dir(tmp_path / "data") == (tmp_path / "data" / ".cache").resolve()


def test_read_only_data_gets_a_cache_folder_of_its_own(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SIMPLECLIP_CACHE", str(tmp_path / "user-cache"))
    shared = [tmp_path / "a" / "flickr", tmp_path / "b" / "flickr"]
    for folder in shared:
        folder.mkdir(parents=True)
        folder.chmod(stat.S_IRUSR | stat.S_IXUSR)  # r-x: shared, read-only data
    try:
        first, second = (data_cache_dir(folder) for folder in shared)
    finally:
        for folder in shared:
            folder.chmod(stat.S_IRWXU)
    assert first.parent == tmp_path / "user-cache" / "data"
    assert first.name.startswith("flickr-") and first != second  # same name, other folder


@pytest.mark.parametrize("relative", [True, False])
def test_the_same_folder_always_maps_to_the_same_cache(tmp_path: Path, monkeypatch, relative):
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    path = Path("data") if relative else tmp_path / "data"
    assert data_cache_dir(path) == data_cache_dir(tmp_path / "data")


def test_a_cache_folder_inside_read_only_data_is_not_used(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SIMPLECLIP_CACHE", str(tmp_path / "user-cache"))
    shared = tmp_path / "shared"
    (shared / ".cache").mkdir(parents=True)  # e.g. left by an older version
    shared.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        assert data_cache_dir(shared).parent == tmp_path / "user-cache" / "data"
    finally:
        shared.chmod(stat.S_IRWXU)


def test_simpleclip_cache_holds_every_cache_in_its_own_sub_folder(
    tmp_path: Path, monkeypatch
) -> None:
    root = tmp_path / "user-cache"
    monkeypatch.setenv("SIMPLECLIP_CACHE", str(root))
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        data = data_cache_dir(shared)
    finally:
        shared.chmod(stat.S_IRWXU)
    assert user_cache_dir() == root
    assert default_cache_dir() == root / "search"  # search indexes: not in the root itself
    assert data.parent == root / "data"


def test_without_simpleclip_cache_xdg_then_home(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("SIMPLECLIP_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert user_cache_dir("search") == tmp_path / "xdg" / "simpleclip" / "search"
    assert default_cache_dir() == tmp_path / "xdg" / "simpleclip" / "search"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert user_cache_dir("data") == tmp_path / "home" / ".cache" / "simpleclip" / "data"


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3), nn.BatchNorm1d(3))


def test_a_bfloat16_model_fingerprints_apart_from_its_float32_original() -> None:
    model = small_model()
    half = copy.deepcopy(model).to(torch.bfloat16)
    assert weights_fingerprint(half) == weights_fingerprint(copy.deepcopy(half))  # stable
    # Another dtype computes other numbers, so it is another model for every cache.
    assert weights_fingerprint(half) != weights_fingerprint(model)
    before = weights_fingerprint(half)
    with torch.no_grad():
        half[0].weight[1, 2] += 1.0  # one weight
    assert weights_fingerprint(half) != before


def test_the_fingerprint_sees_every_tensor_and_nothing_else() -> None:
    model = small_model()
    base = weights_fingerprint(model)
    model.train()(torch.randn(8, 4))  # BatchNorm's running statistics are state too
    assert weights_fingerprint(model) != base
    same = copy.deepcopy(model)
    same.requires_grad_(False).eval()  # flags are not weights
    assert weights_fingerprint(same) == weights_fingerprint(model)
    assert weights_fingerprint(model[0], model[1]) != weights_fingerprint(model[1], model[0])


def test_the_fingerprint_equals_a_hash_of_the_bytes_written_out_by_hand() -> None:
    layer = nn.Linear(2, 2, bias=False).to(torch.bfloat16)
    raw = layer.weight.detach().contiguous().view(-1).view(torch.int16).numpy().tobytes()
    assert len(raw) == 2 * 4  # 4 bf16 numbers, 2 bytes each
    expected = digest(f"0.weight:{torch.bfloat16}:(2, 2)", raw)
    assert weights_fingerprint(layer) == expected


def test_digest_parts_do_not_run_into_each_other() -> None:
    assert digest("ab", "c") != digest("a", "bc")
    assert digest("a") == digest(b"a")


def test_file_stamp_changes_when_a_file_is_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg"
    path.write_bytes(b"12345")
    first = file_stamp(path)
    assert first[0] == 5 and file_stamp(path) == first
    info = path.stat()
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 10**9))  # same size, 1 s later
    assert file_stamp(path) != first


def test_cache_files_are_written_whole_and_damaged_ones_read_as_none(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "f.pt"
    with atomic_file(path) as tmp:
        torch.save({"x": torch.arange(3)}, tmp)
    torch.testing.assert_close(read_cache_file(path)["x"], torch.arange(3))
    assert [p.name for p in path.parent.iterdir()] == ["f.pt"]  # no temporary file left
    assert read_cache_file(tmp_path / "missing.pt") is None
    path.write_bytes(b"garbage from an older version")
    assert read_cache_file(path) is None
