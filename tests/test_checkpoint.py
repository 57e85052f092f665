"""Atomic checkpoint folders: a crash never leaves a broken checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

from simpleclip.train.checkpoint import atomic_directory, readable_directory


def write(target: Path, text: str) -> None:
    with atomic_directory(target) as tmp:
        (tmp / "weights").write_text(text)


def test_replaces_the_folder_and_leaves_no_temporaries(tmp_path: Path) -> None:
    write(tmp_path / "last", "v1")
    write(tmp_path / "last", "v2")
    assert (tmp_path / "last" / "weights").read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_an_error_while_writing_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    write(tmp_path / "last", "good")
    with pytest.raises(RuntimeError), atomic_directory(tmp_path / "last") as tmp:
        (tmp / "weights").write_text("half")
        raise RuntimeError("disk full")
    assert (tmp_path / "last" / "weights").read_text() == "good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_a_crash_between_the_two_renames_is_recovered(tmp_path: Path) -> None:
    write(tmp_path / "last", "good")
    (tmp_path / "last").rename(tmp_path / "last.old")  # the state a kill -9 could leave
    with pytest.warns(UserWarning, match="previous save"):
        assert readable_directory(tmp_path / "last", "weights") == tmp_path / "last.old"


def test_missing_checkpoint_error_says_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"expected .*weights"):
        readable_directory(tmp_path / "nothing", "weights")
