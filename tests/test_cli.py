"""The command line: the same entry point as ``python -m simpleclip``, clear one-line errors."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from simpleclip.cli import main
from simpleclip.config import save_config
from simpleclip.data import load_split


def test_make_synthetic_prints_a_summary(tmp_path: Path, capsys) -> None:
    assert main(["make-synthetic", "--out", str(tmp_path / "s"), "--images", "40"]) == 0
    out = capsys.readouterr().out
    assert "Wrote 40 images" in out and "images/s" in out
    assert "40 images, 200 captions" in out and "train 32, dev 4, test 4" in out


def test_errors_are_one_clear_line_and_exit_code_1(tmp_path: Path, capsys) -> None:
    (tmp_path / "mine").mkdir()
    assert main(["make-synthetic", "--out", str(tmp_path / "mine"), "--images", "40"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("simpleclip make-synthetic: error:") and "Traceback" not in err


def test_python_dash_m_is_the_same_program() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "simpleclip", "--help"], capture_output=True, text=True, check=True
    )
    assert "make-synthetic" in result.stdout and "download" in result.stdout


def test_validate_clip_offline_fails_fast_with_a_message(capsys) -> None:
    assert main(["validate-clip", "--model", "openai/clip-vit-base-patch32"]) == 2
    captured = capsys.readouterr()
    assert "internet" in (captured.out + captured.err)


def test_help_imports_neither_torch_nor_gradio() -> None:
    code = (
        "import sys; from simpleclip.cli import build_parser; "
        "build_parser().parse_args(['app', '--port', '1']); "
        "print('torch' in sys.modules, 'gradio' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False False", result.stderr


@pytest.fixture
def damaged_set(synthetic_root: Path, tmp_path: Path) -> tuple[Path, str, str]:
    """A copy of the synthetic set with a truncated training JPEG and an empty dev JPEG."""
    root = tmp_path / "damaged"
    shutil.copytree(synthetic_root, root)
    truncated = root / "Images" / load_split(root, "train")["image"].iloc[0]
    empty = root / "Images" / load_split(root, "dev")["image"].iloc[0]
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    empty.write_bytes(b"")
    return root, truncated.name, empty.name


def test_train_skips_bad_images_only_when_asked(
    damaged_set: tuple[Path, str, str], tiny_config, tmp_path: Path, capsys
) -> None:
    root, truncated, empty = damaged_set
    config_file = tmp_path / "tiny.yaml"
    save_config(tiny_config(root, tmp_path / "run", "train.epochs=1"), config_file)
    train = ["train", "--config", str(config_file)]

    assert main(train) == 1
    err = capsys.readouterr().err
    assert "--set data.skip_bad_images=true" in err and truncated in err

    with pytest.warns(UserWarning, match="Skipped 1 missing or unreadable") as record:
        assert main([*train, "--set", "data.skip_bad_images=true"]) == 0
    skipped = [str(w.message) for w in record if "Skipped" in str(w.message)]
    assert len(skipped) == 2  # once for the training set, once for the dev set
    assert truncated in skipped[0] and empty in skipped[1]
    assert "Done in" in capsys.readouterr().out
    assert (tmp_path / "run" / "best").is_dir()


def test_eval_of_a_checkpoint_prints_and_writes_the_metrics(
    synthetic_root: Path, tiny_tokenizer, tiny_config, tmp_path: Path, capsys
) -> None:
    import json

    from simpleclip.data import CaptionDataset, build_transforms, load_split
    from simpleclip.evaluate import evaluate
    from simpleclip.model import CLIPModel, build_model

    config = tiny_config(synthetic_root, tmp_path / "run")
    build_model(config, tokenizer=tiny_tokenizer).save(tmp_path / "model")
    out = tmp_path / "m.json"
    args = ["eval", "--checkpoint", str(tmp_path / "model"), "--data", str(synthetic_root)]
    assert main([*args, "--split", "dev", "--out", str(out)]) == 0
    assert "text -> image" in capsys.readouterr().out
    written = json.loads(out.read_text())
    model = CLIPModel.load(tmp_path / "model")
    dev = CaptionDataset(
        load_split(synthetic_root, "dev"),
        synthetic_root / "Images",
        model.tokenizer,
        build_transforms(model.image_encoder.preprocessing, train=False),
    )
    expected = evaluate(model, dev)
    assert written["t2i"] == expected["t2i"] and written["n_images"] == 12
