"""The app's handlers: search a folder with words, label an uploaded picture. No Gradio here.

``ClipApp`` holds the loaded models and answers the page's two tabs: ``search`` ranks the
pictures of a folder against a description (``simpleclip.search``), ``classify`` gives the five
best labels of an uploaded picture out of an editable list (``simpleclip.zeroshot``). A bad
input gets a clear message instead of an exception, so it never stops the server; a path
outside the allowed folders raises ``PathNotAllowed`` (``simpleclip.app.access``), which the
page turns into an error. Plain functions of plain values, so ``tests/test_app.py`` calls them
without a browser; ``simpleclip.app.page`` wires them into Gradio. Taught in
``notebooks/08_zero_shot_and_search.ipynb``.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image

from simpleclip.app.access import AllowedPaths, PathNotAllowed
from simpleclip.app.suggestions import default_labels, default_templates, example_query
from simpleclip.cache import digest, file_stamp, user_cache_dir
from simpleclip.checkpoint import WEIGHTS
from simpleclip.data import ImageLoadError, load_rgb
from simpleclip.data.images import MAX_PIXELS, thumbnail
from simpleclip.model import CLIPModel
from simpleclip.search import ImageIndex
from simpleclip.train.run_dir import BEST, FINAL_MODEL
from simpleclip.zeroshot import TEMPLATE_SETS, classify

THUMBNAIL = 256  # gallery pictures are shrunk to at most this many pixels
MAX_UPLOAD_PIXELS = MAX_PIXELS  # width x height; a bigger upload is refused before decoding


def find_checkpoints(runs_dir: str | Path) -> list[str]:
    """Every saved model folder under ``runs_dir``: final ``model`` folders, then ``best``, rest."""
    folders = [p.parent for p in Path(runs_dir).rglob(WEIGHTS)]
    rank = {FINAL_MODEL: 0, BEST: 1}  # `simpleclip demo` writes model/; training best/, last/
    return [str(p) for p in sorted(folders, key=lambda p: (rank.get(p.name, 2), str(p)))]


def find_image_folders(data_dir: str | Path) -> list[str]:
    """The picture folders of the datasets in ``data_dir``: each ``*/Images``, sorted."""
    return sorted(str(p) for p in Path(data_dir).glob("*/Images") if p.is_dir())


class ClipApp:
    """The app's state (loaded models) and its two handlers.

    Only ``runs_dir``, ``data_dir``, the ``checkpoint`` and ``images`` given, and what they hold,
    may be opened (``self.access``); ``allow_any_path`` lifts that limit.

    Args:
        runs_dir: where to look for checkpoints.
        data_dir: where to look for picture folders.
        checkpoint: the checkpoint(s) chosen at start (default: the first one in ``runs_dir``).
        images: the picture folder(s) chosen at start (default: the first one in ``data_dir``).
        cache_dir: where search indexes are cached (default: ``search.default_cache_dir()``).
        allow_any_path: let the page open any folder or checkpoint this process can read.
        thumbnail_dir: where the gallery's thumbnails are written (default: the user cache's
            ``thumbnails/``; ``page.launch`` moves it into the folder Gradio serves).
    """

    def __init__(
        self,
        runs_dir: str | Path = "runs",
        data_dir: str | Path = "data",
        checkpoint: str | Path | Sequence[str | Path] | None = None,
        images: str | Path | Sequence[str | Path] | None = None,
        cache_dir: str | Path | None = None,
        allow_any_path: bool = False,
        thumbnail_dir: str | Path | None = None,
    ) -> None:
        self.runs_dir, self.data_dir, self.cache_dir = Path(runs_dir), Path(data_dir), cache_dir
        self.thumbnail_dir = Path(thumbnail_dir or user_cache_dir("thumbnails"))
        self.checkpoints = _with_first(checkpoint, find_checkpoints(runs_dir))
        self.folders = _with_first(images, find_image_folders(data_dir))
        self.access = AllowedPaths(  # what was found is allowed even through a symlink
            folders=[data_dir, *self.folders],
            checkpoints=[runs_dir, *self.checkpoints],
            any_path=allow_any_path,
        )
        self._models: dict[Path, CLIPModel] = {}
        self._lock = threading.Lock()  # Gradio runs handlers in threads: load each model once

    def model(self, checkpoint: str | Path | None) -> CLIPModel:
        """The model saved in ``checkpoint``, loaded once and kept.

        Raises:
            PathNotAllowed: ``checkpoint`` is outside the allowed ones.
        """
        if not checkpoint:
            raise ValueError(
                "No checkpoint chosen. Train one first with `simpleclip demo` (it writes "
                f"runs/demo/model), or pick a folder in {self.runs_dir}."
            )
        path = self.access.check_checkpoint(checkpoint)
        with self._lock:
            if path not in self._models:
                self._models[path] = CLIPModel.load(path)
            return self._models[path]

    def search(
        self,
        query: str,
        checkpoint: str | None,
        folder: str | None,
        top_k: int = 12,
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[list[tuple[str, str]], str]:
        """Tab 1: the ``top_k`` pictures of ``folder`` that best match ``query``.

        The first search over a folder encodes every picture (a minute for a thousand photos on
        a CPU); ``progress`` is then called after each batch with (pictures encoded, pictures to
        encode), so the page can show how far it is. Later searches reuse the cache.

        Returns:
            ``(gallery, message)``: (thumbnail file, caption) pairs, best first, and a
            Markdown line.

        Raises:
            PathNotAllowed: ``folder`` or ``checkpoint`` is outside the allowed ones.
        """
        if not query or not query.strip():
            return [], f"Type a description first, e.g. *{self.example_query(folder)}*."
        if not folder:
            return [], "Choose a folder of pictures first."
        resolved = self.access.check_folder(folder)
        try:
            model = self.model(checkpoint)
            index = ImageIndex.build(
                model, resolved, cache_dir=self.cache_dir, progress=progress or False
            )
            hits = index.search(query.strip(), top_k=int(top_k))
        except PathNotAllowed:
            raise
        except Exception as err:  # shown in the app; the server keeps running
            return [], f"**Cannot search {folder}.** {err}"
        shown = [hit for hit in hits if self.access.allows_folder(hit.path)]  # symlinked files
        gallery = [
            (str(self.thumbnail_file(hit.path)), f"{hit.score:+.3f}  {hit.path.name}")
            for hit in shown
        ]
        message = f"Best {len(shown)} of {len(index)} pictures in {folder}."
        if index.skipped:
            message += f" {len(index.skipped)} files skipped: not pictures, or unreadable."
        if len(shown) < len(hits):
            message += f" {len(hits) - len(shown)} not shown: they link outside the folder."
        return gallery, message

    def classify(
        self, upload: str | None, labels: str, checkpoint: str | None, templates: str
    ) -> tuple[Image.Image | None, dict[str, float], str]:
        """Tab 2: the five most likely labels (one per line in ``labels``) of an uploaded file.

        Returns:
            ``(picture, {label: probability}, message)``.

        Raises:
            PathNotAllowed: ``checkpoint`` is outside the allowed ones.
        """
        if not upload:
            return None, {}, "Upload a picture first."
        too_big = _too_many_pixels(upload)
        if too_big:
            return None, {}, too_big
        try:
            picture = load_rgb(upload)
        except (ImageLoadError, Image.DecompressionBombError):
            return (
                None,
                {},
                (
                    f"**{Path(upload).name} is not a picture I can read.** Upload an "
                    "image file: JPEG, PNG, WebP, BMP or GIF."
                ),
            )
        lines = (line.strip() for line in (labels or "").splitlines())
        names = list(dict.fromkeys(line for line in lines if line))  # no blanks, no repeats
        if len(names) < 2:
            return _enlarged(picture), {}, "Write at least two labels, one per line."
        try:
            model = self.model(checkpoint)
            top = classify(model, [picture], names, TEMPLATE_SETS[templates], top_k=5)[0]
        except PathNotAllowed:
            raise
        except Exception as err:  # shown in the app; the server keeps running
            return _enlarged(picture), {}, f"**Cannot classify.** {err}"
        best = top[0]
        message = f"Best label: **{best.label}** ({best.probability:.0%}) of {len(names)} labels."
        return _enlarged(picture), {p.label: p.probability for p in top}, message

    def thumbnail_file(self, picture: Path) -> Path:
        """The picture's thumbnail as a JPEG file in ``thumbnail_dir``, written once per version.

        Gradio serves files: given a PIL image it writes one for every answer, and two searches
        that showed the same picture at once wrote the same file together (3 of 30 concurrent
        API calls broke off). Here the name comes from the picture's path and stamp (a changed
        picture gets a new one), and the file is written under a temporary name and renamed
        into place, so a reader sees a whole thumbnail or none.
        """
        key = digest(str(picture.resolve()), *map(str, file_stamp(picture)))[:32]
        target = self.thumbnail_dir / f"{key}.jpg"
        if target.is_file():
            return target
        self.thumbnail_dir.mkdir(parents=True, exist_ok=True)
        fd, staging = tempfile.mkstemp(dir=self.thumbnail_dir, prefix=".", suffix=".jpg")
        try:
            with os.fdopen(fd, "wb") as file:
                thumbnail(picture, THUMBNAIL).save(file, "JPEG", quality=90)
            os.replace(staging, target)  # atomic: a concurrent writer's copy is the same picture
        except BaseException:
            Path(staging).unlink(missing_ok=True)
            raise
        return target

    def suggestions(self, folder: str | None) -> tuple[str, str]:
        """The labels and template set that suit ``folder`` (generic ones if it is not allowed)."""
        folder = folder if folder and self.access.allows_folder(folder) else None
        return "\n".join(default_labels(folder)), default_templates(folder)

    def example_query(self, folder: str | None) -> str:
        """A description that suits ``folder`` (a generic one if it is not allowed: its caption
        file is read only inside the allowed folders)."""
        return example_query(folder if folder and self.access.allows_folder(folder) else None)


def _with_first(chosen: str | Path | Sequence[str | Path] | None, found: list[str]) -> list[str]:
    """The choices for a dropdown: those given on the command line first, then the rest."""
    if chosen is None or isinstance(chosen, (str, Path)):
        chosen = [chosen] if chosen else []
    first = list(dict.fromkeys(str(c) for c in chosen))
    return first + [f for f in found if f not in first]


def _too_many_pixels(upload: str) -> str:
    """A message if the upload declares more than ``MAX_UPLOAD_PIXELS``; read from its header."""
    try:
        with Image.open(upload) as image:  # lazy: only the header is read
            width, height = image.size
    except Image.DecompressionBombError:  # PIL's own guard (over 2 x MAX_IMAGE_PIXELS)
        width, height = MAX_UPLOAD_PIXELS, 2
    except Exception:  # not a picture: load_rgb says so
        return ""
    if width * height <= MAX_UPLOAD_PIXELS:
        return ""
    return (
        f"**{Path(upload).name} is too large: {width} x {height} pixels.** Upload a picture "
        f"of at most {MAX_UPLOAD_PIXELS // 1_000_000} megapixels."
    )


def _enlarged(picture: Image.Image, at_least: int = 192) -> Image.Image:
    """Small pictures (the 64-pixel shapes) scaled up by a whole factor, to be seen."""
    factor = at_least // max(picture.size)
    if factor < 2:
        return picture
    return picture.resize((picture.width * factor, picture.height * factor), Image.NEAREST)
