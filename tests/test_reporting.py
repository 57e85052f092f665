"""Curves: ``train.report_to`` (metrics.jsonl, TensorBoard, W&B), read back and compared."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from simpleclip.config import ConfigError, TrainConfig, _check_type, load_config
from simpleclip.train import train
from simpleclip.train.reporting import open_reporters

TINY_RECORD = {  # the shape of a metrics.jsonl line, small numbers
    "epoch": 1,
    "step": 3,
    "train_loss": 2.5,
    "step_losses": [3.0, 2.5, 2.0],
    "lr": 1e-3,
    "temperature": 0.07,
    "epoch_seconds": 1.5,
    "pairs_per_second": 64.0,
    "val": {"t2i": {"R@1": 0.25}, "i2t": {"R@1": 0.5}, "n_images": 4, "n_captions": 20},
}


def _curves(record: dict) -> dict[str, float]:
    """What the dashboards should show for one metrics.jsonl line, written out by hand."""
    keys = ("epoch", "train_loss", "lr", "temperature", "epoch_seconds", "pairs_per_second")
    curves = {key: record[key] for key in keys}
    for direction in ("t2i", "i2t"):
        for name, value in record["val"][direction].items():
            curves[f"val/{direction}/{name}"] = value
    curves["val/n_images"], curves["val/n_captions"] = (
        record["val"]["n_images"],
        record["val"]["n_captions"],
    )
    return curves


def _read_tensorboard(folder: Path):
    """Every event file of ``folder`` through TensorBoard's own reader (all values kept)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    return events.Reload()


def _assert_tensorboard_equals(events, records: list[dict]) -> None:
    """Same tags, same numbers (TensorBoard stores float32), one point per epoch or step."""
    expected = {tag: [] for tag in _curves(records[0])}
    for record in records:
        for tag, value in _curves(record).items():
            expected[tag].append((record["step"], float(np.float32(value))))
    assert set(events.Tags()["scalars"]) == {*expected, "step_loss"}
    for tag, points in expected.items():
        assert [(e.step, e.value) for e in events.Scalars(tag)] == points, tag
    losses = [loss for record in records for loss in record["step_losses"]]
    steps = range(1, records[-1]["step"] + 1)
    assert [(e.step, e.value) for e in events.Scalars("step_loss")] == [
        (step, float(np.float32(loss))) for step, loss in zip(steps, losses, strict=True)
    ]
    images = events.Images("similarity_matrix")  # one picture per epoch
    assert [image.step for image in images] == [record["step"] for record in records]
    assert all(image.width > 100 and image.height > 100 for image in images)


def test_tensorboard_shows_the_metrics_jsonl_numbers_and_a_picture_per_epoch(
    tiny_config, synthetic_root: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    config = tiny_config(synthetic_root, run, "train.report_to=jsonl,tensorboard")
    result = train(config, progress=False)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2] and records == result.history
    _assert_tensorboard_equals(_read_tensorboard(run / "tensorboard"), records)


