"""OpenAI's CLIP written out from scratch, loadable with the released weights.

The architecture of Radford et al., 2021 (arXiv:2103.00020, section 2.4): a causal text
transformer read at its end token (``text``), a ViT (``vision``) or modified ResNet
(``resnet``) image tower, a learned temperature (``model``), CLIP's byte-level BPE tokenizer
(``tokenizer``), weight loading from ``transformers`` or OpenAI checkpoints (``convert``), a
check against ``transformers`` on the real model (``validate``), and the two towers a
pretrained CLIP brings to ``simpleclip.model.CLIPModel`` (``towers``). Taught in
``notebooks/09_clip_from_scratch.ipynb``.

Example:
    >>> from simpleclip import clip_arch
    >>> model, tokenizer = clip_arch.load_pretrained("openai/clip-vit-base-patch32")  # online
    >>> pixels = clip_arch.image_transform(224)(image).unsqueeze(0)  # (1, 3, 224, 224)
    >>> probs = model(pixels, tokenizer(["a photo of a cat", "a photo of a dog"]))[0].softmax(-1)
"""

from simpleclip.clip_arch.config import (
    PRESETS,
    CLIPArchConfig,
    TextConfig,
    VisionConfig,
    get_config,
)
from simpleclip.clip_arch.convert import (
    StateDictMismatch,
    config_from_hf,
    convert_hf_state_dict,
    from_hf,
    from_hf_state_dict,
    from_openai_state_dict,
    load_checked,
    load_pretrained,
    read_transformers_clip,
    read_transformers_weights,
)
from simpleclip.clip_arch.model import CLIP, build_clip
from simpleclip.clip_arch.preprocess import CLIP_MEAN, CLIP_STD, image_transform, load_image
from simpleclip.clip_arch.resnet import Bottleneck, ModifiedResNet
from simpleclip.clip_arch.text import TextTransformer, eot_positions
from simpleclip.clip_arch.tokenizer import BPETokenizer, learn_merges
from simpleclip.clip_arch.towers import (
    CaptionTokenizer,
    CLIPImageTower,
    CLIPTextTower,
    build_clip_towers,
    clip_model_state,
    clip_run_config,
)
from simpleclip.clip_arch.transformer import (
    QuickGELU,
    ResidualAttentionBlock,
    SelfAttention,
    Transformer,
    causal_mask,
)
from simpleclip.clip_arch.vision import VisionTransformer

__all__ = [
    "CLIP",
    "CLIP_MEAN",
    "CLIP_STD",
    "PRESETS",
    "BPETokenizer",
    "Bottleneck",
    "CLIPArchConfig",
    "CLIPImageTower",
    "CLIPTextTower",
    "CaptionTokenizer",
    "ModifiedResNet",
    "QuickGELU",
    "ResidualAttentionBlock",
    "SelfAttention",
    "StateDictMismatch",
    "TextConfig",
    "TextTransformer",
    "Transformer",
    "VisionConfig",
    "VisionTransformer",
    "build_clip",
    "build_clip_towers",
    "causal_mask",
    "clip_model_state",
    "clip_run_config",
    "config_from_hf",
    "convert_hf_state_dict",
    "eot_positions",
    "from_hf",
    "from_hf_state_dict",
    "from_openai_state_dict",
    "get_config",
    "image_transform",
    "learn_merges",
    "load_checked",
    "load_image",
    "load_pretrained",
    "read_transformers_clip",
    "read_transformers_weights",
]
