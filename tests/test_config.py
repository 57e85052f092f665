"""Configs: YAML files, typed overrides, clear errors, round trips."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path
from typing import Literal

import pytest

from simpleclip.config import CONFIG_DIR, Config, ConfigError, load_config, save_config


def test_overrides_are_parsed_and_type_checked() -> None:
    config = load_config(
        None,
        [
            "train.epochs=3",
            "head.lr=1",
            "data.crop_scale=[0.5, 1]",
            "text.pooling=null",
            "image.trainable=false",
            "data.skip_bad_images=true",
        ],
    )
    assert config.data.skip_bad_images is True and Config().data.skip_bad_images is False
    assert config.train.epochs == 3
    assert config.head.lr == 1.0 and isinstance(config.head.lr, float)
    assert config.data.crop_scale == (0.5, 1.0)
    assert config.text.pooling is None and config.image.trainable is False
    assert Config().train.epochs == 5  # defaults untouched
    # YAML 1.1 reads "3e-4" as a string; a float field still takes it.
    assert load_config(None, ["train.weight_decay=3e-4"]).train.weight_decay == 3e-4
    mean = load_config(None, ["image.mean=[0.5, 0.5, 0.5]"]).image.mean
    assert mean == (0.5, 0.5, 0.5)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epochs=three", "epochs must be int"),
        ("train.epochs=true", "epochs must be int"),
        ("train.lr=1", "unknown key 'lr' in TrainConfig; valid keys: epochs"),
        ("model.name=x", "unknown key 'model'"),
        ("data.crop_scale=1", "list of 2 values"),
        ("train.lr=", "unknown key 'lr'"),
        ("head.lr=fast", "lr must be float"),
        ("image.mean=[0.5, 0.5]", "list of 3 values"),
        ("epochs=3", "section.key=value"),
        ("train.batch_size=0", r"train\.batch_size must be greater than 0, got 0"),
        ("train.batch_size=1", r"train\.batch_size=1 gives each caption no other picture"),
        ("train.epochs=-1", r"train\.epochs must be greater than 0"),
        ("loss.init_temperature=0", r"loss\.init_temperature must be greater than 0"),
        ("head.embed_dim=0", r"head\.embed_dim must be greater than 0"),
        ("head.lr=-1e-3", r"head\.lr must be greater than 0"),
        ("data.shuffle_buffer=-1", r"data\.samples_per_epoch and data\.shuffle_buffer must be 0"),
    ],
)
def test_bad_overrides_say_what_is_wrong(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


LITERAL_FIELDS = {
    "data.pairs": ("all", "one_per_image"),
    "data.format": ("folder", "webdataset"),
    "image.pooling": ("avg", "attention"),
    "text.pooling": ("cls", "mean"),
    "head.kind": ("mlp", "linear", "none"),
    "loss.kind": ("clip", "siglip"),
    "train.precision": ("auto", "fp32", "bf16", "fp16"),
    "train.distributed_loss": ("gather", "local"),
}


def literal_fields() -> dict[str, tuple[str, ...]]:
    """Every config key whose type is a Literal (alone or with None), with its choices."""
    found = {}
    for section in dataclasses.fields(Config):
        for name, hint in typing.get_type_hints(section.default_factory).items():
            literal = [h for h in (hint, *typing.get_args(hint)) if typing.get_origin(h) is Literal]
            if literal:
                found[f"{section.name}.{name}"] = typing.get_args(literal[0])
    return found


def test_the_enumerated_settings_are_literal_fields() -> None:
    assert literal_fields() == LITERAL_FIELDS


@pytest.mark.parametrize(("key", "choices"), LITERAL_FIELDS.items())
def test_a_bad_choice_fails_at_load_naming_the_key_and_the_choices(key, choices) -> None:
    section, name = key.split(".")
    for choice in choices:  # every listed choice loads
        assert getattr(getattr(load_config(None, [f"{key}={choice}"]), section), name) == choice
    named = ".*".join(re.escape(repr(choice)) for choice in choices)
    with pytest.raises(ConfigError, match=rf"{re.escape(key)} must be .*{named}, got 'typo'"):
        load_config(None, [f"{key}=typo"])


def test_library_guards_read_the_config_choices() -> None:
    from simpleclip.device import PRECISIONS
    from simpleclip.heads import HEAD_KINDS

    assert LITERAL_FIELDS["train.precision"] == PRECISIONS
    assert LITERAL_FIELDS["head.kind"] == HEAD_KINDS


def test_yaml_round_trip_and_file_errors(tmp_path: Path) -> None:
    config = load_config(None, ["train.seed=7", "data.crop_scale=[0.7, 0.9]"])
    save_config(config, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == config
    (tmp_path / "bad.yaml").write_text("train:\n  epochs: 2\n  ephocs: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown key 'ephocs'"):
        load_config(tmp_path / "bad.yaml")
    with pytest.raises(FileNotFoundError, match="synthetic_tiny"):
        load_config("no_such_config")


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_config_loads(path: Path) -> None:
    config = load_config(path)
    assert config.train.out_dir.startswith("runs/")
    assert load_config(path.stem) == config  # also found by name


def test_a_tampered_config_names_its_file_and_line_and_runs_nothing(tmp_path: Path) -> None:
    """Probe 3d: a python tag in a checkpoint's config.yaml is refused in one line naming the
    file and the line, not with a yaml traceback; the tag's call never runs."""
    marker = tmp_path / "ran"
    path = tmp_path / "config.yaml"
    path.write_text(
        f"train:\n  epochs: 2\npwn: !!python/object/apply:os.system ['touch {marker}']\n"
    )
    with pytest.raises(ConfigError, match=r"config\.yaml, line 3: not a simpleclip config") as err:
        load_config(path)
    assert "Traceback" not in str(err.value) and not marker.exists()
