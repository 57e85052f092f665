"""Where caches go: next to the data, or in the user's cache when the data is read-only."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from simpleclip.data.cache_dir import data_cache_dir


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
