"""A real run killed (SIGKILL) at several points resumes to the model and the history of a run
that was never interrupted: the same weights, bit for bit, and exactly one ``metrics.jsonl``
line per epoch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from simpleclip.config import save_config
from simpleclip.model import CLIPModel
from simpleclip.train import train

# Runs `train` in a fresh interpreter that kills itself with SIGKILL at the point named by argv[2].
KILLED_RUN = """
import os, signal, sys
import simpleclip.train.loop as loop
from simpleclip.config import load_config
from simpleclip.train.trainer import Trainer

point, steps = sys.argv[2], [0]
real_step, real_save_last = Trainer.step, loop._save_last

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def step(self, batch):  # counts the steps of the whole run
    steps[0] += 1
    if point == "first-epoch" and steps[0] == 2:
        die()
    if point == "mid-epoch-2" and steps[0] == int(sys.argv[3]) + 2:
        die()
    return real_step(self, batch)

def save_last(trainer, last, state, rng_states):  # after epoch 2's line, before its checkpoint
    if point == "after-metrics-line" and state["epoch"] == 2:
        die()
    return real_save_last(trainer, last, state, rng_states)

Trainer.step, loop._save_last = step, save_last
loop.train(load_config(sys.argv[1]), progress=False)
"""


def _epochs_and_scores(run: Path) -> list[tuple[int, float, dict]]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [(r["epoch"], r["train_loss"], r["val"]) for r in map(json.loads, lines)]


@pytest.fixture(scope="module")
def straight(tiny_config, synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """The run nobody interrupted: 3 epochs."""
    run = tmp_path_factory.mktemp("straight") / "a"
    return train(tiny_config(synthetic_root, run, "train.epochs=3"), progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["first-epoch", "mid-epoch-2", "after-metrics-line"])
def test_a_killed_run_resumes_to_the_uninterrupted_model_and_history(
    point: str, straight, tiny_config, synthetic_root: Path, tmp_path: Path, capsys
) -> None:
    steps_per_epoch = straight.history[0]["step"]
    config = tiny_config(synthetic_root, tmp_path / "b", "train.epochs=3")
    save_config(config, tmp_path / "config.yaml")
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            KILLED_RUN,
            str(tmp_path / "config.yaml"),
            point,
            str(steps_per_epoch),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert killed.returncode == -9, killed.stderr[-2000:]  # it really died mid-run
    resumed = train(config, resume=True, progress=False)
    if point == "first-epoch":
        assert "Nothing to resume" in capsys.readouterr().out  # and it started again
    for name, tensor in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], tensor, rtol=0, atol=0)
    assert _epochs_and_scores(tmp_path / "b") == _epochs_and_scores(straight.out_dir)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    assert not list((tmp_path / "b").glob(".*.tmp-*"))  # no half-written checkpoint left
    best = CLIPModel.load(tmp_path / "b" / "best")
    assert torch.equal(best.logit_scale, CLIPModel.load(straight.best_dir).logit_scale)


def test_a_full_disk_says_so_keeps_the_last_checkpoint_and_resumes_cleanly(
    tiny_config, synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import simpleclip.train.loop as loop
    from simpleclip.train.checkpoint import DiskFullError
    from simpleclip.train.reporting import JsonlReporter

    config = tiny_config(synthetic_root, tmp_path / "run", "train.epochs=3")
    real_save, real_log = torch.save, JsonlReporter.log

    def save_on_a_full_disk(obj, path, *args, **kwargs):  # what torch.save says then
        if Path(path).name == "trainer_state.pt" and obj["progress"]["epoch"] == 2:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 807424")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(loop.torch, "save", save_on_a_full_disk)
    with pytest.raises(DiskFullError, match=r"is full \(\d+ MB free\); last/ still holds epoch 1"):
        train(config, progress=False)
    monkeypatch.setattr(loop.torch, "save", real_save)
    assert not (tmp_path / "run" / "train.lock").exists()  # the lock went with the run
    assert CLIPModel.load(tmp_path / "run" / "last")  # the earlier checkpoint is whole

    def log_half_a_line(self, record, step):  # the disk fills in the middle of epoch 3's line
        if record["epoch"] == 3:
            with self.path.open("a") as f:
                f.write(json.dumps(record)[:40])
            raise OSError(28, "No space left on device")
        return real_log(self, record, step)

    monkeypatch.setattr(JsonlReporter, "log", log_half_a_line)
    with pytest.raises(DiskFullError, match=r"last/ still holds epoch 2, complete"):
        train(config, resume=True, progress=False)
    monkeypatch.setattr(JsonlReporter, "log", real_log)
    train(config, resume=True, progress=False)  # space freed: the run finishes
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]  # no cut or doubled line


def test_a_full_disk_when_locking_leaves_no_lock_behind(tmp_path: Path, monkeypatch) -> None:
    from simpleclip.train.checkpoint import DiskFullError
    from simpleclip.train.run_dir import claim_run_dir

    def full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    claim = claim_run_dir(tmp_path / "run")
    with pytest.raises(DiskFullError, match=r"is full .*nothing was written"), claim:
        pass
    monkeypatch.undo()
    assert [p.name for p in (tmp_path / "run").iterdir()] == []


def test_a_full_disk_in_the_safetensors_writer_says_so_too(
    tiny_config, synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Probe 2e: safetensors' writer raises SafetensorError (an Exception, neither OSError nor
    RuntimeError) with the OS message as text; it must read as a full disk, not a traceback."""
    from safetensors import SafetensorError

    import simpleclip.model as model_module
    from simpleclip.train.checkpoint import DiskFullError

    def write_on_a_full_disk(*args, **kwargs):
        raise SafetensorError(
            "Error while serializing: I/O error: No space left on device (os error 28)"
        )

    monkeypatch.setattr(model_module, "save_file", write_on_a_full_disk)
    config = tiny_config(synthetic_root, tmp_path / "run", "train.epochs=1")
    with pytest.raises(DiskFullError, match=r"is full .*nothing is lost but this run's time"):
        train(config, progress=False)
    assert not (tmp_path / "run" / "train.lock").exists()
