"""The app's web page: Gradio Blocks that wire ``ClipApp``'s handlers to a checkpoint chooser,
a folder chooser and two tabs (Search, Classify), and the server that serves them.

Gradio serves it on 127.0.0.1, offline: analytics off, no fonts or scripts from the internet.
Its file route serves only Gradio's own temporary folder (thumbnails, uploads); the allowed
picture folders and checkpoints are blocked there, and uploads are limited in bytes and pixels.
A refused path (``PathNotAllowed``) becomes ``gr.Error``: a red box in the page and an error for
API clients. Started by ``simpleclip app``; what it exposes: ``docs/app.md``; taught in
``notebooks/08_zero_shot_and_search.ipynb``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from simpleclip.app.access import AllowedPaths, PathNotAllowed, check_exposure
from simpleclip.app.handlers import ClipApp
from simpleclip.zeroshot import TEMPLATE_SETS

MAX_UPLOAD_BYTES = 20 * 1024**2  # Gradio refuses larger uploads before they reach a handler


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
            placeholder=app.example_query(folder.value),  # follows the folder, below
            elem_id="query",
            scale=4,
        )
        top_k = gr.Slider(1, 48, value=12, step=1, label="Pictures", scale=1)
    button = gr.Button("Search", variant="primary", elem_id="search-button")
    status = gr.Markdown(elem_id="search-status")
    gallery = gr.Gallery(label="Best matches", columns=6, elem_id="gallery")
    inputs, outputs = [query, checkpoint, folder, top_k], [gallery, status]

    def search(
        query: str,
        checkpoint: str | None,
        folder: str | None,
        top_k: int,
        progress: Any = gr.Progress(),  # noqa: B008 (how Gradio asks for its progress bar)
    ) -> tuple[list, str]:
        # Gradio fills in `progress` (it is not an input): the first search of a folder
        # shows "pictures encoded out of N" instead of a silent spinner.
        def report(done: int, total: int) -> None:
            progress((done, total), desc="Encoding the folder's pictures", unit="pictures")

        return app.search(query, checkpoint, folder, top_k, progress=report)

    on_search = _refusals_as_errors(gr, search)

    def suggest_query(folder: str | None) -> Any:
        return gr.Textbox(placeholder=app.example_query(folder))

    folder.change(suggest_query, folder, query)
    button.click(on_search, inputs, outputs, api_name="search")
    query.submit(on_search, inputs, outputs)


def _classify_tab(gr: Any, app: ClipApp, checkpoint: Any, folder: Any) -> None:
    suggested_labels, suggested_templates = app.suggestions(folder.value)  # then follow it
    with gr.Row():
        with gr.Column():
            upload = gr.File(label="Picture to classify", type="filepath", elem_id="upload")
            labels = gr.Textbox(
                suggested_labels,
                lines=8,
                max_lines=12,
                label="Labels, one per line",
                elem_id="labels",
            )
            templates = gr.Dropdown(
                list(TEMPLATE_SETS),
                value=suggested_templates,
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
    (thumbnails, uploads): the allowed folders and checkpoints are blocked there too. The app's
    thumbnails are written there (``app.thumbnail_dir``), so Gradio serves them as they are.

    Raises:
        ValueError: ``app`` allows any path and ``host`` is a network address, without
            ``i_know_this_exposes_files``.
    """
    check_exposure(host, app.access.any_path, i_know_this_exposes_files)
    app.thumbnail_dir = Path(_gradio_temp_dir()) / "simpleclip-thumbnails"
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
