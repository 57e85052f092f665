"""One rule for "local path or hub id", the same in every loader, the model card and the course."""

from __future__ import annotations

from pathlib import Path

import pytest

from simpleclip.checkpoint import resolve_checkpoint
from simpleclip.encoders.errors import EncoderLoadError
from simpleclip.encoders.local_weights import hf_folder
from simpleclip.model_card import encoder_tag
from simpleclip.paths import is_local_name


@pytest.mark.parametrize(
    "name",
    ["./x", "../x", ".x", "/abs/model", "~/models/minilm", "~", r"C:\models\minilm", Path("x")],
)
def test_names_written_like_paths_are_local_even_when_missing(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # none of them exists here
    assert is_local_name(name)


@pytest.mark.parametrize("name", ["org/name", "distilbert-base-uncased", "user/model.v2"])
def test_hub_ids_are_not_local_unless_such_a_folder_exists(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert not is_local_name(name)
    (tmp_path / name).mkdir(parents=True)  # a folder named like the hub id, here
    assert is_local_name(name)


def test_every_user_of_the_rule_agrees(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert hf_folder("org/name") is None and encoder_tag("org/name") == "org/name"
    assert resolve_checkpoint(".x") == Path(".x")  # no download tried for a path
    with pytest.raises(EncoderLoadError, match="does not exist"):
        hf_folder(".x")  # a hidden folder is a path, and a missing one is said to be missing
    assert encoder_tag(".x") == ".x" and encoder_tag("/home/alice/minilm") == "minilm"
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert encoder_tag("org/name") == "name"  # a local folder publishes only its last part
    with pytest.raises(EncoderLoadError, match="not a Hugging Face model folder"):
        hf_folder("org/name")
