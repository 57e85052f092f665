"""A run folder belongs to one run: a new run never silently destroys an earlier one.

``claim_run_dir`` is held for the whole of ``train``. It refuses to start in a folder that
already holds a run unless told what to do with it: continue it (``resume``) or replace it
(``overwrite``, whose old run files are removed only once the folder is claimed). Two processes
training into one folder at once would interleave their checkpoints, so a lock file
(``train.lock``, holding the PID and host) refuses the second one; a run that crashed or was
killed leaves its lock behind, and a lock whose process is dead is taken over. Only run files
(``RUN_FILES``) are ever removed. Under torchrun only rank 0 claims. Tested in
``tests/test_run_dir.py``.

The names of a run folder's files are defined here, once: ``train`` writes ``BEST``, ``LAST``,
``HISTORY`` and ``RUN_CONFIG``; ``simpleclip demo`` adds ``FINAL_MODEL``, ``TEST_METRICS`` and
two pictures; the course, the app and the CLI read them by these names.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from simpleclip.checkpoint import CONFIG, draft_of, previous_of
from simpleclip.paths import shown_path
from simpleclip.train.checkpoint import disk_full_guard

LOCK = "train.lock"
# What `train` writes in a run folder...
BEST = "best"  # the checkpoint with the best dev score: the run's result
LAST = "last"  # the latest checkpoint, with the optimizer and RNG state to resume from
HISTORY = "metrics.jsonl"  # one JSON record per epoch: losses, dev recalls, temperature
RUN_CONFIG = CONFIG  # the resolved config of the run
DASHBOARDS = ("tensorboard", "wandb")  # train.report_to's folders
# ...and what `simpleclip demo` adds.
FINAL_MODEL = "model"  # the trained model, reloadable with CLIPModel.load
TEST_METRICS = "metrics.json"  # Recall@K on the test split
CURVES_FIGURE = "training_curves.png"
SIMILARITY_FIGURE = "similarity_matrix.png"

CHECKPOINTS = (BEST, LAST, FINAL_MODEL)  # written by swapping folders (atomic_directory)
RUN_FILES = (
    *CHECKPOINTS,
    *(previous_of(Path(name)).name for name in CHECKPOINTS),  # left by an interrupted swap
    HISTORY,
    RUN_CONFIG,
    *DASHBOARDS,
    TEST_METRICS,
    CURVES_FIGURE,
    SIMILARITY_FIGURE,
)
SWAP_FOLDERS = tuple(draft_of(Path(name), "*").name for name in CHECKPOINTS)  # a kill's drafts


class RunDirBusy(RuntimeError):
    """Another live process is training into the same folder."""


@contextmanager
def claim_run_dir(
    out_dir: str | Path, resume: bool = False, overwrite: bool = False, main: bool = True
) -> Iterator[Path]:
    """Hold ``out_dir`` for one run; the lock is released when the block ends, even on error.

    Args:
        out_dir: the run folder (``train.out_dir``); created if missing.
        resume: the run continues the one in ``out_dir``: its files are kept.
        overwrite: the run replaces the one in ``out_dir``: its files are removed, once claimed.
        main: False on torchrun ranks other than 0, which neither lock nor check.

    Raises:
        FileExistsError: ``out_dir`` holds a run, and neither ``resume`` nor ``overwrite``.
        RunDirBusy: a live process holds the lock of ``out_dir``.
        ValueError: both ``resume`` and ``overwrite``.
    """
    out_dir = Path(out_dir)
    if resume and overwrite:
        raise ValueError(
            "Choose --resume (continue the run) or --overwrite (replace it), not both."
        )
    if not main:
        yield out_dir
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    lock = _take_lock(out_dir / LOCK)
    try:
        found = run_files(out_dir)
        names = ", ".join(p.name for p in found)
        if _holds_results(found) and not (resume or overwrite):
            raise FileExistsError(
                f"{out_dir} already holds a run ({names}); not touched. Continue it with "
                "--resume, replace it with --overwrite (in Python: train(config, resume=True) "
                "or train(config, overwrite=True)), or choose another train.out_dir."
            )
        if found and overwrite:
            remove_run_files(out_dir)
            print(
                f"Replacing the earlier run in {shown_path(out_dir)} (overwrite): removed {names}."
            )
        if resume:  # half-written checkpoints of the killed run: the lock says none is live
            for leftover in (p for pattern in SWAP_FOLDERS for p in out_dir.glob(pattern)):
                shutil.rmtree(leftover, ignore_errors=True)
        yield out_dir
    finally:
        _release_lock(lock)


def run_files(out_dir: str | Path) -> list[Path]:
    """The run files in ``out_dir``, sorted; nothing else there counts."""
    out_dir = Path(out_dir)
    found = [out_dir / name for name in RUN_FILES if (out_dir / name).exists()]
    found += [p for pattern in SWAP_FOLDERS for p in out_dir.glob(pattern)]
    return sorted(found)


def _holds_results(found: list[Path]) -> bool:
    """False when ``found`` is only what a run that stopped before its first epoch ended
    leaves: its ``config.yaml`` and an empty ``metrics.jsonl``. Starting again loses nothing.
    """
    for path in found:
        nothing_yet = path.name == "metrics.jsonl" and path.stat().st_size == 0
        if path.name != "config.yaml" and not nothing_yet:
            return True
    return False


def remove_run_files(out_dir: str | Path) -> None:
    """Delete the run files of ``out_dir``, and only those (a user's notes stay)."""
    for path in run_files(out_dir):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _take_lock(lock: Path) -> Path:
    """Create ``lock`` holding our PID and host; take over a stale one; refuse a live one."""
    mine = {"pid": os.getpid(), "host": socket.gethostname()}
    draft = lock.with_name(f".{lock.name}.{os.getpid()}")
    try:
        with disk_full_guard(lock.parent, "nothing was written"):
            draft.write_text(json.dumps(mine) + "\n")
        for _ in range(3):  # a stale lock is removed, then we try again
            try:
                os.link(draft, lock)  # atomic, fails if it exists: the lock is never half-written
                return lock
            except FileExistsError:
                holder = _read_lock(lock)
            if holder is not None and _alive(holder):
                raise RunDirBusy(
                    f"Another run (PID {holder['pid']} on {holder['host']}) is training into "
                    f"{lock.parent}. Wait for it, or choose another train.out_dir. If no run is "
                    f"there any more, delete {lock}."
                )
            lock.unlink(missing_ok=True)  # its process is gone: a crash or a kill left it
        raise RunDirBusy(f"Could not lock {lock}: other runs keep taking it.")
    finally:
        draft.unlink(missing_ok=True)


def _read_lock(lock: Path) -> dict | None:
    """The lock's ``{"pid", "host"}``, or None if it is gone or not ours to understand."""
    try:
        holder = json.loads(lock.read_text())
        return {"pid": int(holder["pid"]), "host": str(holder["host"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _alive(holder: dict) -> bool:
    """Whether the lock's process still runs; a lock from another machine counts as alive."""
    if holder["host"] != socket.gethostname() or os.name != "posix":
        return True  # we cannot look at another machine's processes (nor safely on Windows)
    try:
        os.kill(holder["pid"], 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _release_lock(lock: Path) -> None:
    """Remove ``lock`` if it is still ours."""
    holder = _read_lock(lock)
    if holder == {"pid": os.getpid(), "host": socket.gethostname()}:
        lock.unlink(missing_ok=True)
