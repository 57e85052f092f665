"""CLIP's byte-level BPE tokenizer, written out (OpenAI's ``clip/simple_tokenizer.py``).

A caption is cleaned (Unicode NFC, HTML entities, runs of whitespace) and lower-cased, split into
words by a regular expression, each word's UTF-8 bytes are mapped to printable characters, and
neighbouring symbols are merged in the order a merges file ranks them (byte-pair encoding,
Sennrich et al., 2016, arXiv:1508.07909; CLIP paper section 2.4). A word's last symbol carries
``</w>``. The result is ``<|startoftext|> ... <|endoftext|>``, padded to 77 tokens.
The real vocabulary: OpenAI's ``clip/bpe_simple_vocab_16e6.txt.gz`` (github.com/openai/CLIP)
or, identical, ``vocab.json`` + ``merges.txt`` in hub repos such as
``openai/clip-vit-base-patch32`` (``BPETokenizer.from_pretrained``). ``learn_merges`` builds a
tiny one in code for tests and smoke runs. Taught in ``notebooks/09_clip_from_scratch.ipynb``.
"""

from __future__ import annotations

import gzip
import html
import json
import math
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from itertools import pairwise
from pathlib import Path

import regex  # `re` plus the \p{L} (letter) and \p{N} (number) classes; comes with transformers
import torch

SOT, EOT = "<|startoftext|>", "<|endoftext|>"
# Special tokens, English contractions, runs of letters, single digits, runs of other symbols.
TOKEN_PATTERN = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE,
)
OPENAI_NUM_MERGES = 49152 - 256 - 2  # CLIP keeps the first 48,894 merges of OpenAI's file


@lru_cache
def bytes_to_unicode() -> dict[int, str]:
    """Map each of the 256 byte values to a printable character (GPT-2's table).

    Printable bytes map to themselves; the others (space, control bytes...) to characters from
    256 up, so a merges file never holds whitespace. Insertion order gives the first 256 ids.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    others = [b for b in range(256) if b not in printable]
    return {
        **{b: chr(b) for b in printable},
        **{b: chr(256 + n) for n, b in enumerate(others)},
    }


def clean_text(text: str) -> str:
    """Normalise like CLIP: NFC, unescape HTML twice, collapse whitespace, strip, lower-case.

    OpenAI runs ``ftfy.fix_text`` first, which also normalises to NFC and repairs broken
    encodings; ``transformers.CLIPTokenizer`` does NFC, whitespace and lower-case but does not
    unescape HTML, so the two differ on strings such as ``"&amp;"``.
    """
    text = html.unescape(html.unescape(unicodedata.normalize("NFC", text)))
    return " ".join(text.split()).lower()


def words_of(text: str) -> list[str]:
    """Clean ``text``, split it into words and write each word's bytes as printable characters."""
    encoder = bytes_to_unicode()
    return [
        "".join(encoder[b] for b in word.encode("utf-8"))
        for word in TOKEN_PATTERN.findall(clean_text(text))
    ]


def merge_pair(symbols: Sequence[str], pair: tuple[str, str]) -> list[str]:
    """Replace every non-overlapping occurrence of ``pair``, left to right, by its concatenation."""
    out, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            out.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return out


def learn_merges(texts: Iterable[str], num_merges: int) -> list[tuple[str, str]]:
    """Learn a tiny BPE merges list: repeatedly merge the most frequent neighbouring pair.

    Ties go to the alphabetically first pair, so the result is deterministic. A pair whose
    merged symbol already exists is skipped: every merge then adds exactly one vocabulary entry.

    Args:
        texts: training sentences.
        num_merges: how many merges to learn at most.

    Returns:
        The merges, most important first (their rank order).
    """
    words: Counter[tuple[str, ...]] = Counter()
    for text in texts:
        for word in words_of(text):
            if word not in (SOT, EOT):
                words[(*word[:-1], word[-1] + "</w>")] += 1
    merges: list[tuple[str, str]] = []
    known: set[str] = set()
    for _ in range(num_merges):
        pairs: Counter[tuple[str, str]] = Counter()
        for symbols, count in words.items():
            for pair in pairwise(symbols):
                pairs[pair] += count
        candidates = [(-n, pair) for pair, n in pairs.items() if "".join(pair) not in known]
        if not candidates:
            break
        best = min(candidates)[1]
        merges.append(best)
        known.add("".join(best))
        words = Counter({tuple(merge_pair(s, best)): n for s, n in words.items()})
    return merges


