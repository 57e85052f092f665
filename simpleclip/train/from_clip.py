"""Training that starts from a pretrained CLIP: fine-tuning it whole, or locked-image tuning.

A run whose towers are ``"clip"`` (``config.CLIP_TOWERS``: ``clip_finetune``, ``clip_lit``)
starts from the CLIP ``train.init_from`` names: a hub id (``openai/clip-vit-base-patch32``), a
folder in transformers' layout, or a run trained here from one. The model is built from the
run config, as every model is, so its trainable flags, learning rates and loss are the run's;
then the CLIP's weights are poured in, its learned temperature included (CLIP ends pre-training
at 1/100: starting a fine-tune at 0.07 would throw away what the temperature learned). What
the CLIP fixes is taken from it, not from the config: its projections are the model's
``linear`` heads, so ``head.kind`` and ``head.embed_dim`` are the CLIP's; captions are cut to
at most its context. The run config saved with the run says so.
Taught in ``notebooks/09_clip_from_scratch.ipynb``.
"""

from __future__ import annotations

from simpleclip import collectives
from simpleclip.clip_arch import clip_run_config, config_from_hf
from simpleclip.config import CLIP_TOWERS, Config, ConfigError
from simpleclip.model import CLIPModel, build_model
from simpleclip.paths import shown_path

FIXED_BY_CLIP = ("head.kind", "head.embed_dim", "data.max_length")  # what a message may name


def uses_clip_towers(config: Config) -> bool:
    """True for a run on a pretrained CLIP's own towers (either tower named ``"clip"``)."""
    return CLIP_TOWERS in (config.image.name, config.text.name)


def fit_to_clip(config: Config, model: CLIPModel) -> Config:
    """``config`` with what the pretrained CLIP in ``model`` fixes (``clip_run_config``);
    ``config`` itself for any other towers. Applying it twice changes nothing."""
    if not uses_clip_towers(config) or model.config.image.name != CLIP_TOWERS:
        return config
    return clip_run_config(config_from_hf(model.text_encoder.hf_config), base=config)


def start_from_clip(config: Config) -> CLIPModel:
    """The model of a ``"clip"`` run: built from ``config`` (fitted to the CLIP) with the
    weights and temperature of the CLIP ``train.init_from`` names.

    Raises:
        ConfigError: no ``train.init_from``.
        FileNotFoundError, ValueError: the name is not a CLIP (``CLIPModel.from_pretrained``'s
            message: what is missing, or that a hub id needs the internet).
    """
    if not config.train.init_from:
        raise ConfigError(
            f"image.name={CLIP_TOWERS} trains a pretrained CLIP, named by train.init_from: a hub "
            "id (--set train.init_from=openai/clip-vit-base-patch32), a folder in transformers' "
            "layout, or a run trained from one. The clip_finetune config names OpenAI's ViT-B/32."
        )
    source = CLIPModel.from_pretrained(config.train.init_from)
    fitted = fit_to_clip(config, source)
    _say_what_changed(config, fitted)
    text = source.text_encoder
    model = build_model(fitted, tokenizer=text.tokenizer.bpe, hf_config=text.hf_config)
    state = source.state_dict()
    if model.logit_bias is None:  # a SigLIP-trained source fine-tuned with CLIP's loss
        state.pop("logit_bias", None)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or set(missing) - {"logit_bias"}:  # SigLIP's bias starts at loss.init_bias
        raise ValueError(
            f"train.init_from={config.train.init_from} does not fit the model its config "
            f"describes: missing {missing[:5]}, unexpected {unexpected[:5]}."
        )
    return model


def _say_what_changed(config: Config, fitted: Config) -> None:
    """One line naming the settings the CLIP replaced, so a config that said otherwise is not
    silently overruled (rank 0 only)."""
    changed = []
    for key in FIXED_BY_CLIP:
        section, name = key.split(".")
        before = getattr(getattr(config, section), name)
        after = getattr(getattr(fitted, section), name)
        if before != after:
            changed.append(f"{key}={after} (config: {before})")
    if changed and collectives.is_main():
        print(
            f"From {shown_path(config.train.init_from)}: {', '.join(changed)}, as the CLIP's "
            "projections and text length fix them."
        )
