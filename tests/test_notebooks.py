"""Every notebook runs top to bottom in smoke mode, and is stored without outputs.

A notebook that does not run is a failing test: new notebooks are picked up automatically.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from notebook_outputs import output_problems

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def test_notebooks_are_the_course_table_and_each_has_a_parameters_cell() -> None:
    readme = (NOTEBOOK_DIR.parent / "README.md").read_text()
    listed = set(re.findall(r"^\|[^|\n]*\| `(\d\d_\w+)` \|", readme, re.M))
    assert len(listed) >= 9, "README's course table lists no notebooks"
    assert {p.stem for p in NOTEBOOKS} == listed  # no notebook left out of the table, none missing
    for path in NOTEBOOKS:  # the setup cell the smoke run and papermill-style tools rely on
        cells = nbformat.read(path, as_version=4).cells
        tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1 and tagged[0].cell_type == "code", path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stored_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    dirty = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count"))
    ]
    assert not dirty, f"{path.name}: cells {dirty} hold outputs; clear them before committing"


@pytest.mark.notebook
@pytest.mark.xdist_group("smoke_notebooks")  # one pytest-xdist worker executes them, once
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_smoke_mode(path: Path, smoke_notebooks: Path) -> None:
    error = smoke_notebooks / f"{path.stem}.error"
    assert not error.exists(), error.read_text()  # nbclient's message names the failing cell
    nb = nbformat.read(smoke_notebooks / path.name, as_version=4)
    assert sum(bool(cell.get("outputs")) for cell in nb.cells) >= 3, "it ran, with outputs"
    problems = output_problems(nb, path.stem)
    assert not problems, "\n".join(problems)


def test_output_checks_catch_what_a_learner_should_not_read(tmp_path: Path) -> None:
    import base64
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def png(width_inches: float) -> str:
        fig = plt.figure(figsize=(width_inches, 1), dpi=100)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        plt.close(fig)
        return base64.b64encode(buffer.getvalue()).decode()

    def cell(*outputs: dict) -> dict:
        return {"cell_type": "code", "source": "", "outputs": list(outputs)}

    def stream(name: str, text: str) -> dict:
        return {"output_type": "stream", "name": name, "text": text}

    here = str(tmp_path / "photos")
    bad = {
        "cells": [
            cell(stream("stdout", f"data: {here}")),  # the first code cell may name paths
            cell({"output_type": "display_data", "data": {"image/png": png(12)}}),
            cell(stream("stdout", f"saved to {here}/grid.png")),
            cell(stream("stderr", "epoch 1/2:   0%|          | 0/29 [00:00<?, ?it/s]")),
            cell(stream("stderr", "x.py:3: UserWarning: 12 captions dropped\n")),
            cell({"output_type": "execute_result", "data": {"text/plain": "<Styler at 0x7f3a>"}}),
        ]
    }
    problems = output_problems(bad, "nb")
    assert [p.split(":")[0] for p in problems] == [f"nb cell {i}" for i in range(2, 7)], problems
    assert "1200 px wide" in problems[0] and here.startswith(problems[1].split(": ")[-1])
    good = {
        "cells": [
            cell(stream("stdout", f"data: {here}")),
            cell({"output_type": "display_data", "data": {"image/png": png(11)}}),
            cell(stream("stdout", "t2i R@1/5/10 = 25.4/60.6/75.7, 14 it/s; runs/course-cpu")),
            cell(
                stream("stderr", "epoch 1/2:   0%|  | 0/29\r"),
                stream("stderr", "\rep 1/2: 100%|#| 29/29\n"),
            ),
        ]
    }
    assert output_problems(good, "nb") == []
