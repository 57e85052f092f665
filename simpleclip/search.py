"""Search any folder of pictures with a sentence: CLIP as a photo search engine.

Every picture in the folder (and its sub-folders; hidden ones are left out) is encoded once with
the image tower and the model's own eval preprocessing. A query is encoded with the text tower;
the cosine similarity with each picture ranks them. Files that cannot be decoded are skipped and
reported, never fatal. The index is cached with ``torch.save`` under ``default_cache_dir()``
(the ``search/`` folder of ``simpleclip.cache.user_cache_dir``), never inside the searched
folder, keyed by the folder and a fingerprint of the image tower; each entry remembers a
file's ``simpleclip.cache.file_stamp``, so only new or changed files are encoded again.
Encoding goes through ``simpleclip.inference.embed_pictures``. The ``simpleclip search``
command is in ``simpleclip.cli.search``. Taught in ``notebooks/07_evaluation.ipynb``; retrieval
as in the CLIP paper's Flickr30k and MSCOCO results.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from simpleclip.cache import (
    digest,
    file_stamp,
    read_cache_file,
    user_cache_dir,
    weights_fingerprint,
)
from simpleclip.checkpoint import atomic_file
from simpleclip.inference import embed_pictures, embed_texts

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
CACHE_VERSION = 2  # bump when the cache layout or fingerprint changes: older files are ignored


@dataclass(frozen=True)
class SearchHit:
    path: Path  # the picture
    score: float  # cosine similarity of the query and the picture, in [-1, 1]


@dataclass(frozen=True)
class SkippedFile:
    path: Path
    reason: str  # e.g. "not an image file", "cannot decode: image file is truncated"


def default_cache_dir() -> Path:
    """Where indexes live: ``user_cache_dir("search")``, e.g. ``~/.cache/simpleclip/search``."""
    return user_cache_dir("search")


def list_files(folder: Path) -> list[Path]:
    """Every file under ``folder``, sorted; hidden files and folders (``.name``) are left out."""
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file() and not any(p.startswith(".") for p in path.relative_to(folder).parts)
    )


def model_fingerprint(model: torch.nn.Module) -> str:
    """A hash of everything ``encode_image`` depends on: image tower, image head, preprocessing.

    The text side is left out on purpose: the index stores image embeddings only.
    """
    tower = weights_fingerprint(model.image_encoder, model.image_head)
    return digest(repr(model.image_encoder.preprocessing), tower)


class ImageIndex:
    """The embeddings of every readable picture in a folder, ready to be searched.

    Build one with ``ImageIndex.build``; then ``search("a dog on the beach")``.

    Args:
        model: the CLIP model that encoded the pictures (it encodes the queries too).
        root: the folder that was indexed.
        paths: the N indexed pictures.
        image_embeds: their unit embeddings, (N, E).
        skipped: files that are not in the index, each with the reason.
        encoded: how many files were decoded and encoded by this build (0: all from the cache).
        reused: how many files came from the cache.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        root: Path,
        paths: list[Path],
        image_embeds: torch.Tensor,
        skipped: list[SkippedFile],
        encoded: int = 0,
        reused: int = 0,
    ) -> None:
        self.model, self.root, self.paths = model, root, paths
        self.image_embeds, self.skipped = image_embeds, skipped
        self.encoded, self.reused = encoded, reused

    @classmethod
    def build(
        cls,
        model: torch.nn.Module,
        folder: str | Path,
        batch_size: int = 64,
        cache: bool = True,
        cache_dir: str | Path | None = None,
        num_workers: int = 0,
        progress: bool | Callable[[int, int], None] = True,
    ) -> ImageIndex:
        """Encode every picture under ``folder`` (sub-folders too), reusing the cache.

        Args:
            model: a ``CLIPModel``; its eval preprocessing prepares the pictures.
            folder: the pictures; ``.jpg .jpeg .png .webp .bmp .gif``, any letter case.
            batch_size: pictures per forward pass.
            cache: read and write the on-disk cache.
            cache_dir: where cache files live (default: ``default_cache_dir()``).
            num_workers: DataLoader processes that decode pictures.
            progress: show a progress bar while encoding; or a function called with (pictures
                encoded, pictures to encode) after each batch (``inference.embed_pictures``).

        Raises:
            FileNotFoundError: ``folder`` is not a folder.
            ValueError: no file in it is a picture that can be decoded.

        Example:
            >>> index = ImageIndex.build(model, "~/Pictures")  # doctest: +SKIP
            >>> index.search("a dog running on the beach", top_k=3)  # doctest: +SKIP
        """
        root = Path(folder).expanduser().resolve()
        if not root.is_dir():
            raise FileNotFoundError(f"No folder of pictures at {root}.")
        files = list_files(root)
        pictures = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
        fingerprint = model_fingerprint(model)
        cache_file = cache_path(root, fingerprint, cache_dir) if cache else None
        known = _read_cache(cache_file, fingerprint) if cache_file else {}
        stamps = {p: file_stamp(p) for p in pictures}
        todo = [p for p in pictures if p not in known or known[p][0] != stamps[p]]
        embeds, reasons = embed_pictures(model, todo, batch_size, num_workers, progress)
        fresh = iter(embeds)
        for path, reason in zip(todo, reasons, strict=True):
            known[path] = (stamps[path], None if reason else next(fresh), reason)
        entries = {p: known[p] for p in pictures}  # drops the files removed since
        if cache_file and (todo or len(known) != len(entries)):
            _write_cache(cache_file, root, fingerprint, entries)
        return cls._from_entries(model, root, files, entries, encoded=len(todo))

    @classmethod
    def _from_entries(
        cls, model: torch.nn.Module, root: Path, files: list[Path], entries: dict, encoded: int
    ) -> ImageIndex:
        ok = [path for path, (_, _, reason) in entries.items() if not reason]
        if not ok:
            found = f"{len(files)} files, none of them" if files else "the folder is empty, not"
            raise ValueError(
                f"No readable images in {root}: {found} a picture that could be decoded "
                f"(looked for {' '.join(IMAGE_EXTENSIONS)}, sub-folders too, hidden files not)."
            )
        skipped = [
            SkippedFile(p, entries[p][2] if p in entries else "not an image file")
            for p in files
            if p not in entries or entries[p][2]
        ]
        embeds = torch.stack([entries[path][1] for path in ok])
        return cls(model, root, ok, embeds, skipped, encoded, len(entries) - encoded)

    def __len__(self) -> int:
        return len(self.paths)

    def search(self, query: str, top_k: int = 9) -> list[SearchHit]:
        """The ``top_k`` pictures that best match a sentence, best first."""
        return self.rank(embed_texts(self.model, [query])[0], top_k)

    def search_image(self, image: str | Path | Image.Image, top_k: int = 9) -> list[SearchHit]:
        """The ``top_k`` pictures most like ``image`` (itself first, if it is in the folder)."""
        item = image if isinstance(image, Image.Image) else Path(image)
        embeds, reasons = embed_pictures(self.model, [item])
        if reasons[0]:
            raise ValueError(f"{image}: {reasons[0]}")
        return self.rank(embeds[0], top_k)

    def rank(self, query_embed: torch.Tensor, top_k: int = 9) -> list[SearchHit]:
        """Sort the pictures by cosine similarity to a unit query embedding. Shapes: (E,)."""
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}.")
        scores = self.image_embeds @ query_embed  # (N, E) @ (E,) -> (N,)
        best = scores.topk(min(top_k, len(scores)))
        pairs = zip(best.values.tolist(), best.indices.tolist(), strict=True)
        return [SearchHit(self.paths[index], score) for score, index in pairs]

    def summary(self, folder: str | None = None) -> str:
        """One line: how many pictures, where from, and how many files were skipped.

        Args:
            folder: how the line names the folder (default: its full path), e.g. a path
                relative to the project, so that a notebook's output names no machine folder.
        """
        unreadable = sum(s.reason != "not an image file" for s in self.skipped)
        return (
            f"{len(self)} pictures indexed in {folder or self.root} ({self.encoded} files "
            f"decoded now, {self.reused} reused from the cache); {len(self.skipped)} files skipped "
            f"({unreadable} unreadable, {len(self.skipped) - unreadable} not images)."
        )


