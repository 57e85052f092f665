"""Execute a notebook's code cells top to bottom in this process, and print what it cost.

The GPU check (``gpu_check.py``, section ``gpu_notebooks``) runs the gpu-track notebooks on the
GPU machine, which has no Jupyter kernel and no internet to install one (its ~35 wheels would
not fit beside albumentations' in the 64 MiB the device tool carries). So this is
``jupyter nbconvert --to script`` followed by ``python``, done cell by cell: the cells share one
namespace as in a kernel, figures go to matplotlib's Agg backend, and when IPython is missing
``IPython.display`` is a stand-in whose ``display`` prints what it is given. A failing cell
stops the run with its number and source. The tests execute the notebooks with nbclient
(``tests/test_notebooks.py``, ``tests/test_course_notebooks.py``).

    python benchmarks/run_notebook_cells.py notebooks/06_training.ipynb

The last line printed is JSON: seconds per cell, in total, and the peak memory (CUDA's peak
allocation on a GPU, the process's peak resident memory on a CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import traceback
import types
from pathlib import Path


def code_cells(path: Path) -> list[str]:
    """The sources of the notebook's code cells, in order (nbformat 4's JSON)."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    return ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code"]


def display_stand_in() -> None:
    """An ``IPython.display`` that prints, for a Python without IPython."""
    try:
        import IPython.display  # noqa: F401
    except ImportError:
        module = types.ModuleType("IPython.display")

        def display(*objects: object, **_: object) -> None:
            for item in objects:
                print(item.to_string() if hasattr(item, "to_string") else repr(item))

        class Shown:  # SVG(...), Image(...), Markdown(...): kept, shown by their arguments
            def __init__(self, *args: object, **kwargs: object) -> None:
                self.args, self.kwargs = args, kwargs

            def __repr__(self) -> str:
                return f"<{type(self).__name__} {self.kwargs or self.args[:1]}>"

        module.display = display
        for name in ("SVG", "Image", "Markdown", "HTML"):
            setattr(module, name, type(name, (Shown,), {}))
        package = types.ModuleType("IPython")
        package.display = module
        # matplotlib asks a loaded IPython for its shell and its version: none, and a recent one
        package.get_ipython, package.version_info = lambda: None, (9, 0, 0)
        sys.modules.update({"IPython": package, "IPython.display": module})


def peak_memory_mb() -> tuple[float, str]:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20, "cuda_max_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process_peak_rss"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path)
    args = parser.parse_args(argv)
    os.environ.setdefault("MPLBACKEND", "Agg")
    display_stand_in()
    os.chdir(args.notebook.resolve().parent)  # a kernel starts in the notebook's folder
    namespace: dict[str, object] = {"__name__": "__main__"}
    seconds = []
    for number, source in enumerate(code_cells(args.notebook), 1):
        start = time.perf_counter()
        try:
            exec(compile(source, f"{args.notebook.name}, cell {number}", "exec"), namespace)
        except Exception:
            traceback.print_exc()
            print(f"[run_notebook_cells] cell {number} failed:\n{source}", file=sys.stderr)
            return 1
        seconds.append(round(time.perf_counter() - start, 1))
    peak, kind = peak_memory_mb()
    report = {"notebook": args.notebook.name, "cells": len(seconds), "cell_seconds": seconds}
    report.update(seconds=round(sum(seconds), 1), peak_memory_mb=round(peak, 1), memory=kind)
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
