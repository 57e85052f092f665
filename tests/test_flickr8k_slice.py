"""The Flickr8k-slice benchmark, 1 epoch: real photos and real pretrained weights, offline.

Needs the shared 1,000-photo slice and the weights of ``get_offline_weights.py`` (CI fetches
them from PyPI); skipped, saying what is missing, where they are absent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import flickr8k_slice  # noqa: E402  (a script, not a package module)


@pytest.mark.course
@pytest.mark.slow
def test_one_epoch_on_real_photos_beats_chance_by_far(shared_flickr: Path, tmp_path: Path):
    missing = flickr8k_slice.missing_assets(shared_flickr, ["minilm"])
    if missing:
        pytest.skip("needs " + "; ".join(missing))
    out = tmp_path / "rows.json"
    script = str(BENCHMARKS / "flickr8k_slice.py")
    command = [
        sys.executable,
        script,
        "--data",
        str(shared_flickr),
        "--text",
        "minilm",
        "--smoke",
        "--out",
        str(out),
        "--figures",
        str(tmp_path),
    ]
    env = {**os.environ, "SIMPLECLIP_CACHE": str(tmp_path / "cache")}  # a fresh feature cache
    subprocess.run(command, check=True, timeout=900, env=env)
    rows = json.loads(out.read_text())["rows"]
    features, row = rows
    assert features["seconds"] > 0 and row["row"] == "frozen, mlp head"
    assert row["test"] == "125 images, 625 captions"  # the official test images present
    chance_r5 = 100 * 5 / 125
    assert row["t2i"][1] > 5 * chance_r5 and row["i2t"][1] > 5 * chance_r5
    assert row["t2i"][0] <= row["t2i"][1] <= row["t2i"][2]
    for name in ("similarity_matrix", "text_to_images", "image_to_texts", "failure_1"):
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000


def test_missing_assets_are_named_with_the_command_that_fetches_them(tmp_path: Path) -> None:
    missing = flickr8k_slice.missing_assets(tmp_path, ["mpnet"])
    assert any("Flickr8k slice" in m for m in missing)
    if not (flickr8k_slice.WEIGHTS / "all-mpnet-base-v2").is_dir():
        assert any("get_offline_weights.py --mpnet" in m for m in missing)
    assert flickr8k_slice.main(["--data", str(tmp_path), "--text", "mpnet"]) == 2
