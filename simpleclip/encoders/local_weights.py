"""Pretrained weights from a local file or folder, for machines that cannot reach the hub.

Clusters without internet, air-gapped labs and this project's own CI all need the same thing:
point an encoder at weights already on disk. For timm that is one keyword,
``pretrained_cfg_overlay=dict(file=...)``, which keeps timm's own loading (classifier removal,
key filters); for Hugging Face a model folder is simply passed as the name. What this module
adds is the part timm and transformers leave to you: a clear error when the file is missing,
or when it was saved from another architecture (which key names or shapes do not fit).
Used by ``simpleclip.encoders.image`` and ``simpleclip.encoders.text``; see the README.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from simpleclip.encoders.errors import EncoderLoadError
from simpleclip.paths import is_local_name

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
HF_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def weights_file(path: str | Path, model_name: str) -> Path:
    """``path`` as an existing weights file, or an error that says what to fix."""
    file = Path(path).expanduser()
    where = f"image.weights={path!s} (for image encoder {model_name!r})"
    if file.is_dir():
        found = sorted(p.name for p in file.iterdir() if p.suffix in WEIGHT_SUFFIXES)
        hint = f" It contains {', '.join(found)}: name one of them." if found else ""
        raise EncoderLoadError(f"{where} is a folder; give the weights file itself.{hint}")
    if not file.is_file():
        raise EncoderLoadError(
            f"{where}: no such file. Check the path; on a machine without internet, copy the "
            "weights there first (the README's 'Pretrained weights without internet' section)."
        )
    if file.suffix not in WEIGHT_SUFFIXES:
        raise EncoderLoadError(f"{where}: expected one of {', '.join(WEIGHT_SUFFIXES)} files.")
    return file


def read_state_dict(file: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors or PyTorch file (never unpickles code: ``weights_only``)."""
    if file.suffix == ".safetensors":
        return load_file(file)
    state = torch.load(file, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):  # common training-checkpoint wrappers
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    return dict(state)


def mismatch_report(model: nn.Module, state: Mapping[str, torch.Tensor], limit: int = 3) -> str:
    """Which keys are missing, unexpected or of another shape: why a file does not fit."""
    expected = {k: v.shape for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} in the file vs {tuple(shape)} in the model"
        for k, shape in expected.items()
        if k in state and tuple(state[k].shape) != tuple(shape)
    ]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)):
        if items:
            more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:limit])}{more}")
    return "; ".join(parts) or "keys and shapes match"


def hf_folder(name: str) -> Path | None:
    """The local Hugging Face folder ``name`` refers to, or None for a hub id.

    ``paths.is_local_name`` decides: a name that exists on disk, or that is written like a
    path (``./x``, ``/x``, ``~/x``), is a folder; ``owner/model`` hub ids are neither.

    Raises:
        EncoderLoadError: a path that does not exist, or a folder without a config or weights.
    """
    if not is_local_name(name):
        return None
    path = Path(name).expanduser()
    if not path.is_dir():
        raise EncoderLoadError(
            f"text encoder folder {name!r} does not exist. Give a Hugging Face model folder "
            "(config.json, model.safetensors, tokenizer files), e.g. one written by "
            "save_pretrained(), or a hub id such as 'distilbert-base-uncased'."
        )
    missing = [] if (path / "config.json").is_file() else ["config.json"]
    if not any((path / f).is_file() for f in HF_WEIGHT_FILES):
        missing.append(" or ".join(HF_WEIGHT_FILES))
    if missing:
        raise EncoderLoadError(
            f"text encoder folder {str(path)!r} is not a Hugging Face model folder: it has no "
            f"{' and no '.join(missing)}. Save one with model.save_pretrained(folder) and "
            "tokenizer.save_pretrained(folder)."
        )
    return path