# --- the on-disk cache: plain tensors, strings and numbers, loadable with weights_only=True


def cache_path(root: Path, fingerprint: str, cache_dir: str | Path | None = None) -> Path:
    """One cache file per (folder, image tower) pair."""
    folder = digest(str(root))[:16]
    return Path(cache_dir or default_cache_dir()).expanduser() / f"{folder}-{fingerprint[:16]}.pt"


Entry = tuple[tuple[int, int], torch.Tensor | None, str]  # stamp, embedding, skip reason


def _read_cache(cache_file: Path, fingerprint: str) -> dict[Path, Entry]:
    """The cached entries, or ``{}`` if there is no usable cache (a damaged one is ignored)."""
    saved = read_cache_file(cache_file)
    try:
        if saved["version"] != CACHE_VERSION or saved["fingerprint"] != fingerprint:
            return {}
        root, embeds = Path(saved["root"]), iter(saved["embeds"])
        rows = zip(saved["files"], saved["stamps"].tolist(), saved["reasons"], strict=True)
        return {
            root / name: ((size, mtime), None if reason else next(embeds), reason)
            for name, (size, mtime), reason in rows
        }
    except Exception:  # a damaged or foreign file: rebuild it, never fail a search over it
        return {}


def _write_cache(cache_file: Path, root: Path, fingerprint: str, entries: dict) -> None:
    embeds = [embed for _, embed, reason in entries.values() if not reason]
    saved = {
        "version": CACHE_VERSION,
        "fingerprint": fingerprint,
        "root": str(root),
        "files": [path.relative_to(root).as_posix() for path in entries],
        "stamps": torch.tensor([stamp for stamp, _, _ in entries.values()], dtype=torch.long),
        "reasons": [reason for _, _, reason in entries.values()],
        "embeds": torch.stack(embeds) if embeds else torch.zeros(0, 0),
    }
    with atomic_file(cache_file) as tmp:  # a reader never sees half a file
        torch.save(saved, tmp)
