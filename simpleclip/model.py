"""The CLIP model: two encoders, two projection heads and a learned temperature.

``encode_image`` and ``encode_text`` map pictures and captions into one shared space of unit
vectors; ``forward`` returns the similarity logits the contrastive loss reads. ``save`` writes
everything needed to rebuild the model offline (weights as safetensors, the full config, the
tokenizer and the text model's architecture); ``CLIPModel.load`` reads it back. A pretrained CLIP
in transformers' layout (a folder, or a hub id such as ``openai/clip-vit-base-patch32``) loads as
the same type, with the course's own CLIP as its towers (``load_transformers_clip``).
Taught in ``notebooks/06_training.ipynb``; CLIP paper, Section 2.3 and Figure 3.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from transformers import AutoConfig, AutoTokenizer

from simpleclip.checkpoint import (
    CONFIG,
    TEXT_ARCH,
    TOKENIZER,
    WEIGHTS,
    atomic_directory,
    is_transformers_folder,
    readable_directory,
    resolve_checkpoint,
)
from simpleclip.clip_arch import (
    BPETokenizer,
    build_clip_towers,
    clip_model_state,
    clip_run_config,
    read_transformers_clip,
)
from simpleclip.config import CLIP_TOWERS, Config, load_config, save_config
from simpleclip.data.transforms import ImagePreprocessing
from simpleclip.encoders import EncoderLoadError, ImageEncoder, TextEncoder
from simpleclip.heads import build_heads
from simpleclip.loss import (
    contrastive_logits,
    init_logit_bias,
    init_logit_scale,
    logit_scale_to_scale,
)
from simpleclip.safe_files import load_safetensors, refuse_code
from simpleclip.tower_refs import (
    TOWERS,
    TowerSourceChanged,
    check_tower,
    read_refs,
    referenced_keys,
    split_state,
    write_refs,
)


class CLIPModel(nn.Module):
    """Image encoder + text encoder, each followed by a head, meeting in one space.

    Args:
        image_encoder: pictures -> (B, D_img) features.
        text_encoder: token ids -> (B, D_txt) features; owns the tokenizer.
        image_head: (B, D_img) -> (B, E).
        text_head: (B, D_txt) -> (B, E).
        logit_scale: log(1 / temperature), a 0-d parameter (see ``simpleclip.loss``).
        config: the run config that built the model, saved with it.
        logit_bias: SigLIP's learned bias, a 0-d parameter (``loss.kind=siglip``); None for
            CLIP, whose checkpoints then hold no such tensor.
    """

    def __init__(
        self,
        image_encoder: ImageEncoder,
        text_encoder: TextEncoder,
        image_head: nn.Module,
        text_head: nn.Module,
        logit_scale: nn.Parameter,
        config: Config | None = None,
        logit_bias: nn.Parameter | None = None,
    ) -> None:
        super().__init__()
        self.image_encoder, self.text_encoder = image_encoder, text_encoder
        self.image_head, self.text_head = image_head, text_head
        self.logit_scale = logit_scale
        self.logit_bias = logit_bias  # a registered parameter, or a plain None
        self.config = config or Config()

    @property
    def tokenizer(self) -> Any:
        return self.text_encoder.tokenizer

    @property
    def scale(self) -> torch.Tensor:
        """1 / temperature as the loss uses it: ``exp(logit_scale)``, capped at 100. A 0-d tensor.

        Anything that turns cosine similarities into probabilities (zero-shot classification,
        the softmax panel of the similarity matrix) multiplies by this, never by its own copy.
        """
        return logit_scale_to_scale(self.logit_scale)

    @property
    def preprocessing(self) -> ImagePreprocessing:
        """The image tower's preprocessing: evaluation builds its transform from it."""
        return self.image_encoder.preprocessing

    @property
    def max_length(self) -> int:
        """Captions are cut to this many tokens (``data.max_length``), as ``tokenize`` does."""
        return self.text_encoder.max_length

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Shapes: (B, 3, S, S) -> (B, E), unit length when ``normalize``."""
        return self.project_image(self.image_encoder(images), normalize)

    def encode_text(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, normalize: bool = True
    ) -> torch.Tensor:
        """Shapes: (B, L), (B, L) -> (B, E), unit length when ``normalize``."""
        return self.project_text(self.text_encoder(input_ids, attention_mask), normalize)

    def project_image(self, image_features: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Encoder features -> shared space: (B, D_img) -> (B, E). Used with cached features."""
        embeds = self.image_head(image_features)
        return F.normalize(embeds, dim=-1) if normalize else embeds

    def project_text(self, text_features: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Encoder features -> shared space: (B, D_txt) -> (B, E). Used with cached features."""
        embeds = self.text_head(text_features)
        return F.normalize(embeds, dim=-1) if normalize else embeds

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Captions -> ``input_ids`` and ``attention_mask`` exactly as in training."""
        batch = self.text_encoder.tokenize(texts)
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

    def forward(
        self, images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits_per_image, logits_per_text)``, each (B, B): scaled cosine similarities."""
        image_embeds = self.encode_image(images)
        text_embeds = self.encode_text(input_ids, attention_mask)
        return contrastive_logits(image_embeds, text_embeds, self.logit_scale)

    def save(self, directory: str | Path, reference_frozen: bool = False) -> Path:
        """Write weights, config and tokenizer to ``directory``, atomically.

        A crash half-way leaves the previous checkpoint (if any) intact, never a broken one.

        Args:
            directory: the checkpoint folder.
            reference_frozen: write the frozen part of a pretrained tower as a reference to
                its source weights and their fingerprint instead of a copy, and only the
                tensors training changes (``simpleclip.tower_refs``): what training does, so a
                heads-only run writes kilobytes, not 100 MB, and a fine-tune of MiniLM's last
                layer a few MB.
        """
        with atomic_directory(directory) as tmp:
            self.write_files(tmp, reference_frozen)
        return Path(directory)

    def write_files(self, directory: Path, reference_frozen: bool = False) -> None:
        """Write the checkpoint files into an existing folder (``save`` makes it atomic)."""
        state, refs = split_state(self, reference_frozen)
        save_file(state, directory / WEIGHTS)
        write_refs(directory, refs)
        save_config(self.config, directory / CONFIG)
        self.tokenizer.save_pretrained(directory / TOKENIZER)
        self.text_encoder.hf_config.save_pretrained(directory / TEXT_ARCH)

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu") -> CLIPModel:
        """Rebuild a saved model offline: no download, same tokenization as in training.

        A folder in transformers' layout is read as a pretrained CLIP (``load_transformers_clip``).

        Raises:
            UnsafeCheckpointError: the folder holds code or a pickle, or a file is corrupt
                (``simpleclip.safe_files``); nothing from it was run.
        """
        if is_transformers_folder(directory):
            return load_transformers_clip(directory).to(device).eval()
        directory = readable_directory(directory, required=WEIGHTS)
        for part in (TOKENIZER, TEXT_ARCH):  # what transformers reads: no auto_map, code, pickle
            refuse_code(directory / part)
        if not (
            directory / CONFIG
        ).is_file():  # else the config lookup's message, which fits --config
            raise FileNotFoundError(
                f"{directory} has {WEIGHTS} but no {CONFIG}: not a complete checkpoint. Copy the "
                "whole folder that training or CLIPModel.save wrote, or train again."
            )
        config = load_config(directory / CONFIG)
        tokenizer = _saved_tokenizer(config, directory / TOKENIZER)
        hf_config = AutoConfig.from_pretrained(directory / TEXT_ARCH, trust_remote_code=False)
        model = build_model(config, tokenizer=tokenizer, hf_config=hf_config, pretrained=False)
        refs = read_refs(directory)
        for section, ref in refs.items():  # referenced towers rebuilt from their source, checked
            tower = _rebuild_tower(directory, section, ref, config, tokenizer)
            setattr(model, TOWERS[section], tower)
        weights = load_safetensors(directory / WEIGHTS)  # a partly trained tower's part too
        missing, unexpected = model.load_state_dict(weights, strict=False)
        referenced = referenced_keys(refs, missing)
        missing = [key for key in missing if key not in referenced]
        if missing or unexpected:
            raise ValueError(
                f"{directory / WEIGHTS} does not fit the model in {directory / CONFIG}: "
                f"missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        return model.to(device).eval()

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | Path, device: str | torch.device = "cpu", **kwargs: Any
    ) -> CLIPModel:
        """``load`` a local folder, or a Hub repo id such as ``"user/name"`` (downloaded once).

        The repo may be one of ours or a transformers CLIP (``"openai/clip-vit-base-patch32"``).

        ``kwargs``: ``revision``, ``token``, ``cache_dir``, ``endpoint`` (see
        ``simpleclip.checkpoint.resolve_checkpoint``). Sharing is ``simpleclip.hub``'s job.
        """
        return cls.load(resolve_checkpoint(name_or_path, **kwargs), device)


def load_transformers_clip(folder: str | Path) -> CLIPModel:
    """A pretrained CLIP in transformers' layout as a ``CLIPModel`` (``clip_arch.towers``).

    Its towers are the course's own CLIP, its heads CLIP's projections, its ``logit_scale``
    CLIP's; its unit embeddings equal ``transformers.CLIPModel``'s ``get_image_features`` and
    ``get_text_features``, normalised. ``save`` writes it as any checkpoint.
    """
    hf_config, clip, bpe = read_transformers_clip(folder)
    model = build_model(clip_run_config(clip.config), tokenizer=bpe, hf_config=hf_config)
    model.load_state_dict(clip_model_state(clip.state_dict()))
    return model


def _saved_tokenizer(config: Config, folder: Path) -> Any:
    """The tokenizer a checkpoint holds: CLIP's BPE files for the ``"clip"`` towers, else a
    Hugging Face tokenizer folder."""
    if config.text.name == CLIP_TOWERS:
        return BPETokenizer.from_pretrained(str(folder))
    return AutoTokenizer.from_pretrained(folder, trust_remote_code=False)


def _rebuild_tower(
    directory: Path, section: str, ref: dict, config: Config, tokenizer: Any
) -> nn.Module:
    """A tower a checkpoint references, built from its source and fingerprint-checked (its
    trained tensors, if any, are loaded from ``model.safetensors`` afterwards)."""
    try:
        if section == "image":
            tower: nn.Module = build_image_encoder(config, pretrained=True)
        else:
            tower = build_text_encoder(config, tokenizer, pretrained=True)
    except (EncoderLoadError, OSError) as err:
        raise TowerSourceChanged(
            f"{directory} refers to its frozen {section} tower by its source, {ref['source']}, "
            f"which cannot be loaded ({err}). Restore it, or train again."
        ) from err
    check_tower(directory, section, ref, tower)
    return tower


def build_model(
    config: Config,
    tokenizer: Any = None,
    hf_config: Any = None,
    pretrained: bool | None = None,
) -> CLIPModel:
    """Build the CLIP model a config describes.

    Args:
        config: the run config (``image``, ``text``, ``head``, ``loss`` sections are used).
        tokenizer: required for the ``tiny`` text encoder; otherwise loaded by name.
        hf_config: the text model's architecture, to rebuild offline (used by ``load``).
        pretrained: override both encoders' ``pretrained`` flags (``load`` passes False).

    The ``"clip"`` towers of a pretrained CLIP are sized by ``hf_config`` (its
    ``transformers.CLIPConfig``) and need its BPE tokenizer (``clip_arch.build_clip_towers``).

    Example:
        >>> from simpleclip.config import load_config
        >>> config = load_config("synthetic_tiny")  # doctest: +SKIP
        >>> model = build_model(config, tokenizer=tokenizer)  # doctest: +SKIP
    """
    if CLIP_TOWERS in (config.image.name, config.text.name):  # a pretrained CLIP's own towers
        image_encoder, text_encoder = build_clip_towers(config, tokenizer, hf_config)
    else:
        image_encoder = build_image_encoder(config, pretrained)
        text_encoder = build_text_encoder(config, tokenizer, hf_config, pretrained)
    image_head, text_head = build_heads(
        config.head.kind,
        image_encoder.out_dim,
        text_encoder.out_dim,
        config.head.embed_dim,
        config.head.dropout,
    )
    logit_scale = init_logit_scale(config.loss.init_temperature)
    logit_scale.requires_grad_(config.loss.learn_temperature)
    logit_bias = init_logit_bias(config.loss.init_bias) if config.loss.kind == "siglip" else None
    towers = (image_encoder, text_encoder, image_head, text_head)
    return CLIPModel(*towers, logit_scale, config, logit_bias=logit_bias)


def build_image_encoder(config: Config, pretrained: bool | None = None) -> ImageEncoder:
    """The image tower a config describes (``image`` section); notebooks 02 and 04 use it alone.

    Args:
        config: the run config.
        pretrained: override ``image.pretrained`` (``CLIPModel.load`` passes False).
    """
    return ImageEncoder(
        config.image.name,
        pretrained=config.image.pretrained if pretrained is None else pretrained,
        trainable=config.image.trainable,
        pooling=config.image.pooling,
        weights=config.image.weights,
        unfreeze_last=config.image.unfreeze_last,
        mean=config.image.mean,
        std=config.image.std,
    )


def build_text_encoder(
    config: Config, tokenizer: Any = None, hf_config: Any = None, pretrained: bool | None = None
) -> TextEncoder:
    """The text tower a config describes (``text`` section); notebooks 03 and 04 use it alone.

    Args:
        config: the run config.
        tokenizer: required for the ``tiny`` text encoder; otherwise loaded by name.
        hf_config: the text model's architecture, to rebuild offline.
        pretrained: override ``text.pretrained``.
    """
    return TextEncoder(
        config.text.name,
        pretrained=config.text.pretrained if pretrained is None else pretrained,
        trainable=config.text.trainable,
        pooling=config.text.pooling,
        tokenizer=tokenizer,
        max_length=config.data.max_length,
        hf_config=hf_config,
        unfreeze_last=config.text.unfreeze_last,
    )
