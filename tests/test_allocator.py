"""simpleclip.allocator: glibc keeps freed memory, so a loop of big tensors stops page-faulting.

The mallopt calls are checked through a stand-in for the C function; one subprocess test counts
the real page faults of a loop of large allocations, with and without the setting.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from simpleclip import allocator
from simpleclip.allocator import (
    M_MMAP_MAX,
    M_MMAP_THRESHOLD,
    M_TRIM_THRESHOLD,
    MMAP_THRESHOLD,
    TRIM_THRESHOLD,
    keep_freed_memory,
)
from simpleclip.cli.main import main
from simpleclip.config import save_config

GLIBC = sys.platform.startswith("linux") and allocator._libc_version().startswith("glibc")


def fake_mallopt(monkeypatch: pytest.MonkeyPatch, refuse: tuple[int, ...] = ()) -> list[tuple]:
    """Replace libc's mallopt with a recorder (1 = accepted, 0 for ``refuse``d parameters)."""
    calls: list[tuple[int, int]] = []

    def mallopt(param: int, value: int) -> int:
        calls.append((param, value))
        return 0 if param in refuse else 1

    monkeypatch.setattr(allocator, "_applied", False)
    monkeypatch.setattr(allocator, "_glibc_mallopt", lambda: mallopt)
    monkeypatch.delenv(allocator.TUNABLES, raising=False)
    return calls


def test_sets_the_mmap_and_trim_thresholds_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_mallopt(monkeypatch)
    assert keep_freed_memory() is True
    assert calls == [(M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD)]
    assert MMAP_THRESHOLD >= 2**30 and TRIM_THRESHOLD == -1  # no mmap for activations, no trim
    assert keep_freed_memory() is True and len(calls) == 2  # idempotent: nothing more to do


def test_a_capped_mmap_threshold_falls_back_to_no_mmap(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_mallopt(monkeypatch, refuse=(M_MMAP_THRESHOLD,))  # older glibc: at most 32 MiB
    assert keep_freed_memory() is True
    assert calls[1:] == [(M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, TRIM_THRESHOLD)]


def test_not_applied_without_glibc_or_when_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_mallopt(monkeypatch)
    monkeypatch.setattr(allocator, "_glibc_mallopt", lambda: None)  # macOS, Windows, musl
    assert keep_freed_memory() is False
    calls = fake_mallopt(monkeypatch, refuse=(M_MMAP_THRESHOLD, M_MMAP_MAX))
    assert keep_freed_memory() is False and len(calls) == 2


def test_a_tunable_from_the_environment_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_mallopt(monkeypatch)
    monkeypatch.setenv(allocator.TUNABLES, "glibc.malloc.mmap_threshold=4194304")
    assert keep_freed_memory() is True and calls == []


FAULT_LOOP = """
import json, resource, sys, torch
from simpleclip.allocator import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "on" else False
def loop(n):
    for _ in range(n):
        x = torch.ones(8 * 2**20)  # 32 MiB, written: every new page faults once
        del x
loop(10)  # the heap settles: a 64-byte aligned block does not fit the last one's hole at first
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
loop(10)
after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
print(json.dumps({"applied": applied, "faults": after - before}))
"""


@pytest.mark.skipif(not GLIBC, reason="the setting is glibc's (Linux)")
def test_a_loop_of_large_tensors_stops_faulting() -> None:
    env = {k: v for k, v in os.environ.items() if k != allocator.TUNABLES}

    def faults(mode: str) -> dict:
        command = [sys.executable, "-c", FAULT_LOOP, mode]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        return json.loads(done.stdout.splitlines()[-1])

    off, on = faults("off"), faults("on")
    assert on["applied"] is True
    assert off["faults"] > 10 * 4000  # 32 MiB = 8,192 pages of 4 KiB, mapped afresh each time
    assert on["faults"] < off["faults"] / 10  # the same memory, reused


@pytest.mark.parametrize("setting", ["true", "false"])
def test_train_applies_it_unless_set_off(
    setting: str, synthetic_root: Path, tiny_config, tmp_path: Path, monkeypatch
) -> None:
    """``--set train.keep_freed_memory=false`` turns it off; it comes before any data or model."""
    from simpleclip.train import loop

    calls = []
    monkeypatch.setattr(loop, "keep_freed_memory", lambda: calls.append("called"))

    def stop(config):  # the first thing after the allocator: no need to train
        raise RuntimeError("stopped before the data")

    monkeypatch.setattr(loop, "prepare_data", stop)
    config_file = tmp_path / "tiny.yaml"
    save_config(tiny_config(synthetic_root, tmp_path / "run", "train.device=cpu"), config_file)
    args = ["train", "--config", str(config_file), "--set", f"train.keep_freed_memory={setting}"]
    assert main(args) == 1  # stopped by ``stop``
    assert calls == (["called"] if setting == "true" else [])


def test_eval_applies_it_on_a_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append("called"))
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    args = ["eval", "--checkpoint", str(tmp_path / "missing"), "--data", str(tmp_path)]
    assert main(args) == 1  # no checkpoint there: the setting came first
    assert calls == ["called"]
