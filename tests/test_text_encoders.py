"""Text encoders: tokenizer round trip, poolings, padding invariance, freezing, errors, rebuild."""

from __future__ import annotations

import copy
import re

import pytest
import torch
from transformers import AutoConfig, AutoTokenizer, DistilBertConfig, MPNetConfig

from simpleclip.data import read_captions
from simpleclip.encoders import (
    TEXT_PRESETS,
    EncoderLoadError,
    TextEncoder,
    first_token_pool,
    mean_pool,
)
from simpleclip.encoders import text as text_module

SENTENCE = "a small red circle on the left"


@pytest.fixture(scope="module")
def tiny_encoder(tiny_tokenizer) -> TextEncoder:
    torch.manual_seed(0)
    return TextEncoder("tiny", tokenizer=tiny_tokenizer).eval()


def test_tiny_tokenizer_round_trips_the_captions(synthetic_root, tiny_tokenizer) -> None:
    captions = read_captions(synthetic_root / "captions.txt")["caption"].tolist()[:50]
    for caption in captions:
        ids = tiny_tokenizer(caption)["input_ids"]
        assert ids[0] == tiny_tokenizer.cls_token_id and ids[-1] == tiny_tokenizer.sep_token_id
        assert tiny_tokenizer.unk_token_id not in ids
        decoded = tiny_tokenizer.decode(ids, skip_special_tokens=True)
        # WordPiece splits punctuation off ("shapes :"); only that spacing may differ.
        assert _squeeze_punctuation(decoded) == _squeeze_punctuation(caption.lower())


def _squeeze_punctuation(text: str) -> str:
    return re.sub(r"\s+([^\w\s])", r"\1", text)


def test_tiny_encoder_shapes_and_attributes(tiny_encoder, tiny_tokenizer) -> None:
    assert tiny_encoder.tokenizer is tiny_tokenizer
    assert tiny_encoder.out_dim == tiny_encoder.model.config.hidden_size == 128
    assert tiny_encoder.model.config.vocab_size == len(tiny_tokenizer)
    assert tiny_encoder.pooling == "mean"
    batch = tiny_encoder.tokenize([SENTENCE, "two blue squares", "a star"])
    assert set(batch) == {"input_ids", "attention_mask"}  # DistilBERT takes no token types
    assert batch["input_ids"].shape[0] == 3
    features = tiny_encoder(batch["input_ids"], batch["attention_mask"])
    assert features.shape == (3, tiny_encoder.out_dim)


@pytest.mark.parametrize("side", ["right", "left"])
def test_tokenize_pads_as_the_tokenizer_and_the_dataset_do(
    synthetic_root, tiny_tokenizer, side: str
) -> None:
    """The same ids and mask as ``tokenizer(..., padding=True)`` and as a training batch."""
    from simpleclip.data import CaptionDataset, load_split

    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.padding_side = side
    encoder = TextEncoder("tiny", tokenizer=tokenizer)
    data = CaptionDataset(load_split(synthetic_root, "train"), synthetic_root / "Images", tokenizer)
    texts = data.captions[:6]
    batch = encoder.tokenize(texts)
    expected = tokenizer(texts, padding=True, return_tensors="pt")
    training = data.collate_text(range(6))
    for key in ("input_ids", "attention_mask"):
        assert torch.equal(batch[key], expected[key]) and torch.equal(batch[key], training[key])
    assert bool(batch["attention_mask"][:, 0].all()) == (side == "right")


def test_tokenize_truncates_at_max_length(tiny_tokenizer) -> None:
    encoder = TextEncoder("tiny", tokenizer=tiny_tokenizer, max_length=6)
    batch = encoder.tokenize([" ".join([SENTENCE] * 10)])
    assert batch["input_ids"].shape == (1, 6)
    assert encoder.model.config.max_position_embeddings >= 6


def _padded(tokenizer, text: str, length: int) -> dict[str, torch.Tensor]:
    return tokenizer(
        text,
        padding="max_length",
        max_length=length,
        return_token_type_ids=False,
        return_tensors="pt",
    )


def test_masked_mean_pooling_ignores_padding(tiny_encoder, tiny_tokenizer) -> None:
    text = "a big red circle"
    short, long = _padded(tiny_tokenizer, text, 8), _padded(tiny_tokenizer, text, 20)
    assert short["attention_mask"].sum() == long["attention_mask"].sum() <= 8
    with torch.no_grad():
        torch.testing.assert_close(tiny_encoder(**short), tiny_encoder(**long))
        # Control: an unmasked mean over the same hidden states does depend on padding.
        hidden = [tiny_encoder.model(**b).last_hidden_state.mean(1) for b in (short, long)]
    assert not torch.allclose(hidden[0], hidden[1], atol=1e-3)


def test_mean_pool_matches_a_loop() -> None:
    torch.manual_seed(0)
    hidden = torch.randn(4, 7, 5)
    mask = torch.tensor([[1] * n + [0] * (7 - n) for n in (7, 3, 1, 5)])
    expected = torch.stack([hidden[i, : int(mask[i].sum())].mean(0) for i in range(4)])
    torch.testing.assert_close(mean_pool(hidden, mask), expected)
    torch.testing.assert_close(first_token_pool(hidden, mask), hidden[:, 0])


