"""OpenAI's CLIP as the two towers of ``simpleclip.model.CLIPModel``: one model type for all.

A pretrained CLIP (``openai/clip-vit-base-patch32``, a LAION CLIP in transformers' layout, or a
folder holding one) becomes a ``CLIPModel`` like any run trained here: its towers are the
course's own ViT and causal text transformer (this package) without their projections, CLIP's
two projections are the model's ``linear`` heads, and its ``logit_scale`` is the model's. So
search, evaluation and saving take it as they take any checkpoint. The towers fit what
``CLIPModel`` expects of its encoders (``simpleclip.encoders``): ``preprocessing`` (CLIP's:
bicubic, short side to 224, centre crop, CLIP's mean and std), ``out_dim``, ``max_length``,
a ``tokenizer`` that ``CaptionDataset`` can call, and ``tokenize``.

The run config calls both towers ``"clip"`` (``config.CLIP_TOWERS``, in ``image.name`` and
``text.name``). Like ``"tiny"`` it is a name built in code rather than loaded by name, so it
needs no new config field and no new choice to check, and every older config reads as before.
The sizes are a ``transformers.CLIPConfig``, which ``CLIPModel.save`` writes where every
checkpoint keeps its text model's architecture (``text_model/config.json``).
Taught in ``notebooks/09_clip_from_scratch.ipynb``.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from simpleclip.clip_arch.config import CLIPArchConfig, TextConfig, VisionConfig
from simpleclip.clip_arch.convert import config_from_hf
from simpleclip.clip_arch.preprocess import clip_preprocessing
from simpleclip.clip_arch.text import TextTransformer
from simpleclip.clip_arch.tokenizer import BPETokenizer
from simpleclip.clip_arch.vision import VisionTransformer
from simpleclip.config import CLIP_TOWERS, Config, apply_overrides
from simpleclip.data import tokenize_captions

# clip_arch.CLIP's names -> CLIPModel's. The projections, stored for x @ W, become the heads'
# nn.Linear weights (W transposed); each tower keeps its names under the encoder's attribute.
PROJECTIONS = {"visual.proj": "image_head.weight", "text.text_projection": "text_head.weight"}
TOWER_PREFIXES = {"visual.": "image_encoder.", "text.": "text_encoder."}


class CaptionTokenizer:
    """``BPETokenizer`` behind the call ``CaptionDataset`` makes on a Hugging Face tokenizer.

    Args:
        bpe: CLIP's tokenizer; its ``pad_id`` pads batches (0, as in OpenAI's ``clip.tokenize``).
        context_length: the text tower's length limit (77 for every released CLIP).
    """

    padding_side = "right"  # the end token is found before the padding (``eot_positions``)

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

    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``vocab.json`` and ``merges.txt``, as ``CLIPModel.save`` asks of a tokenizer,
        and beside them transformers' ``tokenizer.json`` and ``tokenizer_config.json``.

        Why the second pair: whoever reads the folder elsewhere (an ONNX export's consumer,
        ``AutoTokenizer.from_pretrained``, the ``tokenizers`` library in another language) finds
        the same tokenizer every other checkpoint ships; our own loading reads only the first
        pair. transformers' fast CLIP tokenizer gives ``BPETokenizer``'s ids except on HTML
        escapes such as ``&amp;``, which only OpenAI's cleaning undoes (``clean_text``).
        """
        from transformers import CLIPTokenizerFast  # the same class in transformers 4 and 5

        with tempfile.TemporaryDirectory() as files:  # only our two files: nothing older read
            self.bpe.save(files)
            hf = CLIPTokenizerFast.from_pretrained(files, model_max_length=self.context_length)
        hf.save_pretrained(directory)
        self.bpe.save(directory)  # ours last: the files our loading reads stay byte for byte ours


class CLIPImageTower(nn.Module):
    """CLIP's ViT read at the class token, without its projection (the model's image head).

    Args:
        config: the tower's sizes (a ViT: transformers' CLIP has no ResNet).
        trainable: False freezes the tower.

    Shapes:
        (B, 3, S, S) -> (B, D), S = ``config.image_size``
    """

    def __init__(self, config: VisionConfig, trainable: bool = True) -> None:
        super().__init__()
        if config.resnet_layers is not None:
            raise ValueError("the 'clip' image tower is a ViT; load a ResNet CLIP with clip_arch")
        self.visual = VisionTransformer(config, embed_dim=None)
        self.preprocessing = clip_preprocessing(config.image_size)
        self.out_dim, self.trainable = config.width, trainable
        self.requires_grad_(trainable)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.visual(images)


