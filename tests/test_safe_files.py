"""Nothing in a checkpoint runs: code, auto_map entries and pickles are refused, naming the file;
a cut-short or corrupt file gets one line that names it (``simpleclip.safe_files``)."""

from __future__ import annotations

import io
import json
import os
import pickle
from pathlib import Path

import pytest

from simpleclip.model import CLIPModel, build_model
from simpleclip.safe_files import UnsafeCheckpointError
from simpleclip.train import train


@pytest.fixture
def saved(synthetic_root: Path, tiny_tokenizer, tiny_config, tmp_path: Path) -> Path:
    model = build_model(tiny_config(synthetic_root, tmp_path / "run"), tokenizer=tiny_tokenizer)
    return model.save(tmp_path / "checkpoint")


class _Pwn:
    """Unpickling this writes a marker file: proof that loading ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _answer_yes(monkeypatch: pytest.MonkeyPatch) -> None:
    """transformers asks "Do you wish to run the custom code? [y/N]": a user who says y."""
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n" * 10))


@pytest.mark.parametrize("part", ["tokenizer/tokenizer_config.json", "text_model/config.json"])
def test_an_auto_map_entry_is_refused_and_its_code_never_runs(
    saved: Path, part: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "pwned"
    config_file = saved / part
    config = json.loads(config_file.read_text())
    config["auto_map"] = {"AutoTokenizer": ["evil.Evil", None], "AutoConfig": "evil.Evil"}
    config_file.write_text(json.dumps(config))
    # The code sits beside it as evil.txt, so the auto_map refusal itself is what stops it
    # (a .py file is refused by its suffix: next test).
    (config_file.parent / "evil.txt").write_text(f"open({str(marker)!r}, 'w').close()\n")
    _answer_yes(monkeypatch)
    with pytest.raises(UnsafeCheckpointError, match=r"auto_map.*never runs code") as err:
        CLIPModel.load(saved)
    assert str(config_file) in str(err.value)
    assert not marker.exists()


def test_a_python_file_or_a_pickle_in_a_checkpoint_is_refused(saved: Path, tmp_path: Path):
    (saved / "tokenizer" / "helper.py").write_text("print('hi')\n")
    with pytest.raises(UnsafeCheckpointError, match=r"helper\.py is code"):
        CLIPModel.load(saved)
    (saved / "tokenizer" / "helper.py").unlink()
    marker = tmp_path / "pwned"
    (saved / "text_model" / "pytorch_model.bin").write_bytes(pickle.dumps(_Pwn(marker)))
    with pytest.raises(UnsafeCheckpointError, match=r"pytorch_model\.bin is a pickle"):
        CLIPModel.load(saved)
    assert not marker.exists()


def test_cut_short_or_foreign_weights_name_the_file_and_the_fix(saved: Path, tmp_path: Path):
    weights = saved / "model.safetensors"
    intact = weights.read_bytes()
    weights.write_bytes(intact[: len(intact) // 2])
    with pytest.raises(UnsafeCheckpointError, match=r"not a readable safetensors file") as err:
        CLIPModel.load(saved)
    assert str(weights) in str(err.value) and "--overwrite" in str(err.value)
    marker = tmp_path / "pwned"
    weights.write_bytes(pickle.dumps(_Pwn(marker)))  # a pickle disguised as safetensors
    with pytest.raises(UnsafeCheckpointError, match=str(weights)):
        CLIPModel.load(saved)
    assert not marker.exists()
    weights.write_bytes(intact)
    assert isinstance(CLIPModel.load(saved), CLIPModel)  # the intact folder still loads


def test_a_pickled_training_state_is_refused_without_torch_unsafe_advice(
    tiny_config, synthetic_root: Path, tmp_path: Path
) -> None:
    config = tiny_config(synthetic_root, tmp_path / "run", "train.epochs=1")
    train(config, progress=False)
    marker = tmp_path / "pwned"
    state = tmp_path / "run" / "last" / "trainer_state.pt"
    with state.open("wb") as f:
        pickle.dump(_Pwn(marker), f)
    again = tiny_config(synthetic_root, tmp_path / "run", "train.epochs=2")
    with pytest.raises(UnsafeCheckpointError) as err:
        train(again, resume=True, progress=False)
    message = str(err.value)
    assert str(state) in message and "nothing in it was run" in message
    assert "weights_only" not in message and "False" not in message
    assert not marker.exists()


@pytest.mark.parametrize("pretrained", [True, False])
def test_a_text_model_folder_asking_for_its_own_code_never_runs_it(
    tiny_tokenizer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pretrained: bool
) -> None:
    from transformers import AutoModel

    from simpleclip.encoders import EncoderLoadError, TextEncoder
    from simpleclip.encoders.text import tiny_text_config

    folder = tmp_path / "text-model"  # a local text.name, as a user downloads one
    AutoModel.from_config(tiny_text_config(tiny_tokenizer, 32)).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    del config["model_type"]  # without it transformers turns to auto_map
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    marker = tmp_path / "pwned"
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    _answer_yes(monkeypatch)
    with pytest.raises((EncoderLoadError, ValueError)):
        TextEncoder(str(folder), pretrained=pretrained, tokenizer=tiny_tokenizer)
    assert not marker.exists()
