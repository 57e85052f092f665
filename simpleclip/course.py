"""The course's settings: which track the notebooks run, and the one config each track uses.

Every notebook starts with ``course = course_setup()``, so all ten read the same settings
the same way:

- ``SIMPLECLIP_TRACK=smoke``: synthetic shapes and tiny models, seconds per notebook (CI's
  default; ``SIMPLECLIP_SMOKE=1`` means the same).
- ``SIMPLECLIP_TRACK=cpu``: real Flickr8k photos on a laptop CPU: EfficientNet-Lite0 and
  MiniLM, features computed once and cached, heads and temperature trained on them. The
  default without a GPU.
- ``SIMPLECLIP_TRACK=gpu``: ResNet-50 + DistilBERT fine-tuned on one GPU. The default with CUDA.

Each track is a config shipped in ``simpleclip/configs/course_<track>.yaml``;
``SIMPLECLIP_SET="key=value key=value"`` overrides it with the same parser as ``--set``.
Relative paths in the config (data, weights, the run folder) are read from the repository root,
so the notebooks in ``notebooks/`` and a terminal at the root see the same files. The course
model lives in ``runs/course-<track>/``: notebook 06 trains it, 07 and 08 use it.
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simpleclip.config import Config, load_config
from simpleclip.data.captions import MissingImagesWarning
from simpleclip.paths import is_local_name, shown_path

if TYPE_CHECKING:
    from simpleclip.encoders import ImageEncoder, TextEncoder
    from simpleclip.model import CLIPModel
    from simpleclip.train import TrainResult

TRACKS = ("smoke", "cpu", "gpu")
# What notebooks 07 and 08 write next to the course model: results of the model they read.
# A new course model makes them stale, so ``Course.train_model`` removes them with the run.
DERIVED = (
    "metrics_test.json",
    "zeroshot_test.json",
    "figures",
    "photos",
    "search_cache",
    "notes.txt",
)


@dataclass
class Course:
    """The resolved course settings a notebook works with."""

    track: str  # "smoke", "cpu" or "gpu"
    config: Config  # course_<track>.yaml + SIMPLECLIP_SET, paths made absolute
    repo_root: Path  # relative paths of the config are read from here
    overrides: tuple[str, ...]  # what SIMPLECLIP_SET changed

    @property
    def smoke(self) -> bool:
        return self.track == "smoke"

    @property
    def run_dir(self) -> Path:
        """``runs/course-<track>``: the course model, its metrics and pictures."""
        return Path(self.config.train.out_dir)

    @property
    def data_root(self) -> Path:
        return Path(self.config.data.root)

    def prepare_data(self) -> Path:
        """The track's dataset folder: the synthetic set is built (smoke), Flickr8k is downloaded
        when absent (online; a partial folder such as the 1,000-photo slice is used as it is)."""
        from simpleclip.data.download import download_flickr8k
        from simpleclip.train.data import prepare_data

        if self.smoke or (self.data_root / "Images").is_dir():
            return prepare_data(self.config)
        return download_flickr8k(self.data_root)

    def image_encoder(self) -> ImageEncoder:
        """The track's image tower alone, as the course model builds it (notebooks 02 and 04)."""
        from simpleclip.model import build_image_encoder

        return build_image_encoder(self.config)

    def text_encoder(self, tokenizer: Any = None) -> TextEncoder:
        """The track's text tower alone; the ``tiny`` one needs a tokenizer (notebook 03)."""
        from simpleclip.model import build_text_encoder

        return build_text_encoder(self.config, tokenizer)

    def train_model(self, **overrides: Any) -> TrainResult:
        """Train the course model into ``run_dir``, replacing an earlier course run (notebook 06)
        and what notebooks 07 and 08 derived from it (``DERIVED``): test recalls, figures and
        search caches of an older model would otherwise sit beside the new one.

        Args:
            overrides: passed to ``simpleclip.train.train`` (``resume=True``, ``progress``...).
        """
        from simpleclip.train import train

        options = {"overwrite": not overrides.get("resume", False), **overrides}
        if options["overwrite"]:
            self.remove_derived()
        return train(self.config, **options)

    def remove_derived(self) -> list[str]:
        """Delete notebooks 07 and 08's outputs in ``run_dir`` (and only those); say which."""
        removed = []
        for name in DERIVED:
            path = self.run_dir / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
            else:
                continue
            removed.append(name)
        if removed:
            print(
                f"Removed what notebooks 07-08 derived from the earlier model: {', '.join(removed)}"
            )
        return removed

    def model(self) -> CLIPModel:
        """The course model that notebook 06 trained; trained now when it is missing."""
        from simpleclip.checkpoint import WEIGHTS
        from simpleclip.model import CLIPModel
        from simpleclip.train.run_dir import BEST

        best = self.run_dir / BEST
        if not (best / WEIGHTS).is_file():
            print(f"No course model in {self.show(best)}: training it now, as notebook 06 does.")
            self.train_model()
        return CLIPModel.load(best)

    def probe_model(self) -> tuple[CLIPModel, Path]:
        """A model trained on the synthetic shapes, and that set's folder, for the controlled
        probes (left/right binding, the held-out purple triangle) of notebooks 07 and 08.

        The smoke track's course model is one already; the cpu and gpu tracks use the demo's
        (``runs/demo/model``, trained first if missing: about a minute on a CPU).
        """
        from simpleclip.checkpoint import WEIGHTS
        from simpleclip.demo import DEMO_DIR, run_demo
        from simpleclip.model import CLIPModel
        from simpleclip.train.run_dir import FINAL_MODEL

        if self.smoke:
            return self.model(), self.prepare_data()
        demo, data = self.repo_root / DEMO_DIR, self.repo_root / "data" / "synthetic"
        if not (demo / FINAL_MODEL / WEIGHTS).is_file():
            print(f"No demo model in {self.show(demo)}: training it now (simpleclip demo).")
            with contextlib.redirect_stdout(io.StringIO()):  # its log is the demo's, not ours
                run_demo(demo, [f"data.root={data}"], progress=False)
        return CLIPModel.load(demo / FINAL_MODEL), data

    def show(self, path: str | Path) -> str:
        """``path`` as the notebooks print it: relative to the repository, or under ``~``, so
        no output names a machine's folders (``runs/course-cpu``, ``../data``, ``~/.cache``)."""
        return shown_path(path, self.repo_root)

    def describe(self) -> str:
        items = (item.partition("=") for item in self.overrides)
        shown = [key + sep + self.show(value) for key, sep, value in items]
        extra = f" with {' '.join(shown)}" if shown else ""
        text = self.config.text.name
        text = self.show(text) if is_local_name(text) else text
        image = self.config.image.name
        if self.config.image.weights:
            image += f" (weights: {self.show(self.config.image.weights)})"
        return (
            f"Course track {self.track!r}: config course_{self.track}{extra}\n"
            f"  data: {self.show(self.data_root)}\n  image encoder: {image}; "
            f"text encoder: {text}\n  course model: {self.show(self.run_dir)}"
        )


