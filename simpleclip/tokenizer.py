"""A small WordPiece tokenizer trained in code on the dataset's own captions.

Pretrained text encoders bring their tokenizer from the Hugging Face hub. Offline, and for
the tiny from-scratch text encoder of the demo and the tests, we train one here with the
``tokenizers`` library in well under a second. It is a normal ``transformers`` fast tokenizer,
so it saves next to a checkpoint (``save_pretrained``) and reloads with ``AutoTokenizer``:
inference tokenizes exactly as training did. Taught in ``notebooks/03_text_encoders.ipynb``.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers.trainers import WordPieceTrainer
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_wordpiece_tokenizer(
    texts: Iterable[str], vocab_size: int = 1000, max_length: int = 32
) -> PreTrainedTokenizerFast:
    """Train a BERT-style (lower-cased WordPiece) tokenizer on ``texts``.

    Args:
        texts: the training captions.
        vocab_size: upper bound on the vocabulary, special tokens included; a small caption
            set yields fewer.
        max_length: the longest sequence the text encoder accepts (``model_max_length``).

    Returns:
        A tokenizer that adds ``[CLS] ... [SEP]`` and pads with ``[PAD]`` (id 0).

    Example:
        >>> tok = train_wordpiece_tokenizer(["a red circle", "a blue square"], vocab_size=100)
        >>> tok.decode(tok("a red circle")["input_ids"], skip_special_tokens=True)
        'a red circle'
    """
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    trainer = WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS)
    tokenizer.train_from_iterator(list(texts), trainer)
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
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
