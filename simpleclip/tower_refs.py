"""A frozen pretrained tower is referenced by a checkpoint, not copied into it.

With frozen encoders only the heads and the temperature train: a few hundred thousand numbers.
Copying the encoders into every ``best/`` and ``last/`` wrote ~100 MB per save for
EfficientNet-Lite0 + MiniLM (the course wrote 1.9 GB; a sweep filled a disk). So training
writes such a tower as a reference instead, in ``frozen_towers.json``: where its weights come
from (``image.weights`` or the timm name, ``text.name``) and a SHA-256 fingerprint of its
tensors. ``CLIPModel.load`` rebuilds the tower from that source and refuses it when the
fingerprint differs, so a reloaded model is the trained one, bit for bit, or an error.

What leaves the machine (``save_pretrained``, ``push``, ``export``) is always self-contained.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import nn

REFS = "frozen_towers.json"  # in a checkpoint folder, next to model.safetensors
TOWERS = {"image": "image_encoder", "text": "text_encoder"}  # config section -> attribute


def fingerprint(module: nn.Module) -> str:
    """SHA-256 of a module's tensors (names, dtypes, shapes and bytes), in a stable order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        shape = tuple(tensor.shape)
        tensor = tensor.detach().cpu().contiguous().reshape(-1)  # 0-d too: one row of bytes
        digest.update(f"{name}|{tensor.dtype}|{shape}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def referable_towers(model: nn.Module) -> list[str]:
    """The towers ("image", "text") that can be referenced: pretrained, built from a source
    that can be read again, and with no trained parameter (not even a partly unfrozen one)."""
    config, found = model.config, []
    for section, attribute in TOWERS.items():
        settings = getattr(config, section)
        tower = getattr(model, attribute)
        frozen = not any(p.requires_grad for p in tower.parameters())
        if settings.pretrained and frozen and settings.name != "tiny":
            found.append(section)
    return found


def source_of(model: nn.Module, section: str) -> str:
    """Where the tower's weights are read from: a local file or folder, or a hub name."""
    settings = getattr(model.config, section)
    return (settings.weights or settings.name) if section == "image" else settings.name


def split_state(
    model: nn.Module, reference: bool
) -> tuple[dict[str, torch.Tensor], dict[str, dict]]:
    """The tensors to write, and the references that stand for the towers left out."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    refs: dict[str, dict] = {}
    for section in referable_towers(model) if reference else []:
        prefix = TOWERS[section] + "."
        state = {k: v for k, v in state.items() if not k.startswith(prefix)}
        tower = getattr(model, TOWERS[section])
        refs[section] = {"source": source_of(model, section), "sha256": fingerprint(tower)}
    return state, refs


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
    """Refuse a rebuilt tower whose tensors are not the ones the checkpoint was trained with."""
    if fingerprint(tower) != ref["sha256"]:
        raise TowerSourceChanged(
            f"{directory} refers to its frozen {section} tower by its source, {ref['source']}, "
            "whose weights have changed since the checkpoint was written (fingerprint "
            f"{ref['sha256'][:12]}...). Restore those weights, or train again."
        )