class CLIPTextTower(nn.Module):
    """CLIP's causal text transformer read at the end token, without its projection.

    Args:
        config: the tower's sizes.
        bpe: its BPE tokenizer.
        hf_config: the ``transformers.CLIPConfig`` it was read from; ``CLIPModel.save`` writes
            it, ``CLIPModel.load`` rebuilds both towers from it.
        max_length: captions are cut to this many tokens (at most ``config.context_length``).
        trainable: False freezes the tower.

    Shapes:
        input_ids (B, L), attention_mask (B, L) -> (B, D)
    """

    def __init__(
        self,
        config: TextConfig,
        bpe: BPETokenizer,
        hf_config: Any,
        max_length: int,
        trainable: bool = True,
    ) -> None:
        super().__init__()
        self.text = TextTransformer(config, embed_dim=None)
        self.tokenizer = CaptionTokenizer(bpe, config.context_length)
        self.hf_config = hf_config
        self.max_length = min(max_length, config.context_length)
        self.out_dim, self.trainable = config.width, trainable
        self.requires_grad_(trainable)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Captions -> padded ``input_ids`` and ``attention_mask`` (``data.tokenize_captions``)."""
        return tokenize_captions(self.tokenizer, texts, self.max_length)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The features at each caption's end token (``clip_arch.eot_positions``).

        The causal mask keeps that token from seeing the padding after it, so
        ``attention_mask`` is not needed: right padding with 0 (ours) or with the end token
        (transformers') gives the same features.
        """
        return self.text(input_ids)


def build_clip_towers(
    config: Config, tokenizer: BPETokenizer | None, hf_config: Any
) -> tuple[CLIPImageTower, CLIPTextTower]:
    """The towers of a ``"clip"`` run config, sized by ``hf_config``, with random weights
    (``CLIPModel.load`` loads them; ``clip_model_state`` names a pretrained CLIP's).

    Raises:
        ValueError: only one tower is ``"clip"``, there is no CLIP to size them from, or
            ``unfreeze_last`` is set.
    """
    if (config.image.name, config.text.name) != (CLIP_TOWERS, CLIP_TOWERS):
        raise ValueError(
            f"image.name and text.name must both be {CLIP_TOWERS!r} (a pretrained CLIP's own "
            f"towers), got {config.image.name!r} and {config.text.name!r}."
        )
    if hf_config is None or tokenizer is None:
        raise ValueError(
            f"the {CLIP_TOWERS!r} towers are read from a pretrained CLIP, not built by name: load "
            "one with CLIPModel.from_pretrained, e.g. 'openai/clip-vit-base-patch32' or a folder "
            "in transformers' layout."
        )
    if config.image.unfreeze_last or config.text.unfreeze_last:
        raise ValueError(
            f"the {CLIP_TOWERS!r} towers train whole or not at all (image.trainable, "
            "text.trainable): unfreeze_last is for the timm and transformers towers."
        )
    arch = config_from_hf(hf_config)
    image_tower = CLIPImageTower(arch.vision, config.image.trainable)
    text_tower = CLIPTextTower(
        arch.text, tokenizer, hf_config, config.data.max_length, config.text.trainable
    )
    return image_tower, text_tower


def clip_run_config(arch: CLIPArchConfig, base: Config | None = None) -> Config:
    """The run config of a pretrained CLIP: ``"clip"`` towers, CLIP's ``linear`` projections
    into its ``embed_dim``, captions up to its context length, its initial temperature.

    Args:
        arch: the CLIP's sizes.
        base: a run config to fit (a fine-tune's: ``clip_finetune``), whose training settings
            stay; what the CLIP fixes replaces its own, and captions are cut to the shorter of
            its ``data.max_length`` and the CLIP's context. None: the defaults.
    """
    context = arch.text.context_length
    max_length = context if base is None else min(base.data.max_length, context)
    return apply_overrides(
        base or Config(),
        [
            f"image.name={CLIP_TOWERS}",
            f"text.name={CLIP_TOWERS}",
            "head.kind=linear",
            f"head.embed_dim={arch.embed_dim}",
            f"data.max_length={max_length}",
            f"loss.init_temperature={math.exp(-arch.logit_scale_init)}",
        ],
    )


def clip_model_state(clip_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A ``clip_arch.CLIP`` state dict under ``CLIPModel``'s names (see ``PROJECTIONS``)."""
    state = {}
    for name, tensor in clip_state.items():
        if name in PROJECTIONS:
            state[PROJECTIONS[name]] = tensor.T  # (D, E) used as x @ W -> nn.Linear's (E, D)
            continue
        prefix = next((p for p in TOWER_PREFIXES if name.startswith(p)), None)
        state[TOWER_PREFIXES[prefix] + name if prefix else name] = tensor  # logit_scale as is
    return state
