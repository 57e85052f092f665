"""The Flickr8k download against a local HTTP server serving archives the test builds."""

from __future__ import annotations

import hashlib
import http.server
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import ClassVar

import pytest

from simpleclip.data import load_split
from simpleclip.data.download import (
    ARCHIVES,
    Archive,
    DownloadError,
    UnsafeArchiveError,
    download_flickr8k,
)


class CountingHandler(http.server.SimpleHTTPRequestHandler):
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        CountingHandler.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args) -> None:  # keep test output quiet
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    served = tmp_path / "served"
    served.mkdir()
    handler = partial(CountingHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    CountingHandler.requests = []
    yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    httpd.shutdown()
    httpd.server_close()


def make_zip(path: Path, entries: dict[str, bytes]) -> Archive:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    md5 = hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
    marker = "Images" if "Dataset" in path.name else "Flickr8k.token.txt"
    return Archive(path.name, md5, marker)


def fake_flickr(served: Path, jpeg: bytes) -> tuple[Archive, ...]:
    names = [f"{i}.jpg" for i in range(4)]
    token = "".join(f"{n}#{k}\tcaption {k} of {n}\n" for n in names for k in range(5))
    text = make_zip(
        served / "Flickr8k_text.zip",
        {
            "Flickr8k.token.txt": token.encode(),
            "Flickr_8k.trainImages.txt": b"0.jpg\n1.jpg\n",
            "Flickr_8k.devImages.txt": b"2.jpg\n",
            "Flickr_8k.testImages.txt": b"3.jpg\n",
            "__MACOSX/._Flickr8k.token.txt": b"resource fork",
        },
    )
    photos = make_zip(
        served / "Flickr8k_Dataset.zip", {f"Flicker8k_Dataset/{n}": jpeg for n in names}
    )
    return text, photos


@pytest.fixture
def jpeg(synthetic_root: Path) -> bytes:
    return next((synthetic_root / "Images").iterdir()).read_bytes()


def test_download_verifies_extracts_and_is_not_redone(server, tmp_path: Path, jpeg: bytes):
    url, served = server
    archives = fake_flickr(served, jpeg)
    root = download_flickr8k(tmp_path / "flickr8k", base_url=url, archives=archives)
    assert sorted(p.name for p in (root / "Images").iterdir()) == [f"{i}.jpg" for i in range(4)]
    assert not (root / "__MACOSX").exists()
    assert load_split(root, "test")["image"].unique().tolist() == ["3.jpg"]
    assert len(CountingHandler.requests) == 2
    download_flickr8k(root, base_url=url, archives=archives)
    assert len(CountingHandler.requests) == 2  # already there: nothing fetched again


def test_checksum_mismatch_is_refused_and_the_file_deleted(server, tmp_path: Path, jpeg):
    url, served = server
    text, photos = fake_flickr(served, jpeg)
    wrong = Archive(text.filename, "0" * 32, text.done_marker)
    with pytest.raises(DownloadError, match="corrupt or not the expected file"):
        download_flickr8k(tmp_path / "f", base_url=url, archives=(wrong, photos))
    assert not (tmp_path / "f" / ".downloads" / text.filename).exists()
    assert not (tmp_path / "f" / "Flickr8k.token.txt").exists()


def test_path_escaping_entry_is_refused_before_anything_is_written(server, tmp_path: Path):
    url, served = server
    evil = make_zip(
        served / "Flickr8k_text.zip",
        {"Flickr8k.token.txt": b"a.jpg#0\tok\n", "../../escaped.txt": b"gotcha"},
    )
    root = tmp_path / "deep" / "f"
    with pytest.raises(UnsafeArchiveError, match=r"\.\./\.\./escaped\.txt"):
        download_flickr8k(root, base_url=url, archives=(evil,))
    assert not (tmp_path / "escaped.txt").exists()
    assert not (root / "Flickr8k.token.txt").exists()  # refused whole, not half-extracted


def test_absolute_entry_is_refused(server, tmp_path: Path) -> None:
    url, served = server
    evil = make_zip(served / "Flickr8k_text.zip", {"/tmp/abs.txt": b"gotcha"})
    with pytest.raises(UnsafeArchiveError):
        download_flickr8k(tmp_path / "f", base_url=url, archives=(evil,))


def test_offline_fails_fast_with_manual_instructions(tmp_path: Path) -> None:
    closed = "http://127.0.0.1:9"  # discard port: nothing listens, connection refused
    with pytest.raises(DownloadError) as info:
        download_flickr8k(tmp_path / "f", base_url=closed, timeout=5)
    message = str(info.value)
    assert "by hand" in message and "Flickr8k_Dataset.zip" in message
    assert str(tmp_path / "f" / ".downloads") in message
    assert not list((tmp_path / "f" / ".downloads").glob("*.part"))


def test_archives_put_in_place_by_hand_are_used_without_network(server, tmp_path, jpeg):
    _, served = server
    archives = fake_flickr(served, jpeg)
    root = tmp_path / "f"
    (root / ".downloads").mkdir(parents=True)
    for archive in archives:
        data = (served / archive.filename).read_bytes()
        (root / ".downloads" / archive.filename).write_bytes(data)
    download_flickr8k(root, base_url="http://127.0.0.1:9", archives=archives)
    assert len(list((root / "Images").iterdir())) == 4


def test_a_wrong_archive_already_in_place_is_called_wrong(tmp_path: Path, capsys) -> None:
    """Probe 8a: offline, with a crafted zip in .downloads, only 'could not download' was said;
    the user must learn that the file they put there is not the right one."""
    downloads = tmp_path / "f" / ".downloads"
    downloads.mkdir(parents=True)
    (downloads / ARCHIVES[0].filename).write_bytes(b"not the archive")
    with pytest.raises(DownloadError, match="by hand"):
        download_flickr8k(tmp_path / "f", base_url="http://127.0.0.1:9", timeout=5)
    said = capsys.readouterr().out
    assert f"{ARCHIVES[0].filename} is not the expected file (MD5 " in said
    assert ARCHIVES[0].md5 in said
