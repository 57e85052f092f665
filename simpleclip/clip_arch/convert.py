"""Load pretrained weights into our CLIP: from ``transformers.CLIPModel`` or OpenAI's checkpoints.

Hugging Face's CLIP is the same network under other names: its ``self_attn.q_proj``,
``k_proj``, ``v_proj`` are our one stacked ``attn.in_proj_weight``, its projections are
``nn.Linear`` layers (weights stored transposed), and it spells ``pre_layrnorm`` with a typo.
``HF_NAMES`` and ``HF_BLOCK_NAMES`` below spell the mapping out; anything they do not cover,
anything missing and any shape that does not fit is refused with a list. OpenAI's own
checkpoints (the only source of the ResNet weights) use our names already, except that the
text tower sits at the top level. A folder in transformers' layout (a hub repo's download) is read
without transformers' model code: ``read_transformers_clip``. Taught in
``notebooks/09_clip_from_scratch.ipynb``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from simpleclip.checkpoint import resolve_checkpoint
from simpleclip.clip_arch.config import CLIPArchConfig, TextConfig, VisionConfig
from simpleclip.clip_arch.model import CLIP
from simpleclip.clip_arch.tokenizer import BPETokenizer
from simpleclip.safe_files import load_safetensors, load_tensors

# Hugging Face name -> our name, outside the transformer blocks.
HF_NAMES = {
    "logit_scale": "logit_scale",
    "text_model.embeddings.token_embedding.weight": "text.token_embedding.weight",
    "text_model.embeddings.position_embedding.weight": "text.positional_embedding",
    "text_model.final_layer_norm.weight": "text.ln_final.weight",
    "text_model.final_layer_norm.bias": "text.ln_final.bias",
    "text_projection.weight": "text.text_projection",  # transposed
    "vision_model.embeddings.class_embedding": "visual.class_embedding",
    "vision_model.embeddings.patch_embedding.weight": "visual.conv1.weight",
    "vision_model.embeddings.position_embedding.weight": "visual.positional_embedding",
    "vision_model.pre_layrnorm.weight": "visual.ln_pre.weight",
    "vision_model.pre_layrnorm.bias": "visual.ln_pre.bias",
    "vision_model.post_layernorm.weight": "visual.ln_post.weight",
    "vision_model.post_layernorm.bias": "visual.ln_post.bias",
    "visual_projection.weight": "visual.proj",  # transposed
}
TRANSPOSED = {"text.text_projection", "visual.proj"}  # we compute x @ W, nn.Linear x @ W.T
HF_TOWERS = {"text_model": "text", "vision_model": "visual"}
# Inside block i: Hugging Face name -> our name (weights and biases alike).
HF_BLOCK_NAMES = {
    "layer_norm1": "ln_1",
    "self_attn.out_proj": "attn.out_proj",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}
HF_QKV = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")  # stacked in this order
HF_BLOCK = re.compile(r"(text_model|vision_model)\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)")


class StateDictMismatch(ValueError):
    """Raised when a state dict does not fit the model; the message lists every problem."""


def convert_hf_state_dict(hf_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a ``transformers.CLIPModel`` state dict to our names, stacking q, k, v.

    Names the mapping does not know, and q/k/v triples with a part missing, keep their Hugging
    Face names, so ``load_checked`` lists them together with every other problem.

    Args:
        hf_state: ``hf_model.state_dict()``.

    Returns:
        A state dict for ``CLIP``; load it with ``load_checked``.
    """
    ours: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[int, tuple[str, torch.Tensor]]] = {}
    for name, tensor in hf_state.items():
        block = HF_BLOCK.fullmatch(name)
        if name in HF_NAMES:
            new = HF_NAMES[name]
            ours[new] = tensor.T if new in TRANSPOSED else tensor
        elif block and block[3] in HF_BLOCK_NAMES:
            prefix = f"{HF_TOWERS[block[1]]}.transformer.resblocks.{block[2]}"
            ours[f"{prefix}.{HF_BLOCK_NAMES[block[3]]}.{block[4]}"] = tensor
        elif block and block[3] in HF_QKV:
            new = f"{HF_TOWERS[block[1]]}.transformer.resblocks.{block[2]}.attn.in_proj_{block[4]}"
            qkv.setdefault(new, {})[HF_QKV.index(block[3])] = (name, tensor)
        else:
            ours[name] = tensor  # unknown: load_checked will list it as unexpected
    for new, parts in qkv.items():
        if len(parts) == 3:
            ours[new] = torch.cat([parts[i][1] for i in range(3)])  # (3D, D) or (3D,): q, k, v
        else:
            ours.update(parts.values())  # incomplete: listed, and the stacked entry as missing
    return ours