def select_track(environ: dict[str, str] | None = None, cuda: bool | None = None) -> str:
    """The track from ``SIMPLECLIP_TRACK``, else smoke under CI, else gpu with CUDA, else cpu."""
    env = os.environ if environ is None else environ
    track = env.get("SIMPLECLIP_TRACK", "").strip().lower()
    if track:
        if track not in TRACKS:
            raise ValueError(
                f"SIMPLECLIP_TRACK={track!r} is not a track; use one of {', '.join(TRACKS)}."
            )
        return track
    if env.get("SIMPLECLIP_SMOKE") == "1" or env.get("CI"):
        return "smoke"
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    return "gpu" if cuda else "cpu"


def find_repo_root(start: Path | None = None) -> Path:
    """The folder holding ``notebooks/`` at or above ``start`` (the working directory)."""
    start = (start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / "notebooks").is_dir():
            return folder
    return start


def course_setup(
    track: str | None = None, environ: dict[str, str] | None = None, start: Path | None = None
) -> Course:
    """Read the course settings, print which track and config are used, and return them.

    Args:
        track: force a track; default: ``select_track()``.
        environ: the variables to read (default: ``os.environ``).
        start: where to look for the repository root (default: the working directory).
    """
    env = os.environ if environ is None else environ
    track = track or select_track(env)
    overrides = tuple(shlex.split(env.get("SIMPLECLIP_SET", "")))
    root = find_repo_root(start)
    config = load_config(f"course_{track}", [f"train.out_dir=runs/course-{track}", *overrides])
    _anchor_paths(config, root)
    course = Course(track=track, config=config, repo_root=root, overrides=overrides)
    # The course accepts a slice of Flickr8k; notebook 01 counts the photos it holds, once.
    warnings.filterwarnings("ignore", category=MissingImagesWarning)
    print(course.describe())
    return course


def _anchor_paths(config: Config, root: Path) -> None:
    """Make the config's relative paths relative to ``root`` instead of the working directory."""

    def anchored(path: str) -> str:
        expanded = Path(path).expanduser()
        return str(expanded if expanded.is_absolute() else (root / expanded).resolve())

    config.data.root = anchored(config.data.root)
    config.train.out_dir = anchored(config.train.out_dir)
    if config.image.weights:
        config.image.weights = anchored(config.image.weights)
    if is_local_name(config.text.name):
        config.text.name = anchored(config.text.name)