def test_resume_appends_and_hides_an_epoch_logged_but_never_checkpointed(
    tiny_config, synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import simpleclip.train.loop as loop_module

    run, real_save_last = tmp_path / "run", loop_module._save_last

    def killed_in_epoch_2(loop, last, state, rng_states):  # after reporting, before saving
        if state["epoch"] == 2:
            raise KeyboardInterrupt
        real_save_last(loop, last, state, rng_states)

    config = tiny_config(synthetic_root, run, "train.report_to=[tensorboard]")
    monkeypatch.setattr(loop_module, "_save_last", killed_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train(config, progress=False)
    monkeypatch.setattr(loop_module, "_save_last", real_save_last)
    resumed = train(config, resume=True, progress=False)
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 2  # none wiped
    # epoch 2's first try (its own seconds and pairs/s) is hidden; the resumed one is shown
    _assert_tensorboard_equals(_read_tensorboard(run / "tensorboard"), resumed.history)


def test_report_to_takes_a_comma_list_and_names_the_valid_backends() -> None:
    assert TrainConfig().report_to == ["jsonl"]
    config = load_config(None, ["train.report_to=jsonl, tensorboard"])
    assert config.train.report_to == ["jsonl", "tensorboard"]
    assert load_config(None, ["train.report_to=[wandb]"]).train.report_to == ["wandb"]
    assert load_config(None, ["train.report_to=tensorboard"]).train.report_to == ["tensorboard"]
    assert _check_type("0.5, 2", list[float], "x") == [0.5, 2.0]  # any list type, not only str
    with pytest.raises(ConfigError, match=r"'tensorbord'; valid: jsonl, tensorboard, wandb"):
        load_config(None, ["train.report_to=jsonl,tensorbord"])
    with pytest.raises(ConfigError, match="must be a list"):
        load_config(None, ["train.report_to=3"])


@pytest.mark.parametrize("name", ["tensorboard", "wandb"])
def test_a_missing_package_stops_before_training_with_the_pip_command(
    name: str, tiny_config, synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in ("tensorboard", "torch.utils.tensorboard", "wandb"):
        monkeypatch.setitem(sys.modules, module, None)  # `import module` now fails
    config = tiny_config(synthetic_root, tmp_path / "run", f"train.report_to=jsonl,{name}")
    message = rf"train.report_to={name} needs the {name} package: pip install {name}"
    with pytest.raises(ImportError, match=message):
        train(config, progress=False)
    assert not (tmp_path / "run").exists()  # nothing read, claimed or written


def test_only_rank_0_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from simpleclip import collectives

    monkeypatch.setattr(collectives, "is_main", lambda: False)
    config = load_config(None, [f"train.out_dir={tmp_path / 'run'}", "train.report_to=tensorboard"])
    with open_reporters(config, resume=False, first_step=1) as reporters:
        reporters.log(TINY_RECORD, step=3)
    assert not (tmp_path / "run").exists()


def test_wandb_offline_run_gets_the_curves_and_resume_continues_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wandb = pytest.importorskip("wandb", reason="wandb is optional: pip install wandb")
    from PIL import Image

    for key, value in {"MODE": "offline", "DIR": str(tmp_path), "SILENT": "true"}.items():
        monkeypatch.setenv(f"WANDB_{key}", value)
    logged, real_init = [], wandb.init

    def spied_init(**kwargs):  # the real offline run, and a copy of what we hand it
        run = real_init(**kwargs)
        real_log = run.log

        def log(data: dict, step: int) -> None:
            logged.append((step, data))
            real_log(data, step=step)

        run.log = log
        return run

    monkeypatch.setattr(wandb, "init", spied_init)
    run = tmp_path / "run"
    config = load_config(None, [f"train.out_dir={run}", "train.report_to=jsonl,wandb"])

    def figure(path: Path) -> Path:
        Image.new("RGB", (8, 8)).save(path)
        return path

    with open_reporters(config, resume=False, first_step=1, figure=figure) as reporters:
        reporters.log(TINY_RECORD, step=3)
    losses = [(step, data) for step, data in logged if "step_loss" in data]
    assert losses == [(1, {"step_loss": 3.0}), (2, {"step_loss": 2.5}), (3, {"step_loss": 2.0})]
    curves = next(data for step, data in logged if step == 3 and "train_loss" in data)
    assert curves == _curves(TINY_RECORD)
    assert isinstance(logged[-1][1]["similarity_matrix"], wandb.Image) and logged[-1][0] == 3
    assert json.loads((run / "metrics.jsonl").read_text()) == TINY_RECORD
    run_id = (run / "wandb" / "run_id").read_text().strip()
    assert list(run.glob(f"wandb/offline-run-*-{run_id}/run-{run_id}.wandb"))
    with open_reporters(config, resume=True, first_step=4) as reporters:
        assert reporters.reporters[-1].run.id == run_id  # the same W&B run goes on
