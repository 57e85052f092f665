"""Share a trained CLIP on the Hugging Face Hub; ``CLIPModel.from_pretrained`` loads it by name.

The Hub stores exactly the folder ``CLIPModel.save`` writes (``model.safetensors``,
``config.yaml``, ``tokenizer/``, ``text_model/``) plus a model card, ``README.md``: YAML
metadata the Hub indexes (library, tags, datasets, the measured Recall@K as ``model-index``)
and a page saying what was trained and how to load it. So loading one back,
``CLIPModel.from_pretrained("user/name")``, is a download into the Hub cache
(``checkpoint.resolve_checkpoint``) followed by the usual offline ``CLIPModel.load``. Everything
runs through ``huggingface_hub`` (``HfApi.create_repo``, ``HfApi.upload_folder``,
``snapshot_download``); nothing here speaks HTTP itself. Used by ``simpleclip push``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from huggingface_hub import HfApi, get_token
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

from simpleclip.checkpoint import (
    CONFIG,
    HUB_ID,
    METRICS,
    TEXT_ARCH,
    TOKENIZER,
    WEIGHTS,
    atomic_directory,
    is_transformers_folder,
    readable_directory,
)
from simpleclip.model import CLIPModel
from simpleclip.model_card import write_model_card, write_public_config
from simpleclip.tower_refs import read_refs

LOGIN_HINT = (
    "Log in once with `hf auth login` (a token with write access, from "
    "https://huggingface.co/settings/tokens), or set HF_TOKEN, or pass --token / token=."
)


def save_pretrained(model: CLIPModel, directory: str | Path) -> Path:
    """``CLIPModel.save``'s files plus a model card, atomically, ready for ``hf upload``.

    What it writes is meant to be shared: ``config.yaml`` holds no local path
    (``model_card.public_config``) and the card names the folder, not where it lives.
    """
    directory = Path(directory)
    with atomic_directory(directory) as tmp:
        model.write_files(tmp)
        write_public_config(tmp / CONFIG, tmp / CONFIG)
        write_model_card(tmp, name=directory.resolve().name)
    return directory


def push_to_hub(
    model: CLIPModel,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    commit_message: str = "Upload simpleclip model",
    endpoint: str | None = None,
    datasets: list[str] | None = None,
) -> str:
    """Upload a model in memory, with a model card, to ``repo_id``; returns the repo's URL.

    One road with the command line: the model is saved to a temporary folder, which is then
    pushed like any checkpoint. Arguments: see ``push_checkpoint``.
    """
    token = check_credentials(repo_id, token)  # before writing a possibly large model
    with tempfile.TemporaryDirectory(prefix="simpleclip-save-") as tmp:
        folder = model.save(Path(tmp) / "model")
        return push_checkpoint(
            folder,
            repo_id,
            private=private,
            token=token,
            commit_message=commit_message,
            endpoint=endpoint,
            datasets=datasets,
        )


def push_checkpoint(
    directory: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    commit_message: str = "Upload simpleclip model",
    endpoint: str | None = None,
    datasets: list[str] | None = None,
) -> str:
    """Upload a saved checkpoint folder, its ``metrics_*.json`` and a model card to the Hub.

    Only the checkpoint's own files travel (a trainer's ``trainer_state.pt`` does not); the
    folder itself is never modified. Returns the repo's URL.

    Args:
        directory: a folder written by ``CLIPModel.save`` or training (e.g. ``runs/demo/model``).
        repo_id: ``"user/name"`` or ``"org/name"``; created if missing, updated if it exists.
        private: create the repo private (an existing repo keeps its visibility).
        token: a write token; default: ``HF_TOKEN`` or the one ``hf auth login`` saved.
        commit_message: the Hub commit's title.
        endpoint: another Hub-compatible server (default: ``HF_ENDPOINT`` or huggingface.co).
        datasets: Hub dataset ids for the card; default: guessed from ``data.root``.

    Raises:
        FileNotFoundError: ``directory`` holds no checkpoint.
        ValueError: ``repo_id`` is not ``user/name``.
        RuntimeError: not logged in, offline, or the Hub refused the upload.
    """
    directory = readable_directory(directory, required=WEIGHTS)
    token = check_credentials(repo_id, token)
    with tempfile.TemporaryDirectory(prefix="simpleclip-push-") as tmp:
        stage_checkpoint(directory, Path(tmp))
        return upload(Path(tmp), repo_id, private, token, commit_message, endpoint, datasets)


def check_credentials(repo_id: str, token: str | None) -> str:
    """Fail before any work when the repo id is malformed or no token is available."""
    if not HUB_ID.match(repo_id):
        raise ValueError(f"Expected a Hub repo id like user/name, got {repo_id!r}.")
    token = token or get_token()
    if not token:
        raise RuntimeError(f"Not logged in to the Hugging Face Hub. {LOGIN_HINT}")
    return token


def stage_checkpoint(directory: Path, staging: Path) -> None:
    """Hard-link (or copy) a checkpoint's shareable files into ``staging``, which gets the card;
    ``config.yaml`` is rewritten without local paths (``model_card.public_config``). A pretrained
    CLIP in transformers' layout is shared in ours, like any model (``CLIPModel.save``'s files)."""
    names = [p.name for p in directory.glob(METRICS)]
    if read_refs(directory) or is_transformers_folder(directory):  # written whole, in our layout
        CLIPModel.load(directory).write_files(staging)
        config = staging / CONFIG
    else:
        names += [WEIGHTS, TOKENIZER, TEXT_ARCH]
        config = directory / CONFIG
    write_public_config(config, staging / CONFIG)
    for name in names:
        source = directory / name
        if source.is_dir():
            shutil.copytree(source, staging / name, copy_function=link_or_copy)
        elif source.is_file():
            link_or_copy(source, staging / name)


def link_or_copy(source: str | Path, target: str | Path) -> None:
    """A hard link costs no disk for a 300 MB checkpoint; other file systems get a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def upload(
    folder: Path,
    repo_id: str,
    private: bool,
    token: str,
    commit_message: str,
    endpoint: str | None,
    datasets: list[str] | None,
) -> str:
    """Write the card into ``folder``, create the repo if needed and upload it in one go."""
    write_model_card(folder, name=repo_id, datasets=datasets)
    api = HfApi(endpoint=endpoint, token=token)
    try:
        url = api.create_repo(repo_id, private=private or None, exist_ok=True)
        api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=commit_message)
    except OfflineModeIsEnabled as err:
        raise RuntimeError("HF_HUB_OFFLINE is set: unset it to push to the Hub.") from err
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else "?"
        hint = LOGIN_HINT if status in (401, 403) else str(err).splitlines()[0]
        raise RuntimeError(
            f"The Hub refused to upload to {repo_id} (HTTP {status}). {hint}"
        ) from err
    return str(url)
