"""A small web app to play with a trained CLIP: search pictures with words, label a picture.

Tab "Search" ranks the pictures of a folder against a typed description (``simpleclip.search``);
tab "Classify" gives the five best labels of an uploaded picture out of an editable list
(``simpleclip.zeroshot``). The checkpoint and the folder are chosen in the app, from ``runs/``
and ``data/``. Handlers return a clear message instead of raising, so a bad input never stops
the server; ``ClipApp`` holds them, testable without a browser. The server, not the page,
decides which folders and checkpoints may be opened (``simpleclip.app_access``): a path outside
them raises ``PathNotAllowed``, shown in the page as an error and returned as one by the API.
Gradio serves it on 127.0.0.1, offline: analytics off, no fonts or scripts from the internet;
its file route serves only its own temporary folder (thumbnails, uploads), and uploads are
limited in bytes and pixels. Started by ``simpleclip app``; what it exposes: ``docs/app.md``;
taught in ``notebooks/08_zero_shot_and_search.ipynb``.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from simpleclip.app_access import AllowedPaths, PathNotAllowed, check_exposure
from simpleclip.checkpoint import WEIGHTS
from simpleclip.data import ImageLoadError, load_rgb
from simpleclip.data.images import MAX_PIXELS
from simpleclip.data.synthetic import COLORS, SHAPES
from simpleclip.model import CLIPModel
from simpleclip.search import ImageIndex
from simpleclip.zeroshot import TEMPLATE_SETS, classify

SYNTHETIC_LABELS = [f"{color} {kind}" for color in COLORS for kind in SHAPES]
GENERIC_LABELS = [
    "dog",
    "cat",
    "horse",
    "bird",
    "child",
    "man",
    "woman",
    "group of people",
    "bicycle",
    "car",
    "boat",
    "ball",
    "beach",
    "snow",
    "water",
    "grass",
    "street",
    "mountain",
]
THUMBNAIL = 256  # gallery pictures are shrunk to at most this many pixels
MAX_UPLOAD_BYTES = 20 * 1024**2  # Gradio refuses larger uploads before they reach a handler
MAX_UPLOAD_PIXELS = MAX_PIXELS  # width x height; a bigger upload is refused before decoding


def find_checkpoints(runs_dir: str | Path) -> list[str]:
    """Every saved model folder under ``runs_dir``: final ``model`` folders, then ``best``, rest."""
    folders = [p.parent for p in Path(runs_dir).rglob(WEIGHTS)]
    rank = {"model": 0, "best": 1}  # `simpleclip demo` writes model/, training best/ and last/
    return [str(p) for p in sorted(folders, key=lambda p: (rank.get(p.name, 2), str(p)))]


def find_image_folders(data_dir: str | Path) -> list[str]:
    """The picture folders of the datasets in ``data_dir``: each ``*/Images``, sorted."""
    return sorted(str(p) for p in Path(data_dir).glob("*/Images") if p.is_dir())


def is_synthetic(folder: str | Path) -> bool:
    """True for the built-in shapes set (its ``synthetic.json`` is beside ``Images/``)."""
    folder = Path(folder)
    return (folder / "synthetic.json").is_file() or (folder.parent / "synthetic.json").is_file()


def default_labels(folder: str | Path | None) -> list[str]:
    """The 30 colour-shape names for the synthetic set, otherwise a generic everyday list."""
    return SYNTHETIC_LABELS if folder and is_synthetic(folder) else GENERIC_LABELS


def default_templates(folder: str | Path | None) -> str:
    """The name of the template set in ``TEMPLATE_SETS`` that suits the folder."""
    return "shapes ensemble" if folder and is_synthetic(folder) else "clip ensemble"


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
    """

    def __init__(
        self,
        runs_dir: str | Path = "runs",
        data_dir: str | Path = "data",
        checkpoint: str | Path | Sequence[str | Path] | None = None,
        images: str | Path | Sequence[str | Path] | None = None,
        cache_dir: str | Path | None = None,
        allow_any_path: bool = False,
    ) -> None:
        self.runs_dir, self.data_dir, self.cache_dir = Path(runs_dir), Path(data_dir), cache_dir
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
        self, query: str, checkpoint: str | None, folder: str | None, top_k: int = 12
    ) -> tuple[list[tuple[Image.Image, str]], str]:
        """Tab 1: the ``top_k`` pictures of ``folder`` that best match ``query``.

        Returns:
            ``(gallery, message)``: (thumbnail, caption) pairs, best first, and a Markdown line.

        Raises:
            PathNotAllowed: ``folder`` or ``checkpoint`` is outside the allowed ones.
        """
        if not query or not query.strip():
            return [], "Type a description first, e.g. *a big red circle on the left*."
        if not folder:
            return [], "Choose a folder of pictures first."
        resolved = self.access.check_folder(folder)
        try:
            index = ImageIndex.build(
                self.model(checkpoint), resolved, cache_dir=self.cache_dir, progress=False
            )
            hits = index.search(query.strip(), top_k=int(top_k))
        except PathNotAllowed:
            raise
        except Exception as err:  # shown in the app; the server keeps running
            return [], f"**Cannot search {folder}.** {err}"
        shown = [hit for hit in hits if self.access.allows_folder(hit.path)]  # symlinked files
        gallery = [(_thumbnail(hit.path), f"{hit.score:+.3f}  {hit.path.name}") for hit in shown]
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

    def suggestions(self, folder: str | None) -> tuple[str, str]:
        """The labels and template set that suit ``folder`` (generic ones if it is not allowed)."""
        folder = folder if folder and self.access.allows_folder(folder) else None
        return "\n".join(default_labels(folder)), default_templates(folder)


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