def load_checked(model: CLIP, state: dict[str, torch.Tensor]) -> CLIP:
    """Copy ``state`` into ``model`` after checking that names and shapes all match.

    Raises:
        StateDictMismatch: listing missing, unexpected and mis-shaped entries together.
    """
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mis_shaped = [
        f"{name}: checkpoint {tuple(state[name].shape)} vs model {tuple(expected[name].shape)}"
        for name in sorted(set(state) & set(expected))
        if state[name].shape != expected[name].shape
    ]
    if missing or unexpected or mis_shaped:
        raise StateDictMismatch(
            _report(missing=missing, unexpected=unexpected, mis_shaped=mis_shaped)
        )
    model.load_state_dict(state)
    return model


def _report(**problems: list[str]) -> str:
    lines = ["the state dict does not fit this CLIP:"]
    for kind, names in problems.items():
        if names:
            lines.append(f"  {kind} ({len(names)}): " + ", ".join(names))
    return "\n".join(lines)


def config_from_hf(hf_config: Any) -> CLIPArchConfig:
    """Translate a ``transformers.CLIPConfig`` into ours, refusing what we do not implement."""
    t, v = hf_config.text_config, hf_config.vision_config
    for c in (t, v):
        if c.layer_norm_eps != 1e-5 or c.hidden_act not in ("quick_gelu", "gelu"):
            raise ValueError(f"unsupported: layer_norm_eps={c.layer_norm_eps}, {c.hidden_act}")
    text = TextConfig(
        vocab_size=t.vocab_size,
        context_length=t.max_position_embeddings,
        width=t.hidden_size,
        layers=t.num_hidden_layers,
        heads=t.num_attention_heads,
        mlp_ratio=t.intermediate_size / t.hidden_size,
        activation=t.hidden_act,
        # transformers keeps OpenAI's argmax pooling when eos_token_id has the old value 2,
        # which the openai/* hub configs still carry.
        eot_token_id=None if t.eos_token_id == 2 else t.eos_token_id,
    )
    vision = VisionConfig(
        image_size=v.image_size,
        patch_size=v.patch_size,
        width=v.hidden_size,
        layers=v.num_hidden_layers,
        heads=v.num_attention_heads,
        mlp_ratio=v.intermediate_size / v.hidden_size,
        activation=v.hidden_act,
    )
    return CLIPArchConfig(
        embed_dim=hf_config.projection_dim,
        text=text,
        vision=vision,
        logit_scale_init=float(hf_config.logit_scale_init_value),
    )


def from_hf_state_dict(hf_state: dict[str, torch.Tensor], config: CLIPArchConfig) -> CLIP:
    """Build our CLIP from a ``transformers.CLIPModel`` state dict and our config."""
    return load_checked(CLIP(config), convert_hf_state_dict(hf_state)).eval()


def from_hf(hf_model: Any) -> CLIP:
    """Our CLIP with the weights of a ``transformers.CLIPModel``, in eval mode.

    Args:
        hf_model: e.g. ``transformers.CLIPModel.from_pretrained("openai/clip-vit-base-patch32")``.

    Returns:
        A ``CLIP`` whose ``encode_image(x, normalize=False)`` and ``encode_text(ids,
        normalize=False)`` equal ``get_image_features`` and ``get_text_features``.

    Example:
        >>> hf = transformers.CLIPModel.from_pretrained("openai/clip-vit-base-patch32")
        >>> model = from_hf(hf)
    """
    model = from_hf_state_dict(hf_model.state_dict(), config_from_hf(hf_model.config))
    return model.to(next(hf_model.parameters()).dtype)


