"""The command line: the same entry point as ``python -m simpleclip``, clear one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from simpleclip.cli import main


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


def test_help_does_not_import_torch() -> None:
    code = "import sys; from simpleclip.cli import build_parser; build_parser(); " \
           "print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False"
