"""Pretrained weights from local files and folders, partial fine-tuning, and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file
from transformers import AutoModel

from simpleclip.encoders import EncoderLoadError, ImageEncoder, TextEncoder
from simpleclip.encoders.text import tiny_text_config

# timm's tiny test architectures: real code paths (classifier, pretrained_cfg), a few MB.
SMALL_CNN, OTHER_CNN = "test_efficientnet", "test_resnet"


def saved_timm_weights(tmp_path: Path, name: str = SMALL_CNN, seed: int = 3) -> tuple[Path, dict]:
    """A timm model's full state dict (classifier included, as timm publishes them) on disk."""
    torch.manual_seed(seed)
    state = timm.create_model(name, pretrained=False).state_dict()
    path = tmp_path / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, path)
    return path, state


def test_image_weights_load_from_a_local_safetensors_file(tmp_path: Path) -> None:
    path, state = saved_timm_weights(tmp_path)
    encoder = ImageEncoder(SMALL_CNN, weights=path)
    loaded = encoder.backbone.state_dict()
    assert "classifier.weight" in state and "classifier.weight" not in loaded  # features only
    for key, value in loaded.items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)
    other = ImageEncoder(SMALL_CNN, pretrained=False)  # random: proves the file was used
    assert not torch.equal(other.backbone.conv_stem.weight, loaded["conv_stem.weight"])


def test_image_weights_from_a_pth_training_checkpoint(tmp_path: Path) -> None:
    _, state = saved_timm_weights(tmp_path)
    path = tmp_path / "checkpoint.pth"
    torch.save({"state_dict": state, "epoch": 3}, path)  # a common training-checkpoint layout
    encoder = ImageEncoder(SMALL_CNN, weights=path)
    torch.testing.assert_close(encoder.backbone.conv_stem.weight, state["conv_stem.weight"])


def test_missing_weights_file_and_folder_errors_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(EncoderLoadError, match="no such file"):
        ImageEncoder(SMALL_CNN, weights=tmp_path / "nope.safetensors")
    path, _ = saved_timm_weights(tmp_path)
    with pytest.raises(EncoderLoadError, match=f"is a folder.*{path.name}"):
        ImageEncoder(SMALL_CNN, weights=tmp_path)
    (tmp_path / "weights.txt").write_text("not weights")
    with pytest.raises(EncoderLoadError, match=r"expected one of \.safetensors"):
        ImageEncoder(SMALL_CNN, weights=tmp_path / "weights.txt")


def test_weights_of_another_architecture_are_refused_with_the_keys(tmp_path: Path) -> None:
    path, _ = saved_timm_weights(tmp_path, OTHER_CNN)
    with pytest.raises(EncoderLoadError) as error:
        ImageEncoder(SMALL_CNN, weights=path)
    message = str(error.value)
    assert "does not fit image encoder 'test_efficientnet'" in message
    assert "missing: conv_stem.weight" in message  # named keys, not a wall of text
    assert "unexpected" in message and "Set image.name" in message


def test_pretrained_false_never_reads_the_weights_file(tmp_path: Path) -> None:
    # CLIPModel.load rebuilds with pretrained=False: a moved weights file must not matter.
    encoder = ImageEncoder(SMALL_CNN, pretrained=False, weights=tmp_path / "gone.safetensors")
    assert encoder.out_dim > 0


def test_mean_and_std_override_the_models_normalisation() -> None:
    default = ImageEncoder(SMALL_CNN, pretrained=False).preprocessing
    custom = ImageEncoder(SMALL_CNN, pretrained=False, mean=(0.5, 0.5, 0.5), std=(0.5,) * 3)
    assert default.mean != (0.5, 0.5, 0.5)
    assert custom.preprocessing.mean == (0.5, 0.5, 0.5) == custom.preprocessing.std
    assert custom.preprocessing.input_size == default.input_size


@pytest.fixture
def text_folder(tmp_path: Path, tiny_tokenizer) -> Path:
    """A Hugging Face model folder, as save_pretrained writes it (what users copy offline)."""
    torch.manual_seed(5)
    model = AutoModel.from_config(tiny_text_config(tiny_tokenizer, 32))
    folder = tmp_path / "my-text-model"
    model.save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return folder


def test_text_encoder_loads_a_local_folder(text_folder: Path, tiny_tokenizer) -> None:
    encoder = TextEncoder(str(text_folder))
    saved = AutoModel.from_pretrained(text_folder)
    for key, value in saved.state_dict().items():
        torch.testing.assert_close(encoder.model.state_dict()[key], value, rtol=0, atol=0)
    ids = encoder.tokenize(["a red circle"])["input_ids"][0].tolist()
    assert ids == tiny_tokenizer("a red circle")["input_ids"]  # the folder's own tokenizer


def test_text_folder_errors(text_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(EncoderLoadError, match="does not exist"):
        TextEncoder(str(tmp_path / "not-there"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EncoderLoadError, match=r"no config\.json and no model\.safetensors"):
        TextEncoder(str(empty))


def test_text_weights_that_do_not_fit_their_config_are_refused(text_folder: Path) -> None:
    config = json.loads((text_folder / "config.json").read_text())
    config["n_layers"] = 3  # the file has 2 layers: transformers would leave layer 2 random
    (text_folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(EncoderLoadError, match=r"do not fit.*transformer\.layer\.2\."):
        TextEncoder(str(text_folder))


def test_unfreeze_last_trains_only_the_top_of_each_encoder(tiny_tokenizer) -> None:
    image = ImageEncoder("tiny_vit", trainable=False, unfreeze_last=1)
    trainable = {n for n, p in image.backbone.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("blocks.1.", "norm.")) for n in trainable)
    assert not image.backbone.patch_embed.proj.weight.requires_grad
    text = TextEncoder("tiny", tokenizer=tiny_tokenizer, trainable=False, unfreeze_last=1)
    trainable = {n for n, p in text.model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("transformer.layer.1.") for n in trainable)
    assert text.train().model.training is False  # dropout stays off, as for a frozen encoder
    batch = text.tokenize(["a red circle", "a blue square"])
    text(batch["input_ids"], batch["attention_mask"]).sum().backward()
    assert text.model.transformer.layer[1].ffn.lin2.weight.grad is not None
    assert text.model.embeddings.word_embeddings.weight.grad is None


def test_unfreeze_last_errors(tiny_tokenizer) -> None:
    with pytest.raises(ValueError, match="unfreeze_last=5, but the model has 2 layers"):
        TextEncoder("tiny", tokenizer=tiny_tokenizer, trainable=False, unfreeze_last=5)
    with pytest.raises(ValueError, match="applies to a frozen encoder"):
        ImageEncoder("tiny_vit", trainable=True, unfreeze_last=1)
    with pytest.raises(ValueError, match="needs a timm model"):
        ImageEncoder("tiny", trainable=False, unfreeze_last=1)
