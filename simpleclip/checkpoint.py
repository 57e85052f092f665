"""The checkpoint folder: the files in it, written so that a crash never leaves a broken one.

``CLIPModel.save`` writes ``model.safetensors``, ``config.yaml``, ``tokenizer/`` and
``text_model/``; ``simpleclip eval`` adds ``metrics_<split>.json`` and sharing adds a model card,
``README.md``. A folder is first written under a temporary name, then swapped in with renames:
the old version is moved aside, the new one takes its name, the old one is deleted. Whenever the
process dies, either ``DIR`` or ``DIR.old`` is a complete checkpoint, and ``readable_directory``
finds it; ``resolve_checkpoint`` also finds a Hub repo's copy in the Hub cache, downloading it
once. A pretrained CLIP in transformers' layout (``config.json``, weights, ``vocab.json`` and
``merges.txt``) is accepted wherever a checkpoint is (``is_transformers_folder``). Used by the
model, training, export and the Hub; taught in ``notebooks/06_training.ipynb``.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from huggingface_hub import snapshot_download
from huggingface_hub.errors import HfHubHTTPError

from simpleclip.paths import is_local_name
from simpleclip.safe_files import CODE_SUFFIXES, PICKLE_SUFFIXES

WEIGHTS = "model.safetensors"  # every tensor of the model
CONFIG = "config.yaml"  # the full run config
TOKENIZER = "tokenizer"  # Hugging Face tokenizer folder
TEXT_ARCH = "text_model"  # the text transformer's config, to rebuild it offline
CARD = "README.md"  # the model card: the Hub shows it as the model's page
METRICS = "metrics_*.json"  # what `simpleclip eval --checkpoint DIR` writes into DIR
# A pretrained CLIP in transformers' layout (e.g. openai/clip-vit-base-patch32): its config, its
# weights (one file, or shards and their index) and its BPE vocabulary.
TRANSFORMERS_CONFIG = "config.json"
TRANSFORMERS_FILES = [
    TRANSFORMERS_CONFIG,
    "model-*.safetensors",
    "model.safetensors.index.json",
    "vocab.json",
    "merges.txt",
]

# What a Hub repo of ours, or a transformers CLIP, holds; a download skips anything else (an
# optimizer state, TensorFlow and Flax copies of the weights).
HUB_FILES = [
    WEIGHTS,
    CONFIG,
    f"{TOKENIZER}/*",
    f"{TEXT_ARCH}/*",
    METRICS,
    CARD,
    *TRANSFORMERS_FILES,
]
# Code and pickles are never fetched (safe_files: CLIPModel.load refuses them in a checkpoint).
NEVER_DOWNLOADED = [f"*{suffix}" for suffix in (*CODE_SUFFIXES, *PICKLE_SUFFIXES)]
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # "user/name", no path decorations


def draft_of(target: Path, owner: int | str | None = None) -> Path:
    """``.NAME.tmp-PID-THREAD``: where ``atomic_directory`` and ``atomic_file`` write
    ``target``'s next version.

    ``owner`` is the writer (default: this process and thread, so two threads of the app
    indexing one folder never share a draft); ``"*"`` gives the pattern of every draft, which is
    what a run folder's cleanup globs for after a kill.
    """
    if owner is None:
        owner = f"{os.getpid()}-{threading.get_ident()}"
    return target.with_name(f".{target.name}.tmp-{owner}")


def previous_of(target: Path) -> Path:
    """``NAME.old``: ``target``'s previous version, kept while ``atomic_directory`` swaps."""
    return target.with_name(target.name + ".old")


@contextmanager
def atomic_directory(target: str | Path) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces ``target`` in one swap.

    Raises inside the block leave ``target`` untouched and remove the temporary folder.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp, old = draft_of(target), previous_of(target)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_file(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target`` in one rename.

    A reader never sees half a file (a cache, a rewritten log); a raise inside the block leaves
    ``target`` as it was and removes the temporary file.

    Example:
        >>> with atomic_file(path) as tmp:  # doctest: +SKIP
        ...     torch.save(tensor, tmp)
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = draft_of(target)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def readable_directory(directory: str | Path, required: str) -> Path:
    """``directory``, or its ``.old`` twin if a crash interrupted the swap.

    Raises:
        FileNotFoundError: neither holds ``required``; the message says what was expected.
    """
    directory = Path(directory)
    if (directory / required).is_file():
        return directory
    old = previous_of(directory)
    if (old / required).is_file():
        warnings.warn(f"{directory} is incomplete; using the previous save {old}.", stacklevel=2)
        return old
    raise FileNotFoundError(
        f"No checkpoint in {directory}: expected {directory / required}. Point to a folder "
        "written by CLIPModel.save or `simpleclip train` (e.g. runs/demo/model)."
    )


def is_transformers_folder(directory: str | Path) -> bool:
    """Whether ``directory`` holds a model in transformers' layout rather than one of ours: a
    ``config.json`` and no ``config.yaml`` (``CLIPModel.load`` then reads it as a pretrained
    CLIP; ``clip_arch.read_transformers_clip`` refuses any other kind of model by name)."""
    directory = Path(directory)
    return (directory / TRANSFORMERS_CONFIG).is_file() and not (directory / CONFIG).is_file()


def resolve_checkpoint(
    name_or_path: str | Path,
    revision: str | None = None,
    token: str | None = None,
    cache_dir: str | Path | None = None,
    endpoint: str | None = None,
) -> Path:
    """The local folder holding the checkpoint ``name_or_path`` names, downloading it if needed.

    A local folder wins when both could match; a Hub repo id such as ``"user/name"`` (one of
    ours, or a transformers CLIP such as ``"openai/clip-vit-base-patch32"``) is downloaded once
    into the Hub cache (``cache_dir``, default ``~/.cache/huggingface/hub``): ``HUB_FILES`` only.

    Raises:
        FileNotFoundError: not a local folder, and the Hub (or its cache) does not have it.
    """
    path = Path(name_or_path)
    local = is_local_name(name_or_path) or previous_of(path).exists()
    if local or not HUB_ID.match(name_or_path):
        return path  # CLIPModel.load names the missing file
    try:
        folder = snapshot_download(
            repo_id=name_or_path,
            revision=revision,
            token=token,
            cache_dir=cache_dir,
            endpoint=endpoint,
            allow_patterns=HUB_FILES,
            ignore_patterns=NEVER_DOWNLOADED,
        )
    except (HfHubHTTPError, FileNotFoundError) as err:  # FileNotFoundError: offline, not cached
        raise FileNotFoundError(
            f"{name_or_path!r} is neither a local checkpoint folder nor a model the Hub gave us "
            f"({type(err).__name__}: {str(err).splitlines()[0]}). Check the name, log in for a "
            "private repo (`hf auth login`), or, if you are offline (or HF_HUB_OFFLINE=1 is "
            "set), run once with internet access to download it into the Hugging Face cache."
        ) from err
    return Path(folder)
