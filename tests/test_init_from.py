"""``train.init_from``: a fine-tune starts from a trained checkpoint's heads, not random ones.

``simpleclip.train.data.new_model`` (and ``load_matching_weights``), on the tiny synthetic
config: the heads and the temperature equal the source checkpoint's; a checkpoint whose heads
have other shapes, or no checkpoint at all, is refused with a message that says why.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from simpleclip.train.data import load_matching_weights, new_model


@pytest.fixture(scope="module")
def source(synthetic_root: Path, tiny_config, tmp_path_factory: pytest.TempPathFactory):
    """A saved tiny model whose heads and temperature are not the fresh model's."""
    config = tiny_config(synthetic_root, tmp_path_factory.mktemp("src"), "train.seed=1")
    model = new_model(config, synthetic_root)
    with torch.no_grad():
        for name, tensor in model.named_parameters():
            if name.startswith(("image_head.", "text_head.", "logit_scale")):
                tensor.add_(0.5)  # unmistakably not what seed 0 draws
    folder = Path(config.train.out_dir) / "best"
    model.save(folder)
    return model, folder


def heads(model) -> dict[str, torch.Tensor]:
    return {
        k: v
        for k, v in model.state_dict().items()
        if k.startswith(("image_head.", "text_head.", "logit_scale"))
    }


def test_init_from_copies_the_heads(source, synthetic_root: Path, tiny_config, tmp_path: Path):
    src_model, folder = source
    fresh = new_model(tiny_config(synthetic_root, tmp_path / "a"), synthetic_root)
    config = tiny_config(synthetic_root, tmp_path / "b", f"train.init_from={folder}")
    started = new_model(config, synthetic_root)
    assert heads(src_model).keys() == heads(started).keys() and heads(started)
    for name, tensor in heads(src_model).items():
        torch.testing.assert_close(heads(started)[name], tensor, rtol=0, atol=0)
        assert not torch.equal(heads(fresh)[name], tensor), name  # not equal by accident


def test_init_from_reports_the_tensors_it_loaded(source, synthetic_root, tiny_config, tmp_path):
    _, folder = source
    model = new_model(tiny_config(synthetic_root, tmp_path), synthetic_root)
    loaded = load_matching_weights(model, folder)
    assert "logit_scale" in loaded
    assert set(heads(model)) <= set(loaded)


def test_head_shape_mismatch_is_refused(source, synthetic_root, tiny_config, tmp_path):
    _, folder = source
    config = tiny_config(synthetic_root, tmp_path, "head.embed_dim=16", f"train.init_from={folder}")
    with pytest.raises(ValueError, match="heads do not fit") as err:
        new_model(config, synthetic_root)
    assert "image_head." in str(err.value) and "text_head." in str(err.value)


def test_other_head_kind_is_refused(source, synthetic_root, tiny_config, tmp_path):
    _, folder = source
    config = tiny_config(synthetic_root, tmp_path, "head.kind=mlp", f"train.init_from={folder}")
    with pytest.raises(ValueError, match="missing"):
        new_model(config, synthetic_root)


def test_missing_folder_is_refused(synthetic_root, tiny_config, tmp_path):
    missing = tmp_path / "no-such-run" / "best"
    config = tiny_config(synthetic_root, tmp_path / "run", f"train.init_from={missing}")
    with pytest.raises(FileNotFoundError, match=r"train\.init_from") as err:
        new_model(config, synthetic_root)
    assert str(missing) in str(err.value)
