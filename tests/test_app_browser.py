"""The app in a real browser: headless Chromium, driven by Playwright, against a local server.

Skipped (with the reason) only where Chromium or Playwright's Python package is missing:
``apt-get install chromium`` and ``pip install playwright`` (never ``playwright install``).
Screenshots go to pytest's tmp folder. To refresh ``docs/app_search.png`` and
``docs/app_classify.png`` with the demo model, run ``simpleclip demo`` in a folder DIR, then
``SIMPLECLIP_DOCS_SCREENSHOTS=DIR .venv/bin/python -m pytest tests/test_app_browser.py``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image

from simpleclip.app import ClipApp, launch
from simpleclip.config import load_config
from simpleclip.train import train

DOCS = Path(__file__).resolve().parents[1] / "docs"
TIMEOUT_MS = 30_000
# gradio's own pandas calls warn under pandas 3; nothing to do with this app
pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")


@pytest.fixture(scope="module")
def served(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    """``(url, dataset)``: the app on 127.0.0.1 at a free port, with a quickly trained model."""
    tmp = tmp_path_factory.mktemp("app")
    runs, root = tmp / "runs", synthetic_root
    if os.environ.get("SIMPLECLIP_DOCS_SCREENSHOTS"):  # where `simpleclip demo` ran, e.g. "."
        demo = Path(os.environ["SIMPLECLIP_DOCS_SCREENSHOTS"])
        runs, root = demo / "runs" / "demo", demo / "data" / "synthetic"
    else:
        _train_tiny(root, runs)
    checkpoint = runs / "model" if (runs / "model").is_dir() else None  # the demo's final model
    app = ClipApp(runs, root.parent, checkpoint, root / "Images", cache_dir=tmp / "cache")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    blocks = launch(app, host="127.0.0.1", port=port, block=False)
    yield f"http://127.0.0.1:{port}/", root
    blocks.close()


def _train_tiny(root: Path, runs: Path) -> None:
    config = load_config(
        "synthetic_tiny",
        [
            f"data.root={root}",
            "data.synthetic_images=0",
            f"train.out_dir={runs / 'tiny'}",
            "train.batch_size=32",
            "train.epochs=3",
            "train.warmup_steps=2",
            "data.pairs=all",
            "head.embed_dim=32",
            "train.threads=1",
        ],
    )
    threads = torch.get_num_threads()
    try:
        train(config, progress=False)
    finally:
        torch.set_num_threads(threads)  # train() sets it for the whole process


def test_search_and_classify_in_a_browser(browser, served: tuple, tmp_path: Path) -> None:
    url, root = served
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    elsewhere = []  # the app must work offline: no request may leave 127.0.0.1
    page.on(
        "request",
        lambda r: (
            elsewhere.append(r.url)
            if r.url.startswith(("http:", "https:", "ws:")) and "//127.0.0.1:" not in r.url
            else None
        ),
    )
    page.goto(url)

    page.locator("#search-button").click()  # an empty query
    page.get_by_text("Type a description first").wait_for(timeout=TIMEOUT_MS)
    page.locator("#query textarea").fill("a big red circle")
    page.locator("#search-button").click()
    page.get_by_text("Best 12 of").wait_for(timeout=TIMEOUT_MS)
    assert page.locator("#gallery img").count() == 12
    page.screenshot(path=tmp_path / "search.png", animations="disabled")

    page.get_by_role("tab", name="Classify", exact=True).first.click()
    picture = _a_single_shape_picture(root)
    page.locator("#upload input[type=file]").set_input_files(picture)
    page.get_by_text("Best label:").wait_for(timeout=TIMEOUT_MS)
    labels = page.locator("#prediction [data-testid$='-confidence-set']")
    assert labels.count() == 5
    page.screenshot(path=tmp_path / "classify.png", animations="disabled")

    text = tmp_path / "notes.txt"
    text.write_text("this is not a picture")
    page.locator("#upload").get_by_label("Clear").first.click()
    page.locator("#upload input[type=file]").set_input_files(text)
    page.get_by_text("notes.txt is not a picture I can read.").wait_for(timeout=TIMEOUT_MS)
    assert labels.count() == 0
    page.screenshot(path=tmp_path / "not_a_picture.png", animations="disabled")
    page.close()
    assert not elsewhere, f"the app asked the internet for {elsewhere[:3]}"
    if os.environ.get("SIMPLECLIP_DOCS_SCREENSHOTS"):
        for shot in ("search", "classify"):  # 256 colours: a third of the bytes, same look
            with Image.open(tmp_path / f"{shot}.png") as image:
                image.convert("RGB").quantize(256).save(DOCS / f"app_{shot}.png", optimize=True)


def test_a_folder_outside_is_refused_in_the_page(browser, served: tuple, tmp_path: Path) -> None:
    url, root = served
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(url)
    # `..` out of the data folder; a path no choice contains, so Enter keeps it as typed
    page.locator("#folder input").fill(f"{root.parent}/..")
    page.locator("#folder input").press("Enter")
    page.locator("#query textarea").fill("a big red circle")
    page.locator("#search-button").click()
    page.get_by_text("is outside the folders this server was started with").first.wait_for(
        timeout=TIMEOUT_MS
    )
    assert page.locator("#gallery img").count() == 0
    page.screenshot(path=tmp_path / "refused.png", animations="disabled")
    page.close()


def _a_single_shape_picture(root: Path) -> Path:
    """A test picture with one shape, the held-out pair if there is one."""
    import pandas as pd

    scenes = pd.read_csv(root / "scenes.csv")
    single = scenes[(scenes["n_shapes"] == 1) & (scenes["split"] == "test")]
    held = single[(single["color1"] == "purple") & (single["kind1"] == "triangle")]
    return root / "Images" / (held if len(held) else single)["image"].iloc[0]
