"""The course chain runs as a learner runs it: notebooks in order, one track, one course model.

- The cpu track on real photos: every notebook top to bottom on the team's 1,000-photo Flickr8k
  slice with the real offline weights, then checks on what they left in ``runs/course-cpu/``:
  the course model's test recall and its zero-shot accuracy on real photos.
- The gpu track's chain on a CPU: ResNet-50 with random weights and a tiny DistilBERT folder on
  a small synthetic set, through notebooks 06 (train the course model), 07 (evaluate it) and 09
  (fine-tune the pretrained CLIP, here its random stand-in, with ``clip_finetune``), so the
  wiring of that track is exercised without a GPU or the hub.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import nbformat
import pytest
import yaml
from nbclient import NotebookClient
from notebook_outputs import INLINE, output_problems

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
WEIGHTS = Path(os.environ.get("HOME", "~")).expanduser() / ".cache" / "simpleclip-offline"
EFFNET = WEIGHTS / "efficientnet_lite0" / "model.safetensors"
MINILM = WEIGHTS / "all-MiniLM-L6-v2"


def run_notebook(path: Path, timeout: int = 1200) -> tuple[float, list[str]]:
    """Execute one notebook from ``notebooks/`` as Jupyter would; returns its wall time and
    what its outputs should not show a learner (``notebook_outputs.output_problems``)."""
    start = time.perf_counter()
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        coalesce_streams=True,  # stored as Jupyter shows them: a progress bar's last state
    )
    client.execute()  # raises CellExecutionError naming the failing cell
    return time.perf_counter() - start, output_problems(nb, path.stem)


def course_env(monkeypatch: pytest.MonkeyPatch, track: str, overrides: list[str]) -> None:
    for name in ("CI", "SIMPLECLIP_SMOKE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SIMPLECLIP_TRACK", track)
    monkeypatch.setenv("SIMPLECLIP_SET", " ".join(overrides))
    monkeypatch.setenv("MPLBACKEND", INLINE)  # figures stored as Jupyter stores them
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.mark.course
@pytest.mark.slow
@pytest.mark.notebook
def test_cpu_track_on_real_photos(shared_flickr: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = [str(p) for p in (EFFNET, MINILM) if not p.exists()]
    if missing:
        fetch = "python ../shared/tools/get_offline_weights.py"
        pytest.skip(f"offline weights missing ({', '.join(missing)}): {fetch}")
    overrides = [f"data.root={shared_flickr}", f"image.weights={EFFNET}", f"text.name={MINILM}"]
    course_env(monkeypatch, "cpu", overrides)
    runs = {path.stem: run_notebook(path) for path in NOTEBOOKS}
    times = {stem: seconds for stem, (seconds, _) in runs.items()}
    print("cpu track, seconds per notebook:", {k: round(v) for k, v in times.items()})
    print(f"cpu track, whole course: {sum(times.values()):.0f} s")

    run = REPO / "runs" / "course-cpu"
    metrics = json.loads((run / "metrics_test.json").read_text())
    assert metrics["n_images"] == 125 and metrics["n_captions"] == 625  # the slice's test split
    assert metrics["t2i"]["R@5"] >= 0.50, metrics["t2i"]  # chance: 5 / 125 = 4%
    zero_shot = json.loads((run / "zeroshot_test.json").read_text())
    assert zero_shot["n_photos"] > 100
    assert zero_shot["accuracy"]["bare"] >= 2 * zero_shot["majority_accuracy"], zero_shot
    # Chapter 10: both losses at every batch size, and LiT, train useful models on real photos
    after_clip = json.loads((REPO / "runs" / "course-cpu-after-clip" / "results.json").read_text())
    expected = {f"{loss}-batch{b}" for loss in ("clip", "siglip") for b in (16, 64, 256)}
    assert expected | {"lit-batch64"} == after_clip.keys()
    assert all(row["t2i R@5"] >= 0.50 for row in after_clip.values()), after_clip
    assert all(row["bias"] < -5 for name, row in after_clip.items() if "siglip" in name)
    # What a learner reads: figures that fit a column, no paths, warnings or stuck bars.
    problems = [line for _, found in runs.values() for line in found]
    assert not problems, "\n".join(problems)


@pytest.mark.course
@pytest.mark.slow
@pytest.mark.notebook
def test_gpu_track_chain_runs_on_a_cpu(
    tmp_path: Path, tiny_tokenizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import AutoModel

    from simpleclip.data import load_split, make_synthetic
    from simpleclip.encoders.text import tiny_text_config

    data = make_synthetic(tmp_path / "photos", n_images=40, seed=1)
    text = tmp_path / "distilbert-tiny"  # a local Hugging Face folder: no hub needed
    AutoModel.from_config(tiny_text_config(tiny_tokenizer, 32)).save_pretrained(text)
    tiny_tokenizer.save_pretrained(text)
    run = tmp_path / "runs" / "course-gpu"
    overrides = [
        f"data.root={data}",
        "data.num_workers=0",
        "image.pretrained=false",  # ResNet-50's architecture, random weights
        f"text.name={text}",
        "train.epochs=1",
        "train.batch_size=8",
        "train.warmup_steps=1",
        f"train.out_dir={run}",
    ]
    course_env(monkeypatch, "gpu", overrides)
    for stem in ("06_training", "07_evaluation", "09_clip_from_scratch"):
        run_notebook(REPO / "notebooks" / f"{stem}.ipynb")
    config = (run / "best" / "config.yaml").read_text()
    assert "name: resnet50" in config and str(text) in config  # 07 used the gpu course model
    metrics = json.loads((run / "metrics_test.json").read_text())
    test_split = load_split(data, "test")
    assert metrics["n_images"] == test_split["image"].nunique()
    assert metrics["n_captions"] == len(test_split)
    for direction in ("t2i", "i2t"):  # a real ranking: more candidates never find fewer
        recall = metrics[direction]
        assert 0 <= recall["R@1"] <= recall["R@5"] <= recall["R@10"] <= 1, recall
    # 09 fine-tuned the pretrained CLIP (offline: the random stand-in) with clip_finetune
    finetune = run.parent / "clip-finetune-gpu"
    tuned = yaml.safe_load((finetune / "best" / "config.yaml").read_text())
    assert tuned["image"]["name"] == "clip" and tuned["train"]["weight_decay"] == 0.1
    assert tuned["train"]["init_from"] == str(run.parent / "clip-stand-in")
