"""A pretrained tower's frozen part is referenced by a checkpoint, not copied into it.

With frozen encoders only the heads and the temperature train: a few hundred thousand numbers.
Copying the encoders into every ``best/`` and ``last/`` wrote ~100 MB per save for
EfficientNet-Lite0 + MiniLM (the course wrote 1.9 GB; a sweep filled a disk). So training
writes the frozen part of a pretrained tower as a reference instead, in ``frozen_towers.json``:
where its weights come from (``image.weights`` or the timm name, ``text.name``) and a SHA-256
fingerprint of the referenced tensors. A partly unfrozen tower (``unfreeze_last``) stores only
what training can change in ``model.safetensors`` (its trained parameters and the buffers of
the layers that own them) and names those tensors under ``"stored"``; a fully frozen tower
stores nothing and has no ``"stored"`` list. ``CLIPModel.load`` rebuilds the tower from its
source, refuses it when the fingerprint differs, then loads the stored tensors on top, so a
reloaded model is the trained one, bit for bit, or an error. A tower that trains every
parameter (``trainable=true``) is written whole: there is nothing frozen to reference.

What leaves the machine (``save_pretrained``, ``push``, ``export``) is always self-contained.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from pathlib import Path

import torch
from torch import nn

from simpleclip.config import CLIP_TOWERS

REFS = "frozen_towers.json"  # in a checkpoint folder, next to model.safetensors
TOWERS = {"image": "image_encoder", "text": "text_encoder"}  # config section -> attribute


def fingerprint(module: nn.Module, exclude: Collection[str] = ()) -> str:
    """SHA-256 of a module's tensors (names, dtypes, shapes and bytes), in a stable order.

    Args:
        module: the tower.
        exclude: state-dict names left out (the tensors a checkpoint stores itself); with
            none left out this is the fingerprint older checkpoints hold for a frozen tower.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        if name in exclude:
            continue
        shape = tuple(tensor.shape)
        tensor = tensor.detach().cpu().contiguous().reshape(-1)  # 0-d too: one row of bytes
        digest.update(f"{name}|{tensor.dtype}|{shape}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def trained_keys(tower: nn.Module) -> set[str]:
    """The state-dict names of a tower that training can change: every parameter that takes
    gradients, and the buffers of each layer that owns one (a BatchNorm's running statistics
    belong with its weight, even though a frozen backbone's eval mode keeps them still)."""
    keys: set[str] = set()
    for module_name, module in tower.named_modules():
        trained = [n for n, p in module.named_parameters(recurse=False) if p.requires_grad]
        if trained:
            prefix = f"{module_name}." if module_name else ""
            buffers = [n for n, _ in module.named_buffers(recurse=False)]
            keys.update(prefix + name for name in trained + buffers)
    return keys & set(tower.state_dict())  # a non-persistent buffer is never saved


def referable_towers(model: nn.Module) -> list[str]:
    """The towers ("image", "text") that can be referenced: pretrained, built from a source
    that can be read again by name (not "tiny" or "clip", built in code), and with at least one
    frozen parameter."""
    config, found = model.config, []
    for section, attribute in TOWERS.items():
        settings = getattr(config, section)
        tower = getattr(model, attribute)
        some_frozen = any(not p.requires_grad for p in tower.parameters())
        if settings.pretrained and some_frozen and settings.name not in ("tiny", CLIP_TOWERS):
            found.append(section)
    return found


def source_of(model: nn.Module, section: str) -> str:
    """Where the tower's weights are read from: a local file or folder, or a hub name."""
    settings = getattr(model.config, section)
    return (settings.weights or settings.name) if section == "image" else settings.name


def split_state(
    model: nn.Module, reference: bool
) -> tuple[dict[str, torch.Tensor], dict[str, dict]]:
    """The tensors to write, and the references that stand for the tensors left out."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    refs: dict[str, dict] = {}
    for section in referable_towers(model) if reference else []:
        prefix = TOWERS[section] + "."
        tower = getattr(model, TOWERS[section])
        stored = trained_keys(tower)
        state = {k: v for k, v in state.items() if not _referenced(k, prefix, stored)}
        refs[section] = {"source": source_of(model, section), "sha256": fingerprint(tower, stored)}
        if stored:  # tower-relative names of the tensors model.safetensors holds
            refs[section]["stored"] = sorted(stored)
    return state, refs


def _referenced(key: str, prefix: str, stored: Collection[str]) -> bool:
    return key.startswith(prefix) and key[len(prefix) :] not in stored


def referenced_keys(refs: dict[str, dict], keys: list[str]) -> set[str]:
    """Those of the model's state-dict ``keys`` that ``refs`` stands for (not in the file)."""
    found: set[str] = set()
    for section, ref in refs.items():
        prefix, stored = TOWERS[section] + ".", set(ref.get("stored", ()))
        found.update(key for key in keys if _referenced(key, prefix, stored))
    return found


def write_refs(directory: Path, refs: dict[str, dict]) -> None:
    if refs:
        (directory / REFS).write_text(json.dumps(refs, indent=2) + "\n")


def read_refs(directory: Path) -> dict[str, dict]:
    """The towers a checkpoint references (``{}`` for a self-contained one)."""
    path = directory / REFS
    return json.loads(path.read_text()) if path.is_file() else {}


class TowerSourceChanged(ValueError):
    """A referenced tower's source is gone or holds other weights than the checkpoint's."""


def check_tower(directory: Path, section: str, ref: dict, tower: nn.Module) -> None:
    """Refuse a rebuilt tower whose referenced tensors are not the ones the checkpoint was
    trained with (the tensors it stores itself are not compared: training changed them)."""
    stored = set(ref.get("stored", ()))
    if fingerprint(tower, stored) != ref["sha256"]:
        what = f"the frozen part of its {section}" if stored else f"its frozen {section}"
        raise TowerSourceChanged(
            f"{directory} refers to {what} tower by its source, {ref['source']}, "
            "whose weights have changed since the checkpoint was written (fingerprint "
            f"{ref['sha256'][:12]}...). Restore those weights, or train again."
        )
