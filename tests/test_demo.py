"""The demo end to end, shortened: data built in the current folder, outputs as promised."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from simpleclip.cli import main
from simpleclip.model import CLIPModel


@pytest.mark.slow
def test_demo_writes_metrics_pictures_and_a_reloadable_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)  # all paths are relative to the current directory
    code = main(
        [
            "demo",
            "--set",
            "data.synthetic_images=300",
            "--set",
            "train.epochs=2",
            "--set",
            "train.batch_size=64",
        ]
    )
    assert code == 0
    assert (tmp_path / "data" / "synthetic" / "captions.txt").is_file()
    run = tmp_path / "runs" / "demo"
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) >= {"t2i", "i2t", "n_images", "n_captions", "train_seconds"}
    assert set(metrics["t2i"]) >= {"R@1", "R@5", "R@10"} and metrics["n_images"] == 30
    assert metrics["n_captions"] == 150 and metrics["train_seconds"] > 0
    for picture in ("training_curves.png", "similarity_matrix.png"):
        with Image.open(run / picture) as image:
            assert image.width > 400 and image.height > 200
    model = CLIPModel.load(run / "model")
    assert model.config.train.out_dir == "runs/demo"
    out = capsys.readouterr().out
    assert "text -> image" in out and "image -> text" in out
