"""A real img2dataset run, as a user runs it, and training from its output as it is.

Synthetic pictures are served by an HTTP server on 127.0.0.1 (nothing else is reached), their
URLs and captions go to a CSV, the ``img2dataset`` command downloads them into webdataset
shards (``{key}.jpg``, ``{key}.txt``, ``{key}.json``, ``_stats.json``, ``.parquet``), and
``simpleclip train`` with ``data.format=webdataset`` learns from those shards: the loss falls
and dev recall (scored on the folder, as always) is above chance.
"""

from __future__ import annotations

import csv
import functools
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from simpleclip.data import load_split, make_synthetic
from simpleclip.train import train

IMG2DATASET = Path(sys.executable).with_name("img2dataset")
pytestmark = pytest.mark.skipif(
    not IMG2DATASET.is_file(),
    reason="img2dataset not installed: pip install --no-deps -r requirements-img2dataset.txt",
)
PICTURES, PER_SHARD, MISSING = 300, 60, 3  # 240 training pictures: 4 full shards + failures


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # one line per request would flood the test output
        pass


@pytest.fixture(scope="module")
def picture_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A few hundred synthetic pictures (Flickr8k layout) served on 127.0.0.1."""
    root = make_synthetic(tmp_path_factory.mktemp("web") / "set", n_images=PICTURES, seed=1)
    handler = functools.partial(_QuietHandler, directory=str(root / "Images"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def downloaded(picture_server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """img2dataset's output for the training split's URLs (one caption each), plus 3 dead URLs."""
    root, base = picture_server
    table = load_split(root, "train").drop_duplicates("image")
    url_list = tmp_path_factory.mktemp("urls") / "urls.csv"
    with url_list.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["url", "caption"])
        writer.writerows((f"{base}/{row.image}", row.caption) for row in table.itertuples())
        writer.writerows((f"{base}/gone_{n}.jpg", "a picture that is gone") for n in range(MISSING))
    out = url_list.parent / "shards"
    command = [
        str(IMG2DATASET),
        f"--url_list={url_list}",
        "--input_format=csv",
        "--url_col=url",
        "--caption_col=caption",
        "--output_format=webdataset",
        f"--output_folder={out}",
        "--image_size=64",
        "--resize_mode=center_crop",
        f"--number_sample_per_shard={PER_SHARD}",
        "--processes_count=1",
        "--thread_count=8",
        "--enable_wandb=False",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_img2dataset_writes_the_layout_the_reader_expects(downloaded) -> None:
    tars = sorted(downloaded.glob("*.tar"))
    stats = [json.loads(p.with_name(f"{p.stem}_stats.json").read_text()) for p in tars]
    assert sum(s["successes"] for s in stats) == PICTURES * 8 // 10  # the train split's 240
    assert sum(s["failed_to_download"] for s in stats) == MISSING
    assert all(p.with_suffix(".parquet").is_file() for p in tars)  # there, and ignored


def test_training_from_img2dataset_shards_learns(picture_server, downloaded, tiny_config, tmp_path):
    root, _ = picture_server
    tars = sorted(downloaded.glob("*.tar"))
    config = tiny_config(
        root,
        tmp_path / "run",
        "data.format=webdataset",
        f"data.shards={downloaded}/{{00000..{len(tars) - 1:05d}}}.tar",
        "train.epochs=8",
        "train.threads=1",
    )
    result = train(config, progress=False)
    history = result.history
    assert history[-1]["step"] == 8 * (PICTURES * 8 // 10 // 32)  # the counted successes
    assert history[-1]["train_loss"] < 0.8 * history[0]["train_loss"]
    dev_images = load_split(root, "dev")["image"].nunique()
    recall = history[-1]["val"]["t2i"]["R@5"]
    chance = 5 / dev_images
    print(f"text->image R@5 on {dev_images} dev pictures: {recall:.2f} (chance {chance:.2f})")
    assert recall > 2 * chance