def _thumbnail(path: Path) -> Image.Image:
    picture = load_rgb(path)
    picture.thumbnail((THUMBNAIL, THUMBNAIL))  # keeps the aspect ratio
    return picture


def build_blocks(app: ClipApp) -> Any:
    """The Gradio page: a checkpoint and a folder chooser above two tabs."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # read when gradio is imported
    import gradio as gr

    with gr.Blocks(title="simpleclip", analytics_enabled=False) as blocks:
        gr.Markdown("## simpleclip: search pictures with words, label a picture")
        with gr.Row():
            checkpoint = gr.Dropdown(
                app.checkpoints,
                value=_first(app.checkpoints),
                label="Checkpoint",
                allow_custom_value=True,
                elem_id="checkpoint",
            )
            folder = gr.Dropdown(
                app.folders,
                value=_first(app.folders),
                label="Picture folder",
                allow_custom_value=True,
                elem_id="folder",
            )
        with gr.Tab("Search", elem_id="tab-search"):
            _search_tab(gr, app, checkpoint, folder)
        with gr.Tab("Classify", elem_id="tab-classify"):
            _classify_tab(gr, app, checkpoint, folder)
    return blocks


def _first(choices: list[str]) -> str | None:
    return choices[0] if choices else None


def _search_tab(gr: Any, app: ClipApp, checkpoint: Any, folder: Any) -> None:
    with gr.Row():
        query = gr.Textbox(
            label="Description",
            placeholder="a big red circle on the left",
            elem_id="query",
            scale=4,
        )
        top_k = gr.Slider(1, 48, value=12, step=1, label="Pictures", scale=1)
    button = gr.Button("Search", variant="primary", elem_id="search-button")
    status = gr.Markdown(elem_id="search-status")
    gallery = gr.Gallery(label="Best matches", columns=6, elem_id="gallery")
    inputs, outputs = [query, checkpoint, folder, top_k], [gallery, status]
    on_search = _refusals_as_errors(gr, app.search)
    button.click(on_search, inputs, outputs, api_name="search")
    query.submit(on_search, inputs, outputs)


def _classify_tab(gr: Any, app: ClipApp, checkpoint: Any, folder: Any) -> None:
    with gr.Row():
        with gr.Column():
            upload = gr.File(label="Picture to classify", type="filepath", elem_id="upload")
            labels = gr.Textbox(
                "\n".join(default_labels(folder.value)),
                lines=8,
                max_lines=12,
                label="Labels, one per line",
                elem_id="labels",
            )
            templates = gr.Dropdown(
                list(TEMPLATE_SETS),
                value=default_templates(folder.value),
                label="Prompt templates",
                elem_id="templates",
            )
            button = gr.Button("Classify", variant="primary", elem_id="classify-button")
        with gr.Column():
            status = gr.Markdown(elem_id="classify-status")
            preview = gr.Image(label="Picture", interactive=False, height=200, elem_id="preview")
            prediction = gr.Label(num_top_classes=5, label="Top 5 labels", elem_id="prediction")
    inputs, outputs = [upload, labels, checkpoint, templates], [preview, prediction, status]
    on_classify = _refusals_as_errors(gr, app.classify)
    button.click(on_classify, inputs, outputs, api_name="classify")
    upload.upload(on_classify, inputs, outputs)
    folder.change(app.suggestions, folder, [labels, templates])


def _refusals_as_errors(gr: Any, handler: Callable) -> Callable:
    """``handler``, with a refused path turned into ``gr.Error``: a red box in the page and an
    error for API clients (``gradio_client`` raises it), where a message would look like a result.
    """

    @functools.wraps(handler)
    def refusing(*args: Any) -> Any:
        try:
            return handler(*args)
        except PathNotAllowed as err:
            raise gr.Error(str(err), title="Not allowed") from err

    return refusing


def launch(
    app: ClipApp,
    host: str = "127.0.0.1",
    port: int = 7860,
    block: bool = True,
    i_know_this_exposes_files: bool = False,
) -> Any:
    """Serve the app at http://host:port (local only by default); returns the Gradio Blocks.

    With ``block=False`` the server runs in a thread and this returns at once (tests, notebooks);
    stop it with ``blocks.close()``. Gradio's file route serves only its own temporary folder
    (thumbnails, uploads): the allowed folders and checkpoints are blocked there too.

    Raises:
        ValueError: ``app`` allows any path and ``host`` is a network address, without
            ``i_know_this_exposes_files``.
    """
    check_exposure(host, app.access.any_path, i_know_this_exposes_files)
    blocks = build_blocks(app)
    blocks.launch(
        server_name=host,
        server_port=port,
        share=False,
        inbrowser=False,
        prevent_thread_lock=not block,
        quiet=not block,
        allowed_paths=[_gradio_temp_dir()],  # already served; a non-empty list ignores the env
        blocked_paths=_blocked_paths(app.access),
        max_file_size=MAX_UPLOAD_BYTES,
    )
    return blocks


def _gradio_temp_dir() -> str:
    """Where Gradio writes uploads and the thumbnails it sends (``GRADIO_TEMP_DIR``)."""
    from gradio.utils import get_upload_folder

    return str(Path(get_upload_folder()).resolve())


def _blocked_paths(access: AllowedPaths) -> list[str]:
    """The allowed folders and checkpoints: the page never needs them from the file route."""
    temp = Path(_gradio_temp_dir())
    roots = (*access.folders, *access.checkpoints)
    return [str(p) for p in roots if not temp.is_relative_to(p)]  # never block Gradio's own
