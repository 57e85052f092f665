"""A run with frozen pretrained towers writes them as references (source + fingerprint), not
copies; the checkpoint reloads bit-exact, refuses changed weights, and shares a whole model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_local_weights import SMALL_CNN, saved_timm_weights
from transformers import AutoModel

from simpleclip.encoders.text import tiny_text_config
from simpleclip.hub import save_pretrained, stage_checkpoint
from simpleclip.model import CLIPModel
from simpleclip.tower_refs import REFS, TowerSourceChanged
from simpleclip.train import train


@pytest.fixture
def frozen_run(tiny_config, synthetic_root: Path, tiny_tokenizer, tmp_path: Path):
    weights, _ = saved_timm_weights(tmp_path)
    text = tmp_path / "distilbert-tiny"  # a local pretrained text model
    AutoModel.from_config(tiny_text_config(tiny_tokenizer, 32)).save_pretrained(text)
    tiny_tokenizer.save_pretrained(text)
    config = tiny_config(
        synthetic_root,
        tmp_path / "run",
        f"image.name={SMALL_CNN}",
        f"image.weights={weights}",
        "image.pretrained=true",
        "image.trainable=false",
        f"text.name={text}",
        "text.pretrained=true",
        "text.trainable=false",
        "train.cache_features=true",
    )
    return train(config, progress=False), weights, text


def _embeddings(model: CLIPModel) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    size = model.preprocessing.input_size
    with torch.no_grad():
        images = model.encode_image(torch.randn(3, 3, size, size))
        texts = model.encode_text(**model.tokenize(["a red circle", "two blue squares"]))
    return images, texts


def test_frozen_towers_are_referenced_and_reload_bit_exact(frozen_run, tmp_path: Path) -> None:
    result, weights, text = frozen_run
    for folder in ("best", "last"):
        refs = (result.out_dir / folder / REFS).read_text()
        assert str(weights) in refs and str(text) in refs and refs.count("sha256") == 2
    referenced = (result.out_dir / "best" / "model.safetensors").stat().st_size
    whole = result.model.save(tmp_path / "whole") / "model.safetensors"
    assert referenced * 10 < whole.stat().st_size  # heads and temperature only
    reloaded = CLIPModel.load(result.out_dir / "last")
    for a, b in zip(_embeddings(result.model.eval()), _embeddings(reloaded), strict=True):
        assert torch.equal(a, b)
    for name, tensor in result.model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[name], tensor.cpu()), name


def test_changed_or_missing_tower_weights_are_refused(frozen_run, tmp_path: Path) -> None:
    result, weights, _ = frozen_run
    saved_timm_weights(tmp_path, seed=4)  # other weights under the same file name
    with pytest.raises(TowerSourceChanged, match=r"frozen image tower .* have changed"):
        CLIPModel.load(result.best_dir)
    weights.unlink()
    with pytest.raises(TowerSourceChanged, match=r"cannot be loaded .*Restore it"):
        CLIPModel.load(result.best_dir)


def test_what_is_shared_is_whole_and_needs_no_source(frozen_run, tmp_path: Path) -> None:
    result, weights, _ = frozen_run
    staging = tmp_path / "staging"
    staging.mkdir()
    stage_checkpoint(result.best_dir, staging)  # what `simpleclip push` uploads
    pretrained = save_pretrained(result.model, tmp_path / "shared")
    weights.unlink()  # the source is gone: both still load
    for folder in (staging, pretrained):
        assert not (folder / REFS).exists()
        loaded = CLIPModel.load(folder)
        assert torch.equal(_embeddings(loaded)[0], _embeddings(result.model.eval())[0])
