"""The benchmarks run end to end in their smoke modes, so they never rot.

Timings are not asserted (a shared CPU makes them noisy): each script must exit 0 and print its
whole table, every figure a finite positive number.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "train_throughput.py"


def run_smoke(script: Path) -> list[dict]:
    """Run ``script --smoke`` (exit code 0 or CalledProcessError) and parse its JSON lines."""
    result = subprocess.run(
        [sys.executable, str(script), "--smoke"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def finite_positive(row: dict, keys: list[str]) -> bool:
    return all(
        isinstance(row[k], int | float) and math.isfinite(row[k]) and row[k] > 0 for k in keys
    )


def test_train_throughput_smoke_prints_both_modes_and_the_ratio() -> None:
    baseline, fast, ratio = run_smoke(SCRIPT)
    assert (baseline["mode"], fast["mode"]) == ("baseline", "fast")
    for row in (baseline, fast):
        assert finite_positive(row, ["step_pairs_per_s", "loop_pairs_per_s", "peak_memory_mb"]), row
        assert row["config"] == "synthetic_tiny"
        assert (row["batch_size"], row["steps"], row["rounds"]) == (16, 2, 1)  # the smoke sizes
    assert finite_positive(ratio, ["speedup_full_loop"]), ratio


def test_feature_cache_smoke_prints_both_runs_and_the_ratio() -> None:
    recomputed, cached, ratio = run_smoke(SCRIPT.with_name("feature_cache.py"))
    assert (recomputed["features"], cached["features"]) == ("recomputed", "cached")
    for row in (recomputed, cached):
        assert row["epochs"] == 2 and finite_positive(row, ["epoch_seconds", "total_seconds"])
        assert 0 <= row["t2i_R@5"] <= 1 and 0 <= row["i2t_R@5"] <= 1
    assert finite_positive(ratio, ["epoch_speedup"]), ratio


def test_finetune_throughput_smoke_prints_both_programs_and_the_ratio() -> None:
    script = SCRIPT.with_name("finetune_throughput.py")
    tutorial, simpleclip, round_ratio, summary = run_smoke(script)
    assert (tutorial["variant"], simpleclip["variant"]) == ("tutorial", "simpleclip")
    for row in (tutorial, simpleclip):
        assert finite_positive(row, ["pairs_per_s", "seconds", "peak_rss_mb"]), row
        assert row["system_s"] >= 0 and row["minor_faults_per_step"] >= 0
        assert (row["round"], row["batch_size"], row["steps"]) == (1, 8, 2)  # the smoke sizes
    assert finite_positive(round_ratio, ["ratio"]) and finite_positive(summary, ["ratio"])


def test_shards_throughput_smoke_prints_the_three_modes_and_the_ratios() -> None:
    folder, decode, shards, ratios = run_smoke(SCRIPT.with_name("shards_throughput.py"))
    modes = [row["mode"] for row in (folder, decode, shards)]
    assert modes == ["folder", "folder-decode", "shards"]
    for row in (folder, decode, shards):
        assert finite_positive(row, ["pairs_per_s"]), row
        assert (row["batch_size"], row["rounds"], row["epochs_kept"]) == (16, 1, 1)  # smoke sizes
    assert finite_positive(ratios, ["shards_vs_folder", "shards_vs_folder_decode"]), ratios
