"""The prepared GPU check runs here as a CPU dry run, so it cannot rot before a GPU appears.

``benchmarks/gpu_check.sh OUT --cpu`` goes through every section with tiny sizes (the
``synthetic_tiny`` config, a few steps) and must write every figure the GPU run writes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import gpu_check  # noqa: E402  (a script, not a package module)

FIGURES = {  # section -> the figures it must write, GPU run and dry run alike
    "meta": ["mode", "device", "torch", "cuda", "cpu_count", "shm_gib", "sizes", "wall_s"],
    "data": ["images", "image_size", "train_images", "train_pairs", "seconds"],
    "gpu_tests": ["exit_code", "summary", "passed", "failed", "skipped"],
    "throughput": [
        "runs",
        "steps",
        "warmup_steps",
        "workers",
        "precision",
        "target_pairs_per_s",
        "best",
        "target_met",
        "train_default_loop_pairs_per_s",
        "epoch_pairs",
        "epoch_seconds_estimate",
        "epoch_note",
    ],
    "grad_cache": ["batch_size", "micro_batch_size", "whole", "micro", "loss", "memory_ratio"],
    "frozen_features": [
        "image_features_per_s",
        "image_features_per_s_workers",
        "text_features_per_s",
        "cached_epoch_seconds",
        "cached_run_seconds",
    ],
    "bf16_run": ["steps", "finite", "first_loss", "last_loss", "loss_falls", "epoch_seconds"],
    "clip_finetune": ["parameters", "vision", "loop_pairs_per_s", "peak_memory_mb", "losses"],
    "shards": ["shards", "workers", "shards_pairs_per_s", "folder_decode_pairs_per_s"],
    "gpu_notebooks": ["06_training", "07_evaluation", "epoch_seconds", "test_t2i"],
}
RUN_FIGURES = ["loop_pairs_per_s", "step_pairs_per_s", "peak_memory_mb", "epoch_seconds_estimate"]


@pytest.mark.course  # a minute: the long tier, with the gpu track's chain
@pytest.mark.slow
def test_cpu_dry_run_writes_every_figure_and_passes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", str(BENCHMARKS / "gpu_check.sh"), str(out), "--cpu"],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert "exit status 0" in (out / "gpu_check.log").read_text()
    for section, keys in FIGURES.items():
        assert set(keys) <= set(report[section]), (section, set(keys) - set(report[section]))
    for name, section in report["sections"].items():
        assert section["ok"] and section["error"] is None, (name, section)
    sizes = gpu_check.CPU
    eager = {(b, cl, False) for b in sizes.batch_sizes for cl in (True, False)}
    compiled = {(b, cl, True) for b, cl in sizes.compiled}
    runs = report["throughput"]["runs"]
    assert {(r["batch_size"], r["channels_last"], r["compile"]) for r in runs} == eager | compiled
    for run in runs:
        assert all(run[key] > 0 for key in RUN_FIGURES), run
    loss = report["grad_cache"]["loss"]
    assert loss["agrees"] and loss["diff_eval"] <= loss["tolerance"] == 1e-3
    assert report["bf16_run"]["finite"] and report["bf16_run"]["steps"] >= sizes.run_steps
    clip = report["clip_finetune"]  # the pretrained CLIP's model and recipe, trained
    assert clip["batch_size"] == sizes.clip_batch and len(clip["losses"]) == sizes.clip_steps
    assert clip["vision"] == f"ViT 2 layers, width {sizes.clip_width}, patch 8, 32 px", clip
    assert all(x > 0 for x in clip["losses"]) and clip["loop_pairs_per_s"] > 0
    shards = report["shards"]  # every reader had a shard, and every sample was decoded
    assert shards["shards"] >= max(1, sizes.shard_workers) and shards["skipped_samples"] == 0
    assert shards["shards_pairs_per_s"] > 0 and shards["folder_decode_pairs_per_s"] > 0
    notebooks = report["gpu_notebooks"]  # 06 trained the gpu-track model, 07 scored it
    assert notebooks["06_training"]["cells"] > 5 and len(notebooks["epoch_seconds"]) == 1
    assert notebooks["test_n_images"] == report["data"]["images"] // 10  # the 10% test split
    assert report["ok"] is True and all(report["checks"].values())


def test_a_failing_section_is_recorded_and_the_run_goes_on(tmp_path: Path) -> None:
    check = gpu_check.Check(tmp_path, gpu_check.CPU, cpu=True)

    def broken() -> tuple[dict, bool]:
        raise RuntimeError("out of memory, say")

    assert check.section("broken", broken) is None
    assert check.section("fine", lambda: ({"pairs_per_s": 1.0}, True)) == {"pairs_per_s": 1.0}
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["sections"]["broken"]["ok"] is False
    assert "out of memory, say" in report["sections"]["broken"]["error"]
    assert report["sections"]["fine"] == {**report["sections"]["fine"], "ok": True, "error": None}
    assert report["fine"] == {"pairs_per_s": 1.0}
    assert gpu_check.verdict(report, cpu=True)["sections_without_error"] is False


def test_time_limits_stop_a_check_and_nest() -> None:
    start = time.monotonic()
    with pytest.raises(gpu_check.TimeBudget), gpu_check.time_limit(1):
        time.sleep(5)
    assert time.monotonic() - start < 3
    start = time.monotonic()
    with pytest.raises(gpu_check.TimeBudget), gpu_check.time_limit(2):
        with gpu_check.time_limit(10):  # an inner limit must not cancel the outer one
            pass
        time.sleep(5)
    assert time.monotonic() - start < 4


def test_notebook_cells_run_in_one_namespace_without_ipython(tmp_path: Path) -> None:
    def cell(source: str) -> dict:
        return {"cell_type": "code", "source": source, "metadata": {}, "outputs": []}

    cells = [cell("from IPython.display import SVG, display\nx = 41"), cell("display(SVG(x))")]
    cells += [{"cell_type": "markdown", "source": "x = 0", "metadata": {}}, cell("print(x + 1)")]
    # pyplot asks a loaded IPython for its shell when it picks a backend: the stand-in has none
    cells += [cell("import matplotlib.pyplot as plt\nplt.plot([x]); plt.show()")]
    notebook = tmp_path / "n.ipynb"
    notebook.write_text(json.dumps({"cells": cells, "nbformat": 4, "nbformat_minor": 5}))
    hidden = tmp_path / "no_ipython" / "IPython"  # the GPU machine's Python: no IPython
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('no IPython here')")
    env = {**os.environ, "PYTHONPATH": str(hidden.parent)}
    script = [sys.executable, str(BENCHMARKS / "run_notebook_cells.py")]
    result = subprocess.run([*script, str(notebook)], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[:2] == ["<SVG (41,)>", "42"]  # the stand-in displayed; markdown not run
    assert json.loads(lines[-1])["cells"] == 4

    notebook.write_text(json.dumps({"cells": [cell("x = 1"), cell("1 / 0")], "nbformat": 4}))
    result = subprocess.run([*script, str(notebook)], capture_output=True, text=True, env=env)
    assert result.returncode == 1 and "cell 2 failed" in result.stderr
    assert "ZeroDivisionError" in result.stderr