def test_pooling_defaults_follow_the_presets(tiny_tokenizer) -> None:
    assert TEXT_PRESETS["distilbert-base-uncased"].pooling == "cls"
    assert TEXT_PRESETS["sentence-transformers/all-mpnet-base-v2"].pooling == "mean"
    cls_encoder = TextEncoder("tiny", tokenizer=tiny_tokenizer, pooling="cls").eval()
    batch = cls_encoder.tokenize([SENTENCE, "a star"])
    with torch.no_grad():
        hidden = cls_encoder.model(**batch).last_hidden_state
        torch.testing.assert_close(cls_encoder(**batch), hidden[:, 0])
    with pytest.raises(ValueError, match="pooling"):
        TextEncoder("tiny", tokenizer=tiny_tokenizer, pooling="max")


@pytest.mark.parametrize("trainable", [True, False])
def test_freezing_stops_gradients_and_dropout(tiny_tokenizer, trainable: bool) -> None:
    encoder = TextEncoder("tiny", tokenizer=tiny_tokenizer, trainable=trainable).train()
    batch = encoder.tokenize([SENTENCE, "two blue squares"])
    first, second = encoder(**batch), encoder(**batch)
    # DistilBERT's dropout makes two training-mode passes differ, unless the model is frozen.
    assert torch.allclose(first, second) == (not trainable)
    assert encoder.model.training == trainable
    if trainable:
        first.sum().backward()
    for name, param in encoder.model.named_parameters():
        assert param.requires_grad == trainable, name
        assert (param.grad is not None) == trainable, name


def test_tiny_without_tokenizer_says_how_to_get_one() -> None:
    with pytest.raises(ValueError, match="train_wordpiece_tokenizer"):
        TextEncoder("tiny")


def test_unknown_model_gives_one_clear_error() -> None:
    with pytest.raises(EncoderLoadError) as info:
        TextEncoder("simpleclip-tests/no-such-text-model", tokenizer=None)
    message = str(info.value)
    assert "'simpleclip-tests/no-such-text-model'" in message
    assert "HF_HUB_OFFLINE" in message and "'tiny'" in message
    assert isinstance(info.value.__cause__, OSError)


def test_offline_preset_gives_one_clear_error(monkeypatch, tiny_tokenizer) -> None:
    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(text_module.AutoModel, "from_pretrained", offline)
    with pytest.raises(EncoderLoadError, match="'distilbert-base-uncased'") as info:
        TextEncoder("distilbert-base-uncased", tokenizer=tiny_tokenizer)
    assert isinstance(info.value.__cause__, OSError)


def test_hf_config_rebuild_gives_identical_outputs(tiny_encoder, tmp_path) -> None:
    # What a checkpoint stores: the config and tokenizer as files, the weights as a state dict.
    tiny_encoder.model.config.save_pretrained(tmp_path)
    tiny_encoder.tokenizer.save_pretrained(tmp_path)
    from_files = AutoConfig.from_pretrained(tmp_path)
    config_dict = tiny_encoder.model.config.to_dict()
    from_dict = AutoConfig.for_model(config_dict.pop("model_type"), **config_dict)
    batch = tiny_encoder.tokenize([SENTENCE, "two blue squares"])
    for config in (from_files, from_dict):
        rebuilt = TextEncoder(
            "tiny", tokenizer=AutoTokenizer.from_pretrained(tmp_path), hf_config=config
        ).eval()
        rebuilt.load_state_dict(tiny_encoder.state_dict())
        assert rebuilt.tokenize([SENTENCE])["input_ids"].tolist() == (
            tiny_encoder.tokenize([SENTENCE])["input_ids"].tolist()
        )
        with torch.no_grad():
            torch.testing.assert_close(rebuilt(**batch), tiny_encoder(**batch))


def test_local_folder_loads_like_a_hub_model(tiny_encoder, tmp_path) -> None:
    tiny_encoder.model.save_pretrained(tmp_path)
    tiny_encoder.tokenizer.save_pretrained(tmp_path)
    loaded = TextEncoder(str(tmp_path)).eval()  # config, weights and tokenizer from the folder
    assert loaded.pooling == "mean" and loaded.out_dim == 128
    batch = tiny_encoder.tokenize([SENTENCE, "a star"])
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch), tiny_encoder(**batch))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "config_class", "pooling"),
    [
        ("distilbert-base-uncased", DistilBertConfig, "cls"),
        ("sentence-transformers/all-mpnet-base-v2", MPNetConfig, "mean"),
    ],
)
def test_real_size_text_encoders_build_offline(name, config_class, pooling, tiny_tokenizer) -> None:
    # hf_config skips every download; a small tokenizer stands in for the real one here.
    encoder = TextEncoder(name, tokenizer=tiny_tokenizer, hf_config=config_class()).eval()
    assert encoder.out_dim == 768 and encoder.pooling == pooling
    batch = encoder.tokenize([SENTENCE, "a star"])
    with torch.no_grad():
        assert encoder(**batch).shape == (2, 768)
