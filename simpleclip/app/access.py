"""What the web app may open: the server decides, never the page.

``simpleclip app`` serves a page (and Gradio's API) where anyone who reaches the port can type
a folder or a checkpoint path. ``AllowedPaths`` holds the folders and checkpoints the command
line named (``--images``, ``--checkpoint``) and the runs and data folders it was pointed at
(``--runs-dir``, ``--data-dir``); any other path is refused with ``PathNotAllowed``. A path is
resolved before it is checked, so ``..`` and symlinks that lead outside are refused too.
``--allow-any-path`` widens this to the whole machine (on 127.0.0.1, or with an explicit
acknowledgement on a network address). No Gradio here: tested in ``tests/test_app.py``;
described for users in ``docs/app.md``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


class PathNotAllowed(PermissionError):
    """A folder or checkpoint outside the ones the server was started with."""


def is_local_host(host: str) -> bool:
    """True for an address only this machine can reach (``127.x.x.x``, ``localhost``, ``::1``)."""
    return host in LOCAL_HOSTS or host.startswith("127.")


def _resolved(paths: Iterable[str | Path | None]) -> tuple[Path, ...]:
    """The paths resolved, without repeats or folders inside another one of them."""
    roots = list(dict.fromkeys(_resolve(p) for p in paths if p))
    return tuple(p for p in roots if not any(p != r and p.is_relative_to(r) for r in roots))


class AllowedPaths:
    """The picture folders and checkpoints the app may open: these folders and what is inside.

    Args:
        folders: picture folders (and folders of folders, like ``data/``) that may be searched.
        checkpoints: model folders (and folders of them, like ``runs/``) that may be loaded.
        any_path: allow every path this process can read (``--allow-any-path``).
    """

    def __init__(
        self,
        folders: Iterable[str | Path | None] = (),
        checkpoints: Iterable[str | Path | None] = (),
        any_path: bool = False,
    ) -> None:
        # resolved once, at start: a symlink made later cannot move an allowed root
        self.folders, self.checkpoints = _resolved(folders), _resolved(checkpoints)
        self.any_path = any_path

    def allows_folder(self, path: str | Path) -> bool:
        return self.any_path or _inside(_resolve(path), self.folders)

    def allows_checkpoint(self, path: str | Path) -> bool:
        return self.any_path or _inside(_resolve(path), self.checkpoints)

    def check_folder(self, path: str | Path) -> Path:
        """``path`` resolved, if it is an allowed picture folder (or inside one).

        Raises:
            PathNotAllowed: it is, or leads (``..``, a symlink), outside the allowed folders.
        """
        if not self.allows_folder(path):
            raise PathNotAllowed(_refusal("picture folder", path, self.folders, "--images"))
        return _resolve(path)

    def check_checkpoint(self, path: str | Path) -> Path:
        """``path`` resolved, if it is an allowed checkpoint folder (or inside one).

        Raises:
            PathNotAllowed: it is, or leads (``..``, a symlink), outside the allowed folders.
        """
        if not self.allows_checkpoint(path):
            raise PathNotAllowed(_refusal("checkpoint", path, self.checkpoints, "--checkpoint"))
        return _resolve(path)

    def describe(self) -> str:
        """One line for the start-up message: what anyone who reaches the server can open."""
        if self.any_path:
            return "every folder and checkpoint this process can read (--allow-any-path)"
        folders = ", ".join(str(p) for p in self.folders) or "none"
        checkpoints = ", ".join(str(p) for p in self.checkpoints) or "none"
        return f"pictures in {folders}; checkpoints in {checkpoints}"


def _resolve(path: str | Path) -> Path:
    return Path(path).expanduser().resolve()  # follows every symlink and `..`


def _inside(path: Path, roots: tuple[Path, ...]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def _refusal(kind: str, path: str | Path, roots: tuple[Path, ...], flag: str) -> str:
    allowed = ", ".join(str(p) for p in roots) or "none"
    return (
        f"Not allowed: the {kind} {path} is outside the folders this server was started with "
        f"({allowed}). To use it, start `simpleclip app` with {flag} {path}."
    )


def check_exposure(host: str, any_path: bool, i_know_this_exposes_files: bool = False) -> None:
    """Refuse to open every path to a network unless the user said they know it.

    Raises:
        ValueError: ``any_path`` on a non-local ``host`` without ``i_know_this_exposes_files``.
    """
    if any_path and not is_local_host(host) and not i_know_this_exposes_files:
        raise ValueError(
            f"--allow-any-path with --host {host} lets anyone on your network open every picture "
            "and checkpoint this process can read. Add --i-know-this-exposes-files if that is "
            "what you want, or listen on 127.0.0.1."
        )


def exposure_line(host: str, port: int, access: AllowedPaths) -> str:
    """The start-up line: where the app listens, who can reach it, and what they can open."""
    who = "this machine only" if is_local_host(host) else "ANYONE ON YOUR NETWORK"
    return f"Serving on http://{host}:{port} to {who} (Ctrl-C stops it): {access.describe()}."