def config_from_openai_state_dict(state: dict[str, torch.Tensor]) -> CLIPArchConfig:
    """Read the sizes off an OpenAI checkpoint, as OpenAI's ``build_model`` does.

    Head counts are not stored; like OpenAI we assume 64 dimensions per head.
    """

    def count(prefix: str) -> int:  # distinct block indices under prefix
        return len({k[len(prefix) :].split(".")[0] for k in state if k.startswith(prefix)})

    if "visual.proj" in state:  # a ViT
        width, _, patch, _ = state["visual.conv1.weight"].shape
        grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        layers = count("visual.transformer.resblocks.")
        vision = VisionConfig(grid * patch, patch, width, layers, heads=width // 64)
    else:  # the modified ResNet
        width = state["visual.layer1.0.conv1.weight"].shape[0]
        grid = round((state["visual.attnpool.positional_embedding"].shape[0] - 1) ** 0.5)
        stages = tuple(count(f"visual.layer{i}.") for i in (1, 2, 3, 4))
        vision = VisionConfig(
            image_size=grid * 32, width=width, heads=width * 32 // 64, resnet_layers=stages
        )
    context_length, text_width = state["positional_embedding"].shape
    vocab_size, layers = state["token_embedding.weight"].shape[0], count("transformer.resblocks.")
    text = TextConfig(vocab_size, context_length, text_width, layers, heads=text_width // 64)
    return CLIPArchConfig(embed_dim=state["text_projection"].shape[1], text=text, vision=vision)


def from_openai_state_dict(
    state: dict[str, torch.Tensor], config: CLIPArchConfig | None = None
) -> CLIP:
    """Our CLIP from an OpenAI checkpoint, e.g. ``torch.jit.load("RN50.pt").state_dict()``.

    Args:
        state: OpenAI's names; the text tower's entries carry no prefix.
        config: the sizes; None reads them off ``state``.
    """
    scalars = ("input_resolution", "context_length", "vocab_size")  # in JIT archives, not weights
    state = {k: v for k, v in state.items() if k not in scalars}
    config = config or config_from_openai_state_dict(state)
    ours = {
        k if k.startswith("visual.") or k == "logit_scale" else f"text.{k}": v.float()
        for k, v in state.items()
    }
    return load_checked(CLIP(config), ours).eval()


def read_transformers_clip(folder: str | Path) -> tuple[Any, CLIP, BPETokenizer]:
    """Read a CLIP saved in transformers' layout, without transformers' model code.

    The layout of the ``openai/clip-*`` hub repos and of ``transformers.CLIPModel.save_pretrained``
    plus the tokenizer's ``vocab.json`` and ``merges.txt``. Only the config is read by
    transformers (``CLIPConfig``, a data class: no ``auto_map``, no code); the weights are read
    by ``read_transformers_weights`` and checked name by name (``load_checked``).

    Args:
        folder: the folder (a hub repo is downloaded first: ``simpleclip.checkpoint``).

    Returns:
        ``(hf_config, model, tokenizer)``: the ``transformers.CLIPConfig``, our ``CLIP`` with
        the weights in eval mode, and its BPE tokenizer.

    Raises:
        ValueError: not a CLIP, a CLIP we do not implement, or weights that do not fit it.
        FileNotFoundError: no weights, or no ``vocab.json`` / ``merges.txt``.
    """
    from transformers import CLIPConfig

    folder = Path(folder)
    raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if raw.get("model_type") != "clip":
        raise ValueError(
            f"{folder} holds a transformers {raw.get('model_type')!r} model, not a CLIP "
            '(config.json: "model_type": "clip"); only OpenAI\'s CLIP architecture is read.'
        )
    hf_config = CLIPConfig.from_dict(raw)
    model = from_hf_state_dict(read_transformers_weights(folder), config_from_hf(hf_config))
    return hf_config, model, BPETokenizer.from_pretrained(str(folder))


def read_transformers_weights(folder: Path) -> dict[str, torch.Tensor]:
    """A transformers folder's state dict: ``model.safetensors``, or its shards listed in
    ``model.safetensors.index.json``; ``pytorch_model.bin`` (a pickle) only when there is no
    safetensors file, and then unpickled with ``weights_only=True`` (tensors only, no code).

    Raises:
        FileNotFoundError: none of these files is there.
    """
    index = folder / "model.safetensors.index.json"
    if (folder / "model.safetensors").is_file():
        state = load_safetensors(folder / "model.safetensors")
    elif index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        state = {k: v for shard in shards for k, v in load_safetensors(folder / shard).items()}
    elif (folder / "pytorch_model.bin").is_file():
        state = load_tensors(folder / "pytorch_model.bin", what="a transformers state dict")
    else:
        raise FileNotFoundError(
            f"{folder} has a config.json but no weights: expected model.safetensors (or its "
            "shards and model.safetensors.index.json). Download the whole model folder."
        )
    # Older checkpoints also store each tower's position ids (0, 1, 2, ...): not weights.
    return {k: v for k, v in state.items() if not k.endswith("embeddings.position_ids")}


def load_pretrained(name: str = "openai/clip-vit-base-patch32") -> tuple[CLIP, BPETokenizer]:
    """Our CLIP and its tokenizer from a hub id (downloaded once, then the cache) or a folder.

    The download is ``simpleclip.checkpoint.resolve_checkpoint``'s (the files listed there
    only); the folder is read by ``read_transformers_clip``.

    Example:
        >>> model, tokenizer = load_pretrained()
        >>> text_embeds = model.encode_text(tokenizer(["a photo of a cat", "a photo of a dog"]))
    """
    _, model, tokenizer = read_transformers_clip(resolve_checkpoint(name))
    return model, tokenizer
