"""The WordPiece tokenizer built from captions: deterministic, round-trips, reloads."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer

from simpleclip.tokenizer import train_wordpiece_tokenizer

CAPTIONS = ["A small red circle on the left", "a big blue square", "two shapes: a red star"] * 3


def test_same_captions_same_vocabulary_every_time() -> None:
    first = train_wordpiece_tokenizer(CAPTIONS, vocab_size=300).get_vocab()
    assert all(train_wordpiece_tokenizer(CAPTIONS, 300).get_vocab() == first for _ in range(3))


def test_known_words_stay_whole_unknown_words_are_spelled_out() -> None:
    tokenizer = train_wordpiece_tokenizer(CAPTIONS, vocab_size=300)
    ids = tokenizer("A red zebra!")["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == [
        "[CLS]",
        "a",
        "red",
        "z",
        "##e",
        "##b",
        "##r",
        "##a",
        "!",
        "[SEP]",
    ]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "a red zebra!"
    assert tokenizer.pad_token_id == 0 and tokenizer.unk_token_id not in ids


def test_vocab_size_bounds_the_whole_words_most_frequent_first() -> None:
    small = train_wordpiece_tokenizer([*CAPTIONS, "red red red"], vocab_size=1)
    assert "red" not in small.get_vocab()  # only characters fit
    bigger = train_wordpiece_tokenizer([*CAPTIONS, "red red red"], vocab_size=len(small) + 1)
    assert "red" in bigger.get_vocab()  # the most frequent word gets the first place


def test_saved_tokenizer_reloads_with_autotokenizer(tmp_path: Path) -> None:
    tokenizer = train_wordpiece_tokenizer(CAPTIONS, vocab_size=300, max_length=16)
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    text = ["a big red circle next to a blue square, on the left"] * 2
    assert reloaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert reloaded.model_max_length == 16
