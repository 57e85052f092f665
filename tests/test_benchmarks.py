"""The benchmarks run end to end in their smoke modes, so they never rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "train_throughput.py"


def test_train_throughput_smoke_prints_both_modes_and_the_ratio() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    baseline, fast, ratio = lines
    assert (baseline["mode"], fast["mode"]) == ("baseline", "fast")
    for row in (baseline, fast):
        assert row["step_pairs_per_s"] > 0 and row["loop_pairs_per_s"] > 0
        assert row["peak_memory_mb"] > 0 and row["config"] == "synthetic_tiny"
    expected = fast["loop_pairs_per_s"] / baseline["loop_pairs_per_s"]
    assert abs(ratio["speedup_full_loop"] - expected) < 0.01


def test_feature_cache_smoke_prints_both_runs_and_the_ratio() -> None:
    script = SCRIPT.with_name("feature_cache.py")
    result = subprocess.run(
        [sys.executable, str(script), "--smoke"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    recomputed, cached, ratio = [json.loads(line) for line in result.stdout.splitlines()]
    assert (recomputed["features"], cached["features"]) == ("recomputed", "cached")
    assert recomputed["epochs"] == cached["epochs"] == 2
    expected = recomputed["epoch_seconds"] / cached["epoch_seconds"]
    assert abs(ratio["epoch_speedup"] - expected) < 0.1 * expected + 0.1
