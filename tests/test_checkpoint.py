"""Atomic checkpoint folders (a crash never leaves a broken checkpoint) and the saved RNG state.

Every rank's RNG state under torchrun is tested in ``tests/test_distributed.py`` (resume).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from simpleclip.checkpoint import (
    atomic_directory,
    atomic_file,
    draft_of,
    previous_of,
    readable_directory,
)
from simpleclip.train.checkpoint import gather_rng_states, restore_rng_state
from simpleclip.train.run_dir import run_files


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


def test_what_a_killed_save_leaves_in_a_run_folder_is_a_run_file(tmp_path: Path) -> None:
    # The run folder's cleanup (train/run_dir.py) must know the names the swap uses.
    with atomic_directory(tmp_path / "best") as tmp:
        assert tmp == draft_of(tmp_path / "best")  # the new version is written here
        killed = draft_of(tmp_path / "last", owner=4242)
        killed.mkdir()  # the draft of a process killed while saving
    (tmp_path / "best").rename(previous_of(tmp_path / "best"))  # killed between the renames
    assert run_files(tmp_path) == [killed, tmp_path / "best.old"]


def test_a_file_written_atomically_is_whole_or_not_there_and_threads_never_share_a_draft(
    tmp_path: Path,
) -> None:
    import threading

    target = tmp_path / "sub" / "cache.txt"
    with pytest.raises(RuntimeError), atomic_file(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert not target.exists() and list(target.parent.iterdir()) == []  # no draft left behind
    drafts: list[Path] = []
    both_writing = threading.Barrier(2)

    def write(text: str) -> None:
        with atomic_file(target) as tmp:
            drafts.append(tmp)
            tmp.write_text(text * 1000)
            both_writing.wait(timeout=10)  # both drafts exist at once

    threads = [threading.Thread(target=write, args=(c,)) for c in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(drafts)) == 2  # each thread its own temporary file
    assert target.read_text() in ("a" * 1000, "b" * 1000)  # one whole version, never a mix
    assert [p.name for p in target.parent.iterdir()] == ["cache.txt"]


def test_missing_checkpoint_error_says_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"expected .*weights"):
        readable_directory(tmp_path / "nothing", "weights")


def test_one_process_saves_one_rng_row_and_restoring_it_replays_the_draws() -> None:
    torch.manual_seed(3)
    states = gather_rng_states()
    assert states.shape == (1, len(torch.get_rng_state())) and states.dtype == torch.uint8
    assert torch.equal(states[0], torch.get_rng_state())
    expected = torch.rand(5)
    restore_rng_state(states)
    assert torch.equal(torch.rand(5), expected)


def test_rng_rows_of_another_number_of_ranks_resume_from_rank_0() -> None:
    """A 2-rank checkpoint resumed in one process: rank 0's row, not a crash or rank 1's."""
    rows, draws = [], []
    for seed in (0, 1):  # what ranks 0 and 1 would have saved, and their next draws
        torch.manual_seed(seed)
        rows.append(torch.get_rng_state())
        draws.append(torch.rand(5))
    restore_rng_state(torch.stack(rows))
    assert torch.equal(torch.rand(5), draws[0]) and not torch.equal(draws[0], draws[1])
