"""A zero-shot baseline: OpenAI's pretrained CLIP evaluated on the same split as your model.

``PretrainedCLIPBaseline`` wraps a ``clip_arch.CLIP`` and its BPE tokenizer so that it looks to
``simpleclip.evaluate`` and ``CaptionDataset`` like one of our own models: ``encode_image``,
``encode_text(input_ids, attention_mask)`` (unit vectors), a Hugging Face style ``tokenizer``
and the ``preprocessing`` CLIP was trained with. Nothing is trained: the row it adds to the
Recall@K table (``simpleclip eval --baseline openai/clip-vit-base-patch32``) shows how far a model
trained on 400 M web pairs gets on Flickr8k without ever seeing it (Radford et al., 2021,
arXiv:2103.00020, section 3.1). The model itself is built in
``notebooks/09_clip_from_scratch.ipynb``; Recall@K is taught in ``notebooks/07_evaluation.ipynb``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from simpleclip.clip_arch import CLIP, CLIP_MEAN, CLIP_STD, BPETokenizer
from simpleclip.data.transforms import ImagePreprocessing


class CaptionTokenizer:
    """``BPETokenizer`` behind the call ``CaptionDataset`` makes on a Hugging Face tokenizer.

    Args:
        bpe: CLIP's tokenizer; its ``pad_id`` pads batches (0, as in OpenAI's ``clip.tokenize``).
        context_length: the text tower's length limit (77 for every released CLIP).
    """

    def __init__(self, bpe: BPETokenizer, context_length: int = 77) -> None:
        self.bpe, self.context_length = bpe, context_length
        self.pad_token_id = bpe.pad_id

    def __call__(
        self, texts: str | Sequence[str], truncation: bool = True, max_length: int | None = None
    ) -> dict[str, list[list[int]]]:
        """``{"input_ids": [[sot, ..., eot], ...]}``, unpadded, like ``tokenizer(texts)``.

        Args:
            texts: one caption or a list of them.
            truncation: cut long captions to ``max_length``, keeping the end token last;
                False raises on a caption that does not fit.
            max_length: the limit; None (or more than the model reads) means ``context_length``.
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        limit = min(max_length or self.context_length, self.context_length)
        rows = []
        for text in texts:
            ids = [self.bpe.sot_id, *self.bpe.encode(text), self.bpe.eot_id]
            if len(ids) > limit:
                if not truncation:
                    raise ValueError(f"{text!r} is {len(ids)} tokens, over {limit}")
                ids = [*ids[: limit - 1], self.bpe.eot_id]
            rows.append(ids)
        return {"input_ids": rows}


class PretrainedCLIPBaseline(nn.Module):
    """A pretrained ``clip_arch.CLIP`` with the interface ``simpleclip.evaluate`` expects.

    Args:
        clip: the pretrained model (e.g. from ``clip_arch.load_pretrained``).
        tokenizer: its BPE tokenizer.
        name: what the model is called in tables (a hub id or a folder).

    Attributes:
        tokenizer: a ``CaptionTokenizer`` for ``CaptionDataset``.
        preprocessing: CLIP's own: short side to the input size (bicubic), centre crop, CLIP's
            mean and std.
        max_length: the number of tokens the text tower reads.
    """

    def __init__(self, clip: CLIP, tokenizer: BPETokenizer, name: str = "pretrained CLIP") -> None:
        super().__init__()
        self.clip, self.name = clip.eval(), name
        self.max_length = clip.config.text.context_length
        self.tokenizer = CaptionTokenizer(tokenizer, self.max_length)
        self.preprocessing = ImagePreprocessing(
            input_size=clip.config.vision.image_size,
            mean=CLIP_MEAN,
            std=CLIP_STD,
            interpolation="bicubic",
            crop_pct=1.0,  # no margin: resize the short side to the input size, then crop
        )

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Shapes: (B, 3, S, S) -> (B, E), unit length."""
        return self.clip.encode_image(images)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Shapes: (B, L), (B, L) -> (B, E), unit length.

        CLIP reads each caption at its end token (``clip_arch.eot_positions``), which the causal
        mask keeps from seeing the padding after it, so ``attention_mask`` is not needed. Right
        padding with 0 (ours) or with the end token (``transformers``) finds the same position.
        """
        return self.clip.encode_text(input_ids)


def load_baseline(name: str | Path = "openai/clip-vit-base-patch32") -> PretrainedCLIPBaseline:
    """Load a pretrained CLIP from the hub (once; then the cache) or a local folder.

    Args:
        name: a hub id such as ``openai/clip-vit-base-patch32``, or a folder holding a
            ``transformers.CLIPModel`` (``config.json``, weights) plus ``vocab.json`` and
            ``merges.txt``.

    Raises:
        FileNotFoundError: the model is neither a folder nor cached and the hub cannot be reached.

    Example:
        >>> baseline = load_baseline("openai/clip-vit-base-patch32")  # online, ~600 MB once
        >>> metrics = evaluate(baseline, dataset)  # a CaptionDataset built with its tokenizer
    """
    from simpleclip.clip_arch.convert import load_pretrained
    from simpleclip.clip_arch.validate import hub_available

    name = str(name)
    if not hub_available(name, cache_dir=None):
        raise FileNotFoundError(
            f"{name!r} is not a folder, not in the Hugging Face cache, and the hub cannot be "
            "reached (offline, or HF_HUB_OFFLINE=1): run once with internet access to download it."
        )
    try:
        clip, tokenizer = load_pretrained(name)
    except OSError as err:  # e.g. a folder without weights, or an unknown hub id
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise FileNotFoundError(f"could not load a CLIP from {name!r}: {reason}") from err
    return PretrainedCLIPBaseline(clip, tokenizer, name)