def read_merges(path: str | Path, num_merges: int | None = None) -> list[tuple[str, str]]:
    """Read a merges file: a header line, then one "left right" pair per line, best first.

    Args:
        path: OpenAI's ``bpe_simple_vocab_16e6.txt.gz`` (gzipped) or a ``merges.txt``.
        num_merges: keep only the first ones (CLIP keeps 48,894 of OpenAI's 262,144); None: all.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")[1:]
    return [tuple(line.split()) for line in lines if line.strip()][:num_merges]


def openai_vocab(merges: Sequence[tuple[str, str]]) -> dict[str, int]:
    """OpenAI's vocabulary: 256 bytes, the same at a word's end, one entry per merge, 2 specials."""
    symbols = list(bytes_to_unicode().values())
    symbols += [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [SOT, EOT]
    return {s: i for i, s in enumerate(symbols)}


class BPETokenizer:
    """Turn captions into CLIP's fixed-length token id rows.

    Args:
        merges: ranked merges, e.g. from OpenAI's file or ``learn_merges``.
        vocab: symbol -> id; None builds OpenAI's layout from ``merges`` (see ``openai_vocab``).
        context_length: row length of ``__call__``'s output (77 for every released CLIP).
        pad_id: id that fills each row after the end token; OpenAI's ``clip.tokenize`` uses 0,
            ``transformers.CLIPTokenizer`` the end-of-text id. CLIP reads the end token and its
            causal mask hides what follows, so the choice does not change the embeddings.

    Example:
        >>> tok = BPETokenizer(learn_merges(["a photo of a cat", "a photo of a dog"], 20))
        >>> tok(["a photo of a cat"]).shape
        torch.Size([1, 77])
        >>> tok.decode(tok(["A  photo of a CAT"])[0])
        'a photo of a cat'
    """

    def __init__(
        self,
        merges: Sequence[tuple[str, str]],
        vocab: dict[str, int] | None = None,
        context_length: int = 77,
        pad_id: int = 0,
    ) -> None:
        self.bpe_ranks = {tuple(m): rank for rank, m in enumerate(merges)}
        self.encoder = openai_vocab(merges) if vocab is None else dict(vocab)
        self.decoder = {i: s for s, i in self.encoder.items()}
        self.byte_decoder = {c: b for b, c in bytes_to_unicode().items()}
        self.sot_id, self.eot_id = self.encoder[SOT], self.encoder[EOT]
        self.context_length, self.pad_id = context_length, pad_id
        self.cache: dict[str, list[str]] = {SOT: [SOT], EOT: [EOT]}

    @property
    def vocab_size(self) -> int:
        """Number of ids (the text tower's ``vocab_size``)."""
        return len(self.encoder)

    def bpe(self, word: str) -> list[str]:
        """Split one byte-encoded word into vocabulary symbols, best-ranked merge first."""
        if word not in self.cache:
            symbols = [*word[:-1], word[-1] + "</w>"]
            while len(symbols) > 1:
                pairs = pairwise(symbols)
                best = min(pairs, key=lambda pair: self.bpe_ranks.get(pair, math.inf))
                if best not in self.bpe_ranks:
                    break  # no neighbouring pair is a known merge
                symbols = merge_pair(symbols, best)
            self.cache[word] = symbols
        return self.cache[word]

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, without start and end tokens."""
        return [self.encoder[s] for word in words_of(text) for s in self.bpe(word)]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of a row of ids, skipping the start token and stopping at the end token."""
        symbols = []
        for i in map(int, ids):
            if i == self.eot_id:
                break
            if i != self.sot_id:
                symbols.append(self.decoder[i])
        data = bytearray(self.byte_decoder[c] for c in "".join(symbols))
        return data.decode("utf-8", errors="replace").replace("</w>", " ").strip()

    def __call__(
        self, texts: str | Sequence[str], context_length: int | None = None, truncate: bool = True
    ) -> torch.Tensor:
        """Tokenize a batch into ``<|startoftext|> ... <|endoftext|> pad pad ...`` rows.

        Args:
            texts: one caption or a list of them.
            context_length: row length; defaults to ``self.context_length``.
            truncate: cut long captions, keeping the end token last; False raises instead.

        Shapes:
            returns (N, context_length) int64
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        length = context_length or self.context_length
        rows = torch.full((len(texts), length), self.pad_id, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [self.sot_id, *self.encode(text), self.eot_id]
            if len(ids) > length:
                if not truncate:
                    raise ValueError(f"{text!r} is {len(ids)} tokens, over {length}")
                ids = [*ids[: length - 1], self.eot_id]
            rows[row, : len(ids)] = torch.tensor(ids)
        return rows

    @classmethod
    def from_merges_file(
        cls, path: str | Path, num_merges: int | None = OPENAI_NUM_MERGES, **kwargs: object
    ) -> BPETokenizer:
        """OpenAI's layout from a merges file alone, e.g. ``bpe_simple_vocab_16e6.txt.gz``.

        Args:
            path: the merges file, gzipped or plain (see ``read_merges``).
            num_merges: how many to keep; the default is what CLIP uses, None keeps all.
            **kwargs: passed to the constructor (``context_length``, ``pad_id``).
        """
        return cls(read_merges(path, num_merges), **kwargs)

    @classmethod
    def from_hf_files(
        cls, vocab_file: str | Path, merges_file: str | Path, **kwargs: object
    ) -> BPETokenizer:
        """Read a Hugging Face ``vocab.json`` + ``merges.txt`` pair (same ids as OpenAI's file)."""
        vocab = json.loads(Path(vocab_file).read_text(encoding="utf-8"))
        return cls(read_merges(merges_file), vocab=vocab, **kwargs)

    @classmethod
    def from_pretrained(
        cls,
        repo_id: str = "openai/clip-vit-base-patch32",
        cache_dir: str | None = None,
        **kwargs: object,
    ) -> BPETokenizer:
        """Read ``vocab.json`` and ``merges.txt`` from a local folder or a hub repo.

        Args:
            repo_id: a folder holding both files, or a hub id (downloaded once, then cached).
            cache_dir: the Hugging Face cache to use instead of the default.
            **kwargs: passed to the constructor (``context_length``, ``pad_id``).
        """
        names = ("vocab.json", "merges.txt")
        if Path(repo_id).is_dir():
            return cls.from_hf_files(*(Path(repo_id) / name for name in names), **kwargs)
        from huggingface_hub import hf_hub_download

        files = [hf_hub_download(repo_id, name, cache_dir=cache_dir) for name in names]
        return cls.from_hf_files(*files, **kwargs)

    def save(self, directory: str | Path) -> tuple[Path, Path]:
        """Write ``vocab.json`` and ``merges.txt`` (what ``transformers.CLIPTokenizer`` reads)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        vocab_file, merges_file = directory / "vocab.json", directory / "merges.txt"
        vocab_file.write_text(json.dumps(self.encoder, ensure_ascii=False), encoding="utf-8")
        lines = ["#version: 0.2", *(" ".join(m) for m in self.bpe_ranks)]
        merges_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return vocab_file, merges_file
