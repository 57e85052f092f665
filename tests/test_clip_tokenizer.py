"""CLIP's BPE tokenizer: special tokens, padding, truncation, cleaning, and parity with
``transformers.CLIPTokenizer`` on a tiny vocabulary built here (no download)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch

from simpleclip.clip_arch import BPETokenizer, learn_merges
from simpleclip.clip_arch.tokenizer import bytes_to_unicode, clean_text, openai_vocab

CORPUS = [
    "a photo of a cat",
    "a photo of a dog",
    "two dogs are playing in the snow",
    "a black cat sleeping on a red sofa",
    "the children play football in the grass",
    "don't stop, it's 3 o'clock!",
    "mississippi grass sheep ssss",
]
STRINGS = [
    "a photo of a cat",
    "A Photo OF a  CAT",
    "   two dogs\tplaying\n in the snow   ",
    "don't stop, it's 12:30 o'clock!!",
    "mississippi sheep sssss grass",
    "naïve café über straße",  # non-ASCII letters: several bytes per character
    "emoji 🙂🐈 and ¿questions?",
    "hello <|endoftext|> world",  # a special token written in the text
    "",
    " ".join(["a black cat sleeping on a red sofa"] * 12),  # > 77 tokens: truncated
]


@pytest.fixture(scope="module")
def tok() -> BPETokenizer:
    return BPETokenizer(learn_merges(CORPUS, 120))


def test_vocabulary_has_openai_layout(tok: BPETokenizer) -> None:
    assert len(bytes_to_unicode()) == 256 and len(set(bytes_to_unicode().values())) == 256
    assert tok.vocab_size == 256 + 256 + len(tok.bpe_ranks) + 2
    assert len(set(tok.encoder.values())) == tok.vocab_size  # every merge adds one entry
    # the end token has the largest id, which is what OpenAI's argmax pooling relies on
    assert tok.eot_id == tok.vocab_size - 1 and tok.sot_id == tok.vocab_size - 2


def test_special_tokens_and_padding(tok: BPETokenizer) -> None:
    ids = tok.encode("a photo of a cat")
    rows = tok(["a photo of a cat", "a dog"])
    assert rows.shape == (2, 77) and rows.dtype == torch.long
    assert rows[0, : len(ids) + 2].tolist() == [tok.sot_id, *ids, tok.eot_id]
    assert (rows[0, len(ids) + 2 :] == 0).all()  # OpenAI pads with 0
    tok_eot_pad = BPETokenizer(list(tok.bpe_ranks), pad_id=tok.eot_id)
    assert (tok_eot_pad(["a dog"])[0, len(tok.encode("a dog")) + 2 :] == tok.eot_id).all()
    assert tok("a dog", context_length=10).shape == (1, 10)


def test_truncation_keeps_end_token(tok: BPETokenizer) -> None:
    long_text = STRINGS[-1]
    ids = tok.encode(long_text)
    assert len(ids) > 75
    row = tok(long_text)[0]
    assert row.tolist() == [tok.sot_id, *ids[:75], tok.eot_id]
    with pytest.raises(ValueError, match="over 77"):
        tok(long_text, truncate=False)


def test_lower_case_whitespace_and_html_are_cleaned(tok: BPETokenizer) -> None:
    assert clean_text("  A\tPhoto \n\n of   a CAT ") == "a photo of a cat"
    assert torch.equal(tok("  A\tPhoto \n\n of   a CAT "), tok("a photo of a cat"))
    assert tok.encode("cats &amp;amp; dogs") == tok.encode("cats & dogs")  # unescaped twice
    assert tok.encode("cafe\u0301") == tok.encode("café")  # NFC: e + combining accent = é


def test_bpe_applies_merges_in_rank_order() -> None:
    # "abc": the best-ranked applicable merge wins, whatever its position in the word.
    assert BPETokenizer([("b", "c</w>"), ("a", "b")]).bpe("abc") == ["a", "bc</w>"]
    assert BPETokenizer([("a", "b"), ("b", "c</w>")]).bpe("abc") == ["ab", "c</w>"]
    assert BPETokenizer([("a", "b"), ("ab", "c</w>")]).bpe("abc") == ["abc</w>"]
    # overlapping pairs merge left to right: a a a -> aa a
    assert BPETokenizer([("a", "a")]).bpe("aaa") == ["aa", "a</w>"]
    assert BPETokenizer([]).bpe("x") == ["x</w>"]


def test_decode_inverts_encode(tok: BPETokenizer) -> None:
    for text in ["a photo of a cat", "naïve café über straße", "emoji 🙂🐈"]:
        assert tok.decode(tok(text)[0]) == text


def test_learn_merges_is_deterministic() -> None:
    merges = learn_merges(CORPUS, 50)
    assert merges == learn_merges(CORPUS, 50) and len(merges) == 50
    assert len({"".join(m) for m in merges}) == 50


def test_matches_transformers_clip_tokenizer(tok: BPETokenizer, tmp_path: Path) -> None:
    from transformers import CLIPTokenizer

    vocab_file, merges_file = tok.save(tmp_path)
    hf = CLIPTokenizer(vocab=str(vocab_file), merges=str(merges_file))
    assert hf.convert_tokens_to_ids("<|endoftext|>") == tok.eot_id  # the files were read
    ours = BPETokenizer.from_hf_files(vocab_file, merges_file, pad_id=tok.eot_id)  # HF pads so
    expected = hf(STRINGS, padding="max_length", max_length=77, truncation=True)["input_ids"]
    assert ours(STRINGS).tolist() == expected
    for text in STRINGS:
        assert [tok.sot_id, *tok.encode(text), tok.eot_id][:77] == hf(text)["input_ids"][:77]


def test_openai_merges_file_and_hf_files_agree(tok: BPETokenizer, tmp_path: Path) -> None:
    merges = list(tok.bpe_ranks)
    gz = tmp_path / "bpe_tiny.txt.gz"
    lines = ["tiny.txt#version: 0.2", *(" ".join(m) for m in merges), "x y", "y z"]
    with gzip.open(gz, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    from_openai = BPETokenizer.from_merges_file(gz, num_merges=len(merges))  # drops the 2 extra
    from_hf = BPETokenizer.from_hf_files(*tok.save(tmp_path))
    assert from_openai.encoder == openai_vocab(merges) == from_hf.encoder
    assert torch.equal(from_openai(STRINGS), from_hf(STRINGS))
