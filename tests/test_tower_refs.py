"""A run with frozen pretrained towers writes them as references (source + fingerprint), not
copies; a partly unfrozen tower stores only its trained tensors and references the rest; the
checkpoint reloads bit-exact, refuses changed weights, and shares a whole model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_local_weights import SMALL_CNN, saved_timm_weights
from transformers import AutoModel

from simpleclip.checkpoint import WEIGHTS
from simpleclip.encoders.text import tiny_text_config
from simpleclip.hub import save_pretrained, stage_checkpoint
from simpleclip.model import CLIPModel, build_model
from simpleclip.safe_files import load_safetensors
from simpleclip.tower_refs import REFS, TowerSourceChanged, fingerprint, read_refs
from simpleclip.train import train


def _local_text_model(folder: Path, tokenizer, seed: int = 0) -> Path:
    """A small DistilBERT saved as a local pretrained model (weights, config, tokenizer)."""
    torch.manual_seed(seed)
    AutoModel.from_config(tiny_text_config(tokenizer, 32)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _pretrained_config(tiny_config, synthetic_root, tiny_tokenizer, tmp_path, *overrides):
    """A tiny config whose two towers are pretrained local weights, frozen, plus ``overrides``;
    returns it with the image weights file and the text model folder."""
    weights, _ = saved_timm_weights(tmp_path)
    text = _local_text_model(tmp_path / "distilbert-tiny", tiny_tokenizer)
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
        *overrides,
    )
    return config, weights, text


@pytest.fixture
def frozen_run(tiny_config, synthetic_root: Path, tiny_tokenizer, tmp_path: Path):
    config, weights, text = _pretrained_config(
        tiny_config, synthetic_root, tiny_tokenizer, tmp_path, "train.cache_features=true"
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
    # a fully frozen tower: the format older checkpoints have (no "stored", whole fingerprint)
    assert read_refs(result.best_dir)["image"] == {
        "source": str(weights),
        "sha256": fingerprint(result.model.image_encoder),
    }
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


def _trained_names(tower: torch.nn.Module) -> set[str]:
    """Written out by hand: each parameter that takes gradients, and the saved buffers that sit
    beside one (same parent layer: a BatchNorm's running statistics next to its weight)."""
    params = {n for n, p in tower.named_parameters() if p.requires_grad}
    parents = {n.rpartition(".")[0] for n in params}
    buffers = {n for n in tower.state_dict() if n not in dict(tower.named_parameters())}
    return params | {n for n in buffers if n.rpartition(".")[0] in parents}


@pytest.fixture
def partial_model(tiny_config, synthetic_root: Path, tiny_tokenizer, tmp_path: Path):
    """EfficientNet-style and DistilBERT towers with their last block/layer unfrozen, "trained":
    their trainable tensors and those layers' BatchNorm statistics moved off the source's."""
    config, weights, text = _pretrained_config(
        tiny_config,
        synthetic_root,
        tiny_tokenizer,
        tmp_path,
        "image.unfreeze_last=1",
        "text.unfreeze_last=1",
    )
    model = build_model(config)
    torch.manual_seed(1)
    with torch.no_grad():
        for tower in (model.image_encoder, model.text_encoder):
            for name, tensor in tower.state_dict(keep_vars=True).items():
                if name in _trained_names(tower) and tensor.is_floating_point():
                    tensor.add_(0.01 * torch.randn_like(tensor))
    return model, weights, text


def test_partly_trained_towers_store_only_their_trained_tensors_and_reload_bit_exact(
    partial_model, tmp_path: Path
) -> None:
    model, _, _ = partial_model
    saved = model.save(tmp_path / "referenced", reference_frozen=True)
    whole = model.save(tmp_path / "whole")
    refs = read_refs(saved)
    stored = set(load_safetensors(saved / WEIGHTS))
    expected = {
        k for k in model.state_dict() if not k.startswith(("image_encoder.", "text_encoder."))
    }
    for section, attribute in (("image", "image_encoder"), ("text", "text_encoder")):
        tower = getattr(model, attribute)
        names = _trained_names(tower)
        assert 0 < len(names) < len(tower.state_dict())
        assert set(refs[section]["stored"]) == names
        expected |= {f"{attribute}.{n}" for n in names}
    assert stored == expected  # the heads, the temperature, and the trained tensors: no more
    assert "backbone.bn2.running_mean" in refs["image"]["stored"]  # an unfrozen BatchNorm's
    frozen_bytes = sum(
        t.numel() * t.element_size() for k, t in model.state_dict().items() if k not in expected
    )
    size, whole_size = (f.stat().st_size for f in (saved / WEIGHTS, whole / WEIGHTS))
    assert frozen_bytes > 0.5 * whole_size  # the test models are mostly frozen...
    assert size < whole_size - frozen_bytes + 20_000  # ...and all of that is gone (20 kB header)
    reloaded = CLIPModel.load(saved)
    for name, tensor in model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[name], tensor), name
    for a, b in zip(_embeddings(model.eval()), _embeddings(reloaded), strict=True):
        assert torch.equal(a, b)


def test_a_partly_trained_tower_whose_source_changed_is_refused(
    partial_model, tiny_tokenizer, tmp_path: Path
) -> None:
    model, weights, text = partial_model
    saved = model.save(tmp_path / "referenced", reference_frozen=True)
    _local_text_model(text, tiny_tokenizer, seed=5)  # other weights in the same folder
    with pytest.raises(TowerSourceChanged, match=rf"frozen part of its text tower .*{text.name}"):
        CLIPModel.load(saved)
    saved_timm_weights(tmp_path, seed=4)  # and other weights under the image file's name
    with pytest.raises(TowerSourceChanged, match=rf"part of its image tower .*{weights.name}, wh"):
        CLIPModel.load(saved)


def test_a_fully_trained_tower_is_written_whole(
    tiny_config, synthetic_root: Path, tiny_tokenizer, tmp_path: Path
) -> None:
    config, _, _ = _pretrained_config(
        tiny_config,
        synthetic_root,
        tiny_tokenizer,
        tmp_path,
        "image.trainable=true",
        "text.trainable=true",
    )  # both towers pretrained, both fully trained
    model = build_model(config)
    saved = model.save(tmp_path / "referenced", reference_frozen=True)
    assert not (saved / REFS).exists()
    assert set(load_safetensors(saved / WEIGHTS)) == set(model.state_dict())
