"""The loss-scaling benchmark runs in smoke mode, prints JSON lines and writes its plot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "loss_scaling.py"


def test_loss_scaling_smoke_run(tmp_path: Path) -> None:
    plot = tmp_path / "plots" / "loss_scaling.png"  # a folder that does not exist yet
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--plot", str(plot)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    assert [(r["device"], r["batch_size"]) for r in rows] == [
        (d, b) for d in devices for b in (32, 64)
    ]
    for row in rows:
        assert row["repeats"] == 1
        assert row["ms"] > 0 and row["ms_min"] > 0
    for small, large in zip(rows[::2], rows[1::2], strict=True):  # the B x B logits: twice the
        assert large["logits_mb"] == 4 * small["logits_mb"] > 0  # batch, four times the memory
    assert plot.stat().st_size > 1000
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
