"""Download the real Flickr8k: the two widely used public archives, verified and safely unpacked.

``Flickr8k_Dataset.zip`` (~1 GB, the 8,091 photos) and ``Flickr8k_text.zip`` (captions and
the official split) are fetched with a progress bar into ``ROOT/.downloads``, checked (the
size the server announced and the published MD5), and extracted so that ``ROOT`` ends up in the
Kaggle layout the loader reads: ``ROOT/Images/*.jpg`` plus the caption and split files. An
archive entry whose path would escape ``ROOT`` is refused before anything is written. Work
already done is never redone. Taught in ``notebooks/01_flickr8k_dataset.ipynb``.
"""

from __future__ import annotations

import hashlib
import shutil
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from simpleclip.progress import progress_bar

BASE_URL = "https://github.com/jbrownlee/Datasets/releases/download/Flickr8k"


@dataclass(frozen=True)
class Archive:
    filename: str
    md5: str  # as published with the archives (e.g. by the R torchvision package)
    done_marker: str  # a path under ROOT that exists once this archive is extracted


ARCHIVES = (
    Archive("Flickr8k_text.zip", "bf6c1abcb8e4a833b7f922104de18627", "Flickr8k.token.txt"),
    Archive("Flickr8k_Dataset.zip", "f18a1e2920de5bd84dae7cf08ec78978", "Images"),
)


class DownloadError(RuntimeError):
    """The data could not be fetched or verified; the message says what to do by hand."""


class UnsafeArchiveError(DownloadError):
    """An archive entry would be written outside the target folder."""


def download_flickr8k(
    root: str | Path,
    base_url: str = BASE_URL,
    archives: tuple[Archive, ...] = ARCHIVES,
    timeout: float = 20.0,
) -> Path:
    """Fetch, verify and extract Flickr8k into ``root`` (a no-op when it is already there).

    Args:
        root: the dataset folder to fill.
        base_url: where the archives live (tests point it at a local server).
        archives: which archives to fetch, with their checksums.
        timeout: seconds to wait for the server before giving up.

    Returns:
        ``root``.

    Raises:
        DownloadError: offline, or a download that fails its checks; the message explains the
            manual route.
        UnsafeArchiveError: an archive with a path-escaping entry.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for archive in archives:
        if (root / archive.done_marker).exists():
            continue
        path = root / ".downloads" / archive.filename
        found = _md5(path) if path.is_file() else None
        if found != archive.md5:
            if found is not None:  # put there by hand, or left by an older run: say why unused
                print(
                    f"{path} is not the expected file (MD5 {found}, expected {archive.md5}): "
                    "downloading it again."
                )
            _fetch(f"{base_url}/{archive.filename}", path, root, timeout)
            _verify(path, archive)
        extract_zip(path, root)
    _normalise_layout(root)
    return root


def _fetch(url: str, dest: Path, root: Path, timeout: float) -> None:
    """Stream ``url`` to ``dest`` via a ``.part`` file, so a broken download never looks done."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            expected = int(response.headers.get("Content-Length") or 0) or None
            with (
                part.open("wb") as f,
                progress_bar(total=expected, unit="B", unit_scale=True, desc=dest.name) as bar,
            ):
                while chunk := response.read(1 << 20):
                    f.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        part.unlink(missing_ok=True)
        raise DownloadError(_manual_help(url, root, f"could not download {url}: {err}")) from err
    if expected is not None and part.stat().st_size != expected:
        size = part.stat().st_size
        part.unlink()
        raise DownloadError(f"{url}: got {size} bytes, the server announced {expected}; retry.")
    part.replace(dest)


def _verify(path: Path, archive: Archive) -> None:
    digest = _md5(path)
    if digest != archive.md5:
        path.unlink()
        raise DownloadError(
            f"{path.name} is corrupt or not the expected file (MD5 {digest}, expected "
            f"{archive.md5}); it was deleted, run the command again."
        )


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def extract_zip(path: Path, target: Path) -> None:
    """Extract ``path`` into ``target``, refusing the whole archive if any entry escapes it.

    macOS resource forks (``__MACOSX/``) are skipped.
    """
    target = target.resolve()
    with zipfile.ZipFile(path) as archive:
        members = [m for m in archive.infolist() if not m.filename.startswith("__MACOSX/")]
        for member in members:  # check everything before writing anything
            name = PurePosixPath(member.filename.replace("\\", "/"))
            resolved = (target / name).resolve()
            if name.is_absolute() or ".." in name.parts or not resolved.is_relative_to(target):
                raise UnsafeArchiveError(
                    f"Refusing to extract {path.name}: entry {member.filename!r} would be "
                    f"written outside {target}. The archive may be malicious; delete it."
                )
        for member in members:
            archive.extract(member, target)


def _normalise_layout(root: Path) -> None:
    """The photo archive unpacks to ``Flicker8k_Dataset/`` (sic); the loader wants ``Images/``."""
    original = root / "Flicker8k_Dataset"
    if original.is_dir() and not (root / "Images").exists():
        original.rename(root / "Images")
    shutil.rmtree(root / "__MACOSX", ignore_errors=True)


def _manual_help(url: str, root: Path, reason: str) -> str:
    names = " and ".join(a.filename for a in ARCHIVES)
    return (
        f"{reason}\nAre you offline? Download {names} by hand from {BASE_URL}/ and put them in "
        f"{root / '.downloads'} (this command then verifies and unpacks them), or unpack them "
        f"yourself so that {root}/Images/*.jpg and {root}/Flickr8k.token.txt exist."
    )
