"""A new run never destroys an earlier one, and two runs never train into one folder at once."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from simpleclip.cli import main
from simpleclip.paths import shown_path
from simpleclip.train import train
from simpleclip.train.run_dir import LOCK, RunDirBusy, claim_run_dir, remove_run_files, run_files

HOLD_THE_LOCK = (
    "import sys, time; from simpleclip.train.run_dir import claim_run_dir\n"
    "with claim_run_dir(sys.argv[1]):\n"
    "    print('claimed', flush=True); time.sleep(120)\n"
)


@pytest.fixture(autouse=True)
def _keep_threads() -> Iterator[None]:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # train() sets it for the whole process


def _cli_train(root: Path, out: Path) -> list[str]:
    settings = [
        f"data.root={root}",
        "data.synthetic_images=0",
        f"train.out_dir={out}",
        "train.batch_size=32",
        "train.warmup_steps=2",
        "head.embed_dim=32",
        "train.threads=1",
    ]
    return ["train", "--config", "synthetic_tiny", *(a for s in settings for a in ("--set", s))]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_second_run_is_refused_and_overwrite_replaces_it(
    synthetic_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "x"
    command = _cli_train(synthetic_root, out)
    assert main([*command, "--set", "train.epochs=1"]) == 0
    (out / "notes.txt").write_text("mine, not a run file")
    first = _snapshot(out)
    assert {"best/model.safetensors", "last/model.safetensors", "metrics.jsonl"} <= set(first)
    capsys.readouterr()

    assert main([*command, "--set", "train.epochs=2"]) == 1
    error = capsys.readouterr().err
    assert f"{out} already holds a run" in error and "--resume" in error and "--overwrite" in error
    assert _snapshot(out) == first  # byte for byte: checkpoints, metrics, config

    assert main([*command, "--set", "train.epochs=2", "--overwrite"]) == 0
    # shown as printed paths are (relative when the checkout sits beside the temporary folder)
    assert f"Replacing the earlier run in {shown_path(out)}" in capsys.readouterr().out
    lines = (out / "metrics.jsonl").read_text().splitlines()
    epochs = [json.loads(line)["epoch"] for line in lines]
    assert epochs == [1, 2]  # a fresh run, not the old one's lines plus new ones
    assert (out / "notes.txt").read_text() == "mine, not a run file"
    assert not (out / LOCK).exists()


def test_resume_and_overwrite_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not both"), claim_run_dir(tmp_path, True, True):
        pass


def test_overwrite_removes_only_run_files(tmp_path: Path) -> None:
    for name in ("best", "last.old", ".last.tmp-123", "model"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.safetensors").write_text("weights")
    for name in ("metrics.jsonl", "config.yaml", "training_curves.png", "notes.txt"):
        (tmp_path / name).write_text(name)
    (tmp_path / "data").mkdir()
    assert [p.name for p in run_files(tmp_path)] == [
        ".last.tmp-123",
        "best",
        "config.yaml",
        "last.old",
        "metrics.jsonl",
        "model",
        "training_curves.png",
    ]
    remove_run_files(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "notes.txt"]


def test_the_replacing_message_names_the_folder_as_the_working_directory_sees_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    repo = tmp_path / "repo"
    (repo / "notebooks").mkdir(parents=True)
    out = repo / "runs" / "course"
    out.mkdir(parents=True)

    def replace(cwd: Path) -> str:
        (out / "metrics.jsonl").write_text('{"epoch": 1}\n')
        monkeypatch.chdir(cwd)
        with claim_run_dir(out, overwrite=True):
            pass
        return capsys.readouterr().out

    # From a notebook (one level below the repository) and from the repository: no machine path
    assert "run in ../runs/course (overwrite)" in replace(repo / "notebooks")
    assert "run in runs/course (overwrite)" in replace(repo)
    far = tmp_path / "a" / "b" / "c"
    far.mkdir(parents=True)
    assert f"run in {out} (overwrite)" in replace(far)  # "../../../repo/..." says less than this


def test_a_live_lock_refuses_a_second_run(tiny_config, synthetic_root: Path, tmp_path: Path):
    out = tmp_path / "busy"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_LOCK, str(out)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "claimed"
        lock = json.loads((out / LOCK).read_text())
        assert lock == {"pid": holder.pid, "host": socket.gethostname()}
        with pytest.raises(RunDirBusy, match=f"PID {holder.pid} on .* is training into"):
            train(tiny_config(synthetic_root, out, "train.threads=1"), progress=False)
        assert not run_files(out) and (out / LOCK).is_file()  # nothing written, lock kept
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_lock_from_a_killed_run_is_taken_over(
    tiny_config, synthetic_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "stale"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_LOCK, str(out)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "claimed"
    os.kill(holder.pid, signal.SIGKILL)  # no clean-up: the lock stays behind
    holder.wait()
    assert json.loads((out / LOCK).read_text())["pid"] == holder.pid
    config = tiny_config(synthetic_root, out, "train.epochs=1", "train.threads=1")
    result = train(config, progress=False)
    assert [r["epoch"] for r in result.history] == [1] and not (out / LOCK).exists()


def test_locks_of_other_machines_are_respected_and_garbage_is_not(tmp_path: Path) -> None:
    lock = tmp_path / LOCK
    lock.write_text(json.dumps({"pid": os.getpid(), "host": "another-machine"}))
    with pytest.raises(RunDirBusy, match="another-machine"), claim_run_dir(tmp_path):
        pass
    assert lock.is_file()  # not ours to remove
    lock.write_text("half a lo")  # unreadable: nobody can own it
    with claim_run_dir(tmp_path):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()


def test_the_same_process_cannot_claim_a_folder_twice(tmp_path: Path) -> None:
    with claim_run_dir(tmp_path):
        with pytest.raises(RunDirBusy, match=f"PID {os.getpid()}"), claim_run_dir(tmp_path):
            pass
        assert (tmp_path / LOCK).is_file()
    assert not (tmp_path / LOCK).exists()


def test_other_torchrun_ranks_do_not_claim(tmp_path: Path) -> None:
    with claim_run_dir(tmp_path / "r", main=False) as out:
        assert out == tmp_path / "r" and not out.exists()


def test_a_run_stopped_before_its_first_epoch_ended_can_start_again(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("train: {}")
    (tmp_path / "metrics.jsonl").write_text("")  # no epoch finished: nothing to lose
    with claim_run_dir(tmp_path):
        pass
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1}\n')
    with pytest.raises(FileExistsError, match="already holds a run"), claim_run_dir(tmp_path):
        pass


def test_resume_removes_what_a_killed_run_half_wrote_and_keeps_the_rest(tmp_path: Path) -> None:
    """Probes 1d, 1e, 1i: a run killed while writing best/ or last/ leaves .best.tmp-PID and
    .last.tmp-PID folders; resuming (the lock says no run is live) removes them, and only them."""
    for name in (".best.tmp-4242", ".last.tmp-4343", "best", "last"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.safetensors").write_text("weights")
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1}\n')
    with claim_run_dir(tmp_path, resume=True):
        assert sorted(p.name for p in tmp_path.iterdir() if p.name != LOCK) == [
            "best",
            "last",
            "metrics.jsonl",
        ]
    assert (tmp_path / "best" / "model.safetensors").read_text() == "weights"
