"""What an executed notebook may not show a learner: the checks the notebook tests share.

A notebook is read with its outputs (STYLE.md, "Figures and outputs a learner can read"), in
JupyterLab, on GitHub and in the course book, so a stored output must read well without a live
kernel or widget state:

- a figure at most 1,100 px wide (a notebook column at 100 dpi);
- no absolute path after the first code cell (a path names the machine, not the course);
- no progress bar stuck at "0%|" (a widget placeholder, or a text bar that never finished);
- nothing on stderr but progress bars: no warning or library log line (silence it at the
  source, or explain it in the text and silence it there);
- no ``<... at 0x...>`` object repr where a table should be (a pandas Styler in a text view).
"""

from __future__ import annotations

import base64
import re
import struct
from pathlib import Path

MAX_FIGURE_WIDTH = 1100
# Jupyter's own backend, so executed notebooks store their figures as PNGs to be measured (the
# tests' MPLBACKEND=Agg would leave a kernel drawing nothing at all).
INLINE = "module://matplotlib_inline.backend_inline"
STUCK_BAR = re.compile(r"(?<![\d.])0%\|")
PROGRESS_LINE = re.compile(r"\d+%\|")  # tqdm's text bar: "epoch 1/10: 100%|####| 29/29 [...]"
OBJECT_REPR = re.compile(r"<[\w.]+ (object )?at 0x[0-9a-fA-F]+>")
# An absolute path: "/" not preceded by a word character, then two or more components.
ABSOLUTE_PATH = re.compile(r"(?<![\w.~/:@%<-])/([\w.+-]+)/[\w.+-]+")


def png_width(data: str) -> int:
    """Width in pixels of a base64 PNG, read from its IHDR header."""
    header = base64.b64decode(data[:64])
    return struct.unpack(">I", header[16:20])[0]


def as_displayed(stream_text: str) -> str:
    """A stream as Jupyter displays it: on each line, only what follows the last carriage
    return (a text progress bar redraws itself with "\\r")."""
    lines = []
    for line in stream_text.split("\n"):
        parts = line.split("\r")
        lines.append(next((p for p in reversed(parts) if p.strip()), ""))
    return "\n".join(lines)


def absolute_paths(text: str) -> list[str]:
    """Absolute paths in ``text`` whose first folder exists on this machine (``/work/...``,
    ``/root/...``, ``/tmp/...``), so "R@1/5/10" or "t2i/i2t" are not taken for paths."""
    found = []
    for match in ABSOLUTE_PATH.finditer(text):
        top = Path("/") / match.group(1)
        if top.is_dir():
            found.append(match.group(0))
    return found


def _joined(text: str | list[str]) -> str:
    return "".join(text) if isinstance(text, list) else text  # JSON on disk may split lines


def output_texts(output: dict) -> list[tuple[str, str]]:
    """(kind, text) for each text an output shows: a stream, a plain-text view, an error."""
    kind = output.get("output_type")
    if kind == "stream":
        return [(output.get("name", "stdout"), as_displayed(_joined(output.get("text", ""))))]
    if kind in ("display_data", "execute_result"):
        return [("text/plain", _joined(output.get("data", {}).get("text/plain", "")))]
    if kind == "error":
        return [("error", "\n".join(output.get("traceback", [])))]
    return []


def coalesced(outputs: list[dict]) -> list[dict]:
    """Outputs as Jupyter shows them: consecutive pieces of one stream joined into one."""
    merged: list[dict] = []
    for output in outputs:
        previous = merged[-1] if merged else {}
        same_stream = output.get("output_type") == previous.get("output_type") == "stream"
        if same_stream and output.get("name") == previous.get("name"):
            previous["text"] += _joined(output.get("text", ""))
        elif output.get("output_type") == "stream":
            merged.append({**output, "text": _joined(output.get("text", ""))})
        else:
            merged.append(output)
    return merged


def output_problems(nb: dict, name: str = "notebook") -> list[str]:
    """Every problem of the outputs of an executed notebook (``nbformat`` node or plain dict),
    one line each naming the notebook and the cell (counted from 1, markdown included)."""
    problems: list[str] = []
    first_code = True
    for number, cell in enumerate(nb["cells"], 1):
        if cell["cell_type"] != "code":
            continue
        where = f"{name} cell {number}"
        for output in coalesced(cell.get("outputs", [])):
            png = _joined(output.get("data", {}).get("image/png", ""))
            if png and (width := png_width(png)) > MAX_FIGURE_WIDTH:
                problems.append(f"{where}: a figure {width} px wide (at most {MAX_FIGURE_WIDTH})")
            for kind, text in output_texts(output):
                if not first_code and (paths := absolute_paths(text)):
                    problems.append(f"{where}: absolute path in {kind}: {paths[0]}")
                if STUCK_BAR.search(text):
                    problems.append(f"{where}: a progress bar at 0% in {kind}")
                said = [x for x in text.splitlines() if x.strip() and not PROGRESS_LINE.search(x)]
                if kind == "stderr" and said:
                    problems.append(f"{where}: a warning on stderr: {said[0].strip()[:160]}")
                if OBJECT_REPR.search(text):
                    problems.append(
                        f"{where}: an object repr in {kind}: {OBJECT_REPR.search(text)[0]}"
                    )
        first_code = False
    return problems


def execute_smoke_notebooks(notebooks: list[Path], out: Path) -> None:
    """Execute each notebook in the smoke track, as Jupyter would, into ``out``.

    Writes ``out/<name>.ipynb`` (the executed copy, outputs included) or, when a cell raised,
    ``out/<name>.error`` (nbclient's message naming the cell), then ``out/done``. The notebooks
    run in order in one process because 07 and 08 read the course model that 06 trained. The
    smoke tests and the book both read these copies, so each notebook runs once per test run.
    """
    import os

    import nbformat
    from nbclient import NotebookClient

    smoke_env = {"SIMPLECLIP_SMOKE": "1", "MPLBACKEND": INLINE, "HF_HUB_OFFLINE": "1"}
    saved = {name: os.environ.get(name) for name in smoke_env}
    os.environ.update(smoke_env)  # the kernels inherit it
    out.mkdir(parents=True, exist_ok=True)
    try:
        for path in notebooks:
            nb = nbformat.read(path, as_version=4)
            client = NotebookClient(
                nb,
                timeout=600,
                kernel_name="python3",
                resources={"metadata": {"path": str(path.parent)}},
                coalesce_streams=True,  # stored as Jupyter shows them: a bar's last state
            )
            try:
                client.execute()
            except Exception as err:  # CellExecutionError, a dead kernel, a timeout
                (out / f"{path.stem}.error").write_text(f"{type(err).__name__}: {err}")
                continue
            nbformat.write(nb, out / path.name)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    (out / "done").touch()
