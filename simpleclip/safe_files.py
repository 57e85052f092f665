"""Reading files a user did not write: checkpoints, Hub downloads, training state.

A checkpoint folder is data. Hugging Face folders can also carry code: a ``config.json`` or
``tokenizer_config.json`` with an ``auto_map`` entry names a ``.py`` file that transformers
offers to import ("Do you wish to run the custom code? [y/N]"), and a pickle runs code when it is
unpickled. So every loader here passes ``trust_remote_code=False``, and ``refuse_code`` checks a
folder before anything reads it: a folder holding code, or a pickle where data belongs, is
refused with a message naming the file. A file that is cut short or corrupt gets one line that
names it and says what to do, never a library's traceback (and never torch's advice to load
with ``weights_only=False``, the one thing not to do with a file you did not write).
"""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

CODE_SUFFIXES = (".py", ".pyc", ".so")  # importable code
PICKLE_SUFFIXES = (".bin", ".pkl", ".pickle", ".pt", ".pth", ".ckpt")  # unpickled on load
FIX = "re-download it, train again, or start the run again with --overwrite"


class UnsafeCheckpointError(ValueError):
    """A checkpoint folder holds code, or a file that does not read as what it should be."""


def refuse_code(folder: Path) -> None:
    """Refuse a folder that transformers will read (searched recursively) when it holds code, a
    pickle, or an ``auto_map``. (Our own ``trainer_state.pt`` is read by ``load_tensors``.)

    Raises:
        UnsafeCheckpointError: naming the first such file.
    """
    for path in sorted(folder.rglob("*")):
        if path.suffix in CODE_SUFFIXES or path.suffix in PICKLE_SUFFIXES:
            kind = "code" if path.suffix in CODE_SUFFIXES else "a pickle (it can run code)"
            raise UnsafeCheckpointError(
                f"{path} is {kind}; a simpleclip checkpoint holds only safetensors, JSON, YAML "
                "and tokenizer files, so it is not loaded. Remove the file if you trust the "
                "rest of the folder, or use a checkpoint you made yourself."
            )
        if path.suffix == ".json" and "auto_map" in _json_keys(path):
            raise UnsafeCheckpointError(
                f"{path} asks transformers to import code ('auto_map'); simpleclip never runs "
                "code from a checkpoint. Use a folder written by CLIPModel.save, or remove "
                "the 'auto_map' entry if you trust it."
            )


def _json_keys(path: Path) -> set[str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return set()  # not ours to judge: the loader that reads it says what is wrong
    return set(data) if isinstance(data, dict) else set()


def load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """``safetensors.torch.load_file`` with a message that names a cut-short or corrupt file."""
    try:
        return load_file(path)
    except (SafetensorError, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise UnsafeCheckpointError(
            f"{path} is not a readable safetensors file (cut short or corrupt: {err}); {FIX}."
        ) from None


def load_tensors(path: Path, what: str = "simpleclip training state") -> Any:
    """``torch.load(weights_only=True)`` of a file we wrote (training state), or of a pickled
    state dict (``what`` names the kind in the message); a file that holds anything but tensors
    and plain values is refused with one line naming it."""
    try:
        with warnings.catch_warnings():  # a foreign pickle's protocol: our error says it all
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise UnsafeCheckpointError(
            f"{path} does not read as {what}: it is cut short, corrupt, or "
            f"holds objects other than tensors ({type(err).__name__}; nothing in it was run); "
            f"{FIX}."
        ) from None
