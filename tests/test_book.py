"""The course as a book: docs/build_book.sh builds it in the smoke track, and every chapter
opens in headless Chromium, served from a plain static server.

Skipped (with the reason) where Chromium, Playwright or the docs requirements
(``pip install -r requirements-docs.txt``) are missing. The chapters are the smoke notebooks the
suite executes once for ``test_notebooks.py`` (``BOOK_EXECUTED``); executing them is tested by
the failing-cell test below, which builds through nbconvert.
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
TIMEOUT_MS = 30_000
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("smoke_notebooks")]


def _build(tmp: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHON": sys.executable, "SIMPLECLIP_TRACK": "smoke", **env}
    environ.update(BOOK_OUT=str(tmp / "book"), BOOK_WORK=str(tmp / "src"))
    script = ROOT / "docs" / "build_book.sh"
    return subprocess.run([script], env=environ, capture_output=True, text=True, timeout=1800)


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory, browser, smoke_notebooks: Path) -> Path:
    """The book, rendered from the smoke notebooks the suite executed once (``conftest.py``);
    ``browser`` first, so a machine without Chromium skips before building anything."""
    for module in ("mkdocs", "mkdocs_jupyter", "material"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} missing: pip install -r requirements-docs.txt")
    tmp = tmp_path_factory.mktemp("book")
    done = _build(tmp, BOOK_EXECUTED=str(smoke_notebooks))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return tmp / "book"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # no access log in the test output
        pass


@pytest.fixture(scope="module")
def url(book: Path) -> Iterator[str]:
    """The built folder on 127.0.0.1 at a free port, as any static server would serve it."""
    handler = functools.partial(_QuietHandler, directory=str(book))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_every_chapter_loads_with_its_title_and_figures_and_next_links_reach_all(
    book: Path, url: str, browser
) -> None:
    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"{page.url}: {m.text}") if m.type == "error" else 0)
    page.on("pageerror", lambda err: errors.append(f"{page.url}: {err}"))
    page.goto(url, timeout=TIMEOUT_MS)
    assert "CLIP" in page.locator("h1").first.inner_text()
    visited = []
    while (link := page.locator("a.md-footer__link--next")).count():
        link.first.click()
        page.wait_for_load_state("load", timeout=TIMEOUT_MS)
        visited.append(page.url.rsplit("/", 1)[-1])
        title = page.locator("h1").first.inner_text()
        assert title.startswith(visited[-1][:2]), (visited[-1], title)  # "07 · Evaluation..."
        images = page.locator("article img")
        for i in range(images.count()):
            image = images.nth(i)
            image.scroll_into_view_if_needed(timeout=TIMEOUT_MS)
            assert image.is_visible(), (visited[-1], i)
            assert image.evaluate("img => img.complete && img.naturalWidth > 0"), (visited[-1], i)
    assert visited == [f"{p.stem}.html" for p in NOTEBOOKS]  # every chapter, in order
    assert not errors, errors
    figures = sum(p.read_text().count("data:image/png") for p in book.glob("0*.html"))
    assert figures >= len(NOTEBOOKS)  # the executed outputs are there, embedded in the pages


def test_a_failing_cell_fails_the_build(tmp_path: Path) -> None:
    import nbformat

    if importlib.util.find_spec("mkdocs_jupyter") is None:
        pytest.skip("mkdocs-jupyter missing: pip install -r requirements-docs.txt")
    broken = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 / 0")])
    nbformat.write(broken, tmp_path / "broken.ipynb")
    done = _build(tmp_path, BOOK_NOTEBOOKS=str(tmp_path / "broken.ipynb"))
    assert done.returncode != 0 and "ZeroDivisionError" in done.stdout + done.stderr
    assert not (tmp_path / "book" / "index.html").exists()
