"""Text encoders: a Hugging Face transformer that turns a batch of captions into feature vectors.

CLIP's text tower is a Transformer whose output at one position summarises the caption
(Radford et al. 2021, section 2.4). Here it is any ``transformers`` encoder (DistilBERT as in
the classic tutorial, MPNet from sentence-transformers) followed by a pooling: the first
([CLS]) token, or the mean over real tokens with padding masked out. The ``tiny`` preset is a
2-layer DistilBERT with random weights and the vocabulary of a WordPiece tokenizer trained in
code (``simpleclip.tokenizer``), for tests and CPU runs with no download.
Taught in ``notebooks/03_text_encoders.ipynb``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    DistilBertConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from simpleclip.data import tokenize_captions
from simpleclip.encoders.errors import EncoderLoadError
from simpleclip.encoders.local_weights import hf_folder
from simpleclip.encoders.partial import unfreeze_last_layers
from simpleclip.encoders.pooling import TEXT_POOLINGS
from simpleclip.progress import quiet_library_bars

CONTEXT_LENGTH = 77  # CLIP's text context; Flickr8k captions are far shorter


@dataclass(frozen=True)
class TextPreset:
    """A named text encoder: which Hugging Face model, and how to pool its tokens."""

    hf_name: str | None  # hub id; None for a model configured in code (random weights)
    pooling: str  # "cls" (first token) or "mean" (masked mean over tokens)
    note: str  # one line shown when listing presets


TEXT_PRESETS: dict[str, TextPreset] = {
    "tiny": TextPreset(None, "mean", "random 2-layer DistilBERT, dim 128; needs tokenizer="),
    "distilbert-base-uncased": TextPreset(
        "distilbert-base-uncased", "cls", "the classic tutorial's encoder, 768-d"
    ),
    "sentence-transformers/all-mpnet-base-v2": TextPreset(
        "sentence-transformers/all-mpnet-base-v2", "mean", "a sentence-embedding MPNet, 768-d"
    ),
}


def tiny_text_config(tokenizer: PreTrainedTokenizerBase, max_length: int) -> DistilBertConfig:
    """The ``tiny`` preset's architecture, sized to the tokenizer's vocabulary.

    Args:
        tokenizer: the tokenizer whose ids the model will embed.
        max_length: the longest sequence the model must accept.

    Returns:
        A DistilBERT config: 2 layers, width 128, 4 heads.
    """
    return DistilBertConfig(
        vocab_size=len(tokenizer),
        dim=128,
        n_layers=2,
        n_heads=4,
        hidden_dim=512,  # feed-forward width, 4 x dim as in BERT
        max_position_embeddings=max_length,
        pad_token_id=tokenizer.pad_token_id,
    )


def _load_failed_message(model_name: str) -> str:
    return (
        f"Could not load text encoder {model_name!r} from the Hugging Face hub or its cache. "
        "Check the name (https://huggingface.co/models) or the local folder path; if it is "
        "right, connect to the internet once so the model downloads into the Hugging Face "
        "cache (afterwards it loads offline with HF_HUB_OFFLINE=1). To run with no download, "
        "use the 'tiny' preset with a tokenizer from "
        "simpleclip.tokenizer.train_wordpiece_tokenizer."
    )


def load_text_model(
    model_name: str, pretrained: bool = True, hf_config: PretrainedConfig | None = None
) -> PreTrainedModel:
    """Build a ``transformers`` encoder: from ``hf_config`` (no download), or by name.

    Args:
        model_name: a hub id or a local folder holding a config and weights.
        pretrained: load the weights; False builds the same architecture with random weights
            (only the config is downloaded).
        hf_config: build exactly this architecture, with random weights and no download.

    Raises:
        EncoderLoadError: the model is neither cached nor downloadable.
    """
    if hf_config is not None:
        return AutoModel.from_config(hf_config)
    source = hf_folder(model_name) or model_name  # a local folder is checked before loading
    try:
        if not pretrained:
            return AutoModel.from_config(
                AutoConfig.from_pretrained(source, trust_remote_code=False)
            )
        with quiet_library_bars():  # no "Loading weights" bar for each tower
            model, info = AutoModel.from_pretrained(
                source, output_loading_info=True, trust_remote_code=False
            )
    except (OSError, ValueError) as err:
        raise EncoderLoadError(_load_failed_message(model_name)) from err
    # transformers only warns when weights do not fit and leaves those parts random: refuse.
    missing = [k for k in info["missing_keys"] if not k.startswith("pooler.")]  # pooler unused
    if missing or info["mismatched_keys"]:
        raise EncoderLoadError(
            f"The weights of text encoder {model_name!r} do not fit its config "
            f"({type(model).__name__}): {len(missing)} missing, e.g. {sorted(missing)[:3]}; "
            f"{len(info['mismatched_keys'])} of another shape, e.g. "
            f"{sorted(map(str, info['mismatched_keys']))[:2]}. Save the folder again with "
            "model.save_pretrained(), from the same architecture as its config.json."
        )
    return model


def load_tokenizer(model_name: str) -> PreTrainedTokenizerBase:
    """The tokenizer that belongs to a hub model or a local folder.

    Raises:
        EncoderLoadError: the tokenizer is neither cached nor downloadable.
    """
    try:
        return AutoTokenizer.from_pretrained(
            hf_folder(model_name) or model_name, trust_remote_code=False
        )
    except (OSError, ValueError) as err:
        raise EncoderLoadError(_load_failed_message(model_name)) from err


class TextEncoder(nn.Module):
    """A transformer plus a pooling: token ids in, one feature vector per caption out.

    Args:
        model_name: a key of ``TEXT_PRESETS``, another hub id, or a local Hugging Face folder
            (config, weights and tokenizer).
        pretrained: load pretrained weights (ignored by ``tiny`` and when ``hf_config`` is set).
        trainable: False freezes the model: no gradients, dropout off even in ``.train()``.
        unfreeze_last: with ``trainable=False``, still train the last N transformer layers
            (partial fine-tuning, ``simpleclip.encoders.partial``); dropout stays off.
        pooling: ``"cls"`` or ``"mean"``; None uses the preset's (``"mean"`` for other names).
        tokenizer: the tokenizer to use; required for ``tiny``, loaded by name otherwise.
        max_length: longest tokenized caption; default 77 (CLIP) or the tokenizer's limit.
        hf_config: rebuild this exact architecture offline (e.g. from a checkpoint), then
            load a state dict into it.

    Shapes:
        input_ids (B, L), attention_mask (B, L) -> (B, out_dim)

    Example:
        >>> encoder = TextEncoder("tiny", tokenizer=tokenizer)
        >>> batch = encoder.tokenize(["a red circle", "two blue squares"])
        >>> encoder(batch["input_ids"], batch["attention_mask"]).shape
        torch.Size([2, 128])
    """

    def __init__(
        self,
        model_name: str = "distilbert-base-uncased",
        pretrained: bool = True,
        trainable: bool = True,
        pooling: str | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
        max_length: int | None = None,
        hf_config: PretrainedConfig | None = None,
        unfreeze_last: int = 0,
    ) -> None:
        super().__init__()
        preset = TEXT_PRESETS.get(model_name)
        self.pooling = pooling or (preset.pooling if preset else "mean")
        if self.pooling not in TEXT_POOLINGS:
            raise ValueError(f"pooling must be one of {list(TEXT_POOLINGS)}, got {self.pooling!r}")
        is_tiny = preset is not None and preset.hf_name is None
        if tokenizer is None and is_tiny:
            raise ValueError(
                f"the {model_name!r} text encoder has no tokenizer of its own: pass "
                "tokenizer=train_wordpiece_tokenizer(captions) from simpleclip.tokenizer."
            )
        self.model_name = model_name
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(model_name)
        self.max_length: int = max_length or min(self.tokenizer.model_max_length, CONTEXT_LENGTH)
        if is_tiny and hf_config is None:
            hf_config = tiny_text_config(self.tokenizer, self.max_length)
        self.model = load_text_model(model_name, pretrained, hf_config)
        self.out_dim: int = self.model.config.hidden_size
        self.trainable = trainable
        if unfreeze_last and trainable:
            raise ValueError(
                "unfreeze_last applies to a frozen encoder (trainable=False); a "
                "trainable one already trains every layer."
            )
        if not trainable:
            self.model.requires_grad_(False)
            self.model.eval()
        if unfreeze_last:
            unfreeze_last_layers(self.model, unfreeze_last)

    def train(self, mode: bool = True) -> TextEncoder:
        """Switch train/eval mode, but a frozen model always stays in eval mode."""
        super().train(mode)
        if not self.trainable:
            self.model.eval()
        return self

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Captions -> padded ``input_ids`` and ``attention_mask`` tensors, cut at max_length.

        ``data.tokenize_captions`` pads them as ``CaptionDataset`` pads its training batches: the
        same ids and mask for a caption in training and at inference, whichever side it pads.

        Shapes:
            N texts -> input_ids (N, L), attention_mask (N, L), L = longest caption's length
        """
        return tokenize_captions(self.tokenizer, texts, self.max_length)

    @property
    def hf_config(self) -> PretrainedConfig:
        """The transformer's architecture, which ``CLIPModel.save`` writes to rebuild it offline."""
        return self.model.config

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return TEXT_POOLINGS[self.pooling](hidden, attention_mask)  # (B, L, D) -> (B, D)
