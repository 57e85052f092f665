"""Offline means offline: importing the package and its image pipeline opens no connection.

Each check runs in a fresh interpreter whose ``socket.connect`` records any address that is not
on this machine, so a library that phones home on import (albumentations asks PyPI for its
latest version unless ``NO_ALBUMENTATIONS_UPDATE=1``) fails the test.
"""

from __future__ import annotations

import os
import subprocess
import sys

GUARD = """
import socket
attempts = []
_connect = socket.socket.connect
def connect(self, address):
    host = address[0] if isinstance(address, tuple) else str(address)
    if not (host.startswith("127.") or host in ("localhost", "::1")) and "/" not in host:
        attempts.append(address)
        raise OSError("blocked by the test: no network")
    return _connect(self, address)
socket.socket.connect = connect
import socket as _s
_create = _s.create_connection
def create_connection(address, *args, **kwargs):
    attempts.append(address)
    raise OSError("blocked by the test: no network")
_s.create_connection = create_connection
"""


def _attempts_while(code: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "NO_ALBUMENTATIONS_UPDATE"}
    script = GUARD + code + "\nprint('ATTEMPTS', attempts)\n"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split("ATTEMPTS", 1)[1].strip() + done.stderr


def test_importing_the_package_and_its_image_pipeline_opens_no_connection() -> None:
    code = (
        "import simpleclip\n"
        "from simpleclip.data import ImagePreprocessing, build_transforms\n"
        "build_transforms(ImagePreprocessing(input_size=32), train=True)\n"
        "import simpleclip.cli.main\n"
    )
    out = _attempts_while(code)
    assert out.startswith("[]"), out
    assert "Error fetching version info" not in out  # albumentations' offline warning


def test_the_guard_sees_a_library_that_phones_home() -> None:
    # Without the package's switch, albumentations' own import tries PyPI: the guard must see it.
    out = _attempts_while("import albumentations\n")
    assert not out.startswith("[]"), out


def test_a_command_of_the_quick_start_runs_without_the_network(tmp_path) -> None:
    # The demo's first half (the synthetic set) and an eval-free train of one tiny epoch.
    out = tmp_path / "set"
    code = (
        "from simpleclip.cli.main import main\n"
        f"main(['make-synthetic', '--out', {str(out)!r}, '--images', '40'])\n"
        f"main(['train', '--config', 'synthetic_tiny', '--set', 'data.root={out}', "
        f"'--set', 'train.epochs=1', '--set', 'train.out_dir={tmp_path / 'run'}'])\n"
    )
    out_text = _attempts_while(code)
    assert out_text.startswith("[]"), out_text
    assert (tmp_path / "run" / "best" / "model.safetensors").is_file()
