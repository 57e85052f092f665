"""A small WordPiece tokenizer built in code from the dataset's own captions.

Pretrained text encoders bring their tokenizer from the Hugging Face hub. Offline, and for
the tiny from-scratch text encoder of the demo and the tests, we build one here with the
``tokenizers`` library in well under a second. Its vocabulary is the most frequent whole words
plus single characters (every character seen, and every ASCII letter, digit and punctuation
mark), each as a word start and as a ``##`` continuation: known words stay whole, rare ones are
spelled out. We count the words ourselves rather than use ``WordPieceTrainer``, which breaks
frequency ties in hash order and so gives different token ids on every run; the same captions
must always give the same tokenizer. It is a normal ``transformers`` fast tokenizer, so it
saves next to a checkpoint (``save_pretrained``) and reloads with ``AutoTokenizer``: inference
tokenizes exactly as training did. Taught in ``notebooks/03_text_encoders.ipynb``.
"""

from __future__ import annotations

import string
from collections import Counter
from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
ALWAYS_SPELLABLE = string.ascii_lowercase + string.digits + string.punctuation


def train_wordpiece_tokenizer(
    texts: Iterable[str], vocab_size: int = 1000, max_length: int = 32
) -> PreTrainedTokenizerFast:
    """Build a BERT-style (lower-cased WordPiece) tokenizer from ``texts``; deterministic.

    Args:
        texts: the training captions.
        vocab_size: upper bound on the vocabulary, special tokens and characters included;
            a small caption set yields fewer.
        max_length: the longest sequence the text encoder accepts (``model_max_length``).

    Returns:
        A tokenizer that adds ``[CLS] ... [SEP]`` and pads with ``[PAD]`` (id 0).

    Example:
        >>> tok = train_wordpiece_tokenizer(["a red circle", "a blue square"], vocab_size=100)
        >>> tok.decode(tok("a red circle")["input_ids"], skip_special_tokens=True)
        'a red circle'
    """
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for text in texts:
        words = pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))
        counts.update(word for word, _ in words)
    characters = sorted({c for word in counts for c in word} | set(ALWAYS_SPELLABLE))
    pieces = SPECIAL_TOKENS + characters + [f"##{c}" for c in characters]
    by_frequency = sorted((w for w in counts if len(w) > 1), key=lambda w: (-counts[w], w))
    words = by_frequency[: max(0, vocab_size - len(pieces))]
    vocab = {token: index for index, token in enumerate(pieces + words)}

    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=max_length,
    )
