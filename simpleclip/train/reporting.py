"""Where the curves of a run go: ``metrics.jsonl`` always, TensorBoard and W&B when asked.

After each epoch the loop hands one record (loss, learning rate, temperature, pairs/s, dev
Recall@K per direction and K) to ``Reporters.log``, which passes it to every backend named in
``train.report_to``: ``jsonl`` (one JSON line per epoch in the run folder, as always),
``tensorboard`` (event files in ``<out_dir>/tensorboard/``) and ``wandb`` (Weights & Biases,
files in ``<out_dir>/wandb/``). The curve backends also get the similarity matrix of the first
16 dev pairs once per epoch, drawn by ``simpleclip.evaluate.figures`` (the evaluation picture,
not a second drawing). Optional packages are imported only when asked for, and a missing one is
reported by ``check_reporters`` before any data is read. Only rank 0 reports. A resumed run
appends; TensorBoard hides what an interrupted run logged after its last checkpoint.
Taught in ``notebooks/06_training.ipynb``; TensorBoard and W&B are the usual dashboards.
"""

from __future__ import annotations

import importlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from simpleclip import collectives
from simpleclip.checkpoint import atomic_file
from simpleclip.config import NO_VALIDATION, Config, check_report_to, to_dict
from simpleclip.train.run_dir import HISTORY

# report_to name -> (module imported, pip package that provides it)
OPTIONAL = {"tensorboard": ("torch.utils.tensorboard", "tensorboard"), "wandb": ("wandb", "wandb")}
FIGURE_PAIRS = 16  # dev pairs in the per-epoch similarity matrix: readable, and cheap to encode
SIMILARITY = "similarity_matrix"  # the figure's name in TensorBoard and W&B


class Reporter(Protocol):
    """One destination of the curves; ``Reporters`` fans a record out to several."""

    def log(self, record: dict[str, Any], step: int) -> None: ...

    def log_figure(self, name: str, png: Path, step: int) -> None: ...

    def close(self) -> None: ...


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The numbers of an epoch record under their ``metrics.jsonl`` key paths, e.g.
    ``val/t2i/R@1``: one name per curve in every dashboard. ``step`` is the x axis, not a curve,
    and the per-step losses are logged step by step (``step_losses``)."""
    flat: dict[str, float] = {}

    def visit(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                visit(f"{prefix}{key}/", inner)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[prefix.rstrip("/")] = float(value)

    visit("", {k: v for k, v in record.items() if k != "step"})
    return flat


def step_losses(record: dict[str, Any], step: int) -> list[tuple[int, float]]:
    """``(step, loss)`` of each optimisation step of the epoch that ends at ``step``."""
    losses = record.get("step_losses", [])
    return [(step - len(losses) + 1 + i, loss) for i, loss in enumerate(losses)]


class JsonlReporter:
    """``metrics.jsonl``: one JSON line per epoch; a new run starts it empty, a resumed one
    appends (``train.run_dir`` treats an empty file as "no results yet").

    A resumed run first rewrites the file from ``history``, the records of the epochs its
    checkpoint holds: a run killed after an epoch's line but before its checkpoint (or with a
    line cut short by a full disk) trains that epoch again, and the file must still hold
    exactly one line per finished epoch. The rewrite is atomic (a temporary file, renamed).
    """

    def __init__(self, out_dir: Path, resume: bool, history: list[dict] | None = None) -> None:
        self.path = out_dir / HISTORY
        if not resume:
            out_dir.mkdir(parents=True, exist_ok=True)
            self.path.write_text("")
        elif history is not None:
            with atomic_file(self.path) as tmp:
                tmp.write_text("".join(json.dumps(record) + "\n" for record in history))

    def log(self, record: dict[str, Any], step: int) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def log_figure(self, name: str, png: Path, step: int) -> None:
        pass  # a JSON line holds numbers only

    def close(self) -> None:
        pass  # every line is closed as it is written


class TensorBoardReporter:
    """Event files in ``<out_dir>/tensorboard/`` (``tensorboard --logdir runs``).

    ``purge_step`` is the first step this session trains: TensorBoard hides anything an earlier
    session logged from there on (an epoch logged but never checkpointed, or a replaced run), so
    a resumed run's curves continue without doubles. Old event files are never deleted.
    """

    def __init__(self, out_dir: Path, first_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(out_dir / "tensorboard"), purge_step=first_step)

    def log(self, record: dict[str, Any], step: int) -> None:
        for at, loss in step_losses(record, step):
            self.writer.add_scalar("step_loss", loss, at)
        for tag, value in scalars(record).items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()  # the curves appear while the next epoch trains

    def log_figure(self, name: str, png: Path, step: int) -> None:
        from simpleclip.data.images import to_pixels

        pixels = to_pixels(png)  # (H, W, 3) uint8, read as every picture is
        self.writer.add_image(name, pixels, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbReporter:
    """A Weights & Biases run, files in ``<out_dir>/wandb/``; ``WANDB_PROJECT`` (default
    ``simpleclip``), ``WANDB_ENTITY`` and ``WANDB_MODE=offline`` are read by W&B itself.

    The run id is kept in ``<out_dir>/wandb/run_id``, so a resumed training continues the same
    W&B run instead of starting a second one.
    """

    def __init__(self, out_dir: Path, config: Config, resume: bool) -> None:
        import wandb

        folder = out_dir / "wandb"
        folder.mkdir(parents=True, exist_ok=True)
        id_file = folder / "run_id"
        run_id = id_file.read_text().strip() if resume and id_file.is_file() else None
        self.wandb = wandb
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "simpleclip"),
            name=out_dir.name,
            dir=str(out_dir),
            config=to_dict(config),
            id=run_id,
            resume="allow" if run_id else None,
        )
        id_file.write_text(self.run.id + "\n")

    def log(self, record: dict[str, Any], step: int) -> None:
        for at, loss in step_losses(record, step):
            self.run.log({"step_loss": loss}, step=at)
        self.run.log(scalars(record), step=step)

    def log_figure(self, name: str, png: Path, step: int) -> None:
        self.run.log({name: self.wandb.Image(str(png))}, step=step)

    def close(self) -> None:
        self.run.finish()


class Reporters:
    """Every reporter of a run, plus the per-epoch figure for those that show pictures.

    Args:
        reporters: the backends; none on ranks other than 0.
        figure: writes the similarity matrix to the PNG path it is given (None: no dev set).
    """

    def __init__(
        self, reporters: list[Reporter], figure: Callable[[Path], Path] | None = None
    ) -> None:
        self.reporters, self.figure = reporters, figure

    def log(self, record: dict[str, Any], step: int) -> None:
        for reporter in self.reporters:
            reporter.log(record, step)
        if self.figure is not None and self.reporters:
            with tempfile.TemporaryDirectory() as tmp:  # drawn once, shown by every backend
                png = self.figure(Path(tmp) / f"{SIMILARITY}.png")
                for reporter in self.reporters:
                    reporter.log_figure(SIMILARITY, png, step)

    def close(self) -> None:
        for reporter in self.reporters:
            reporter.close()


def check_reporters(config: Config) -> None:
    """Refuse unknown ``train.report_to`` names and missing packages before training starts.

    Every rank checks (they share one environment), so no rank waits for one that stopped.

    Raises:
        ConfigError: a name no reporter answers to.
        ImportError: a backend's package is not installed; the message gives the pip command.
    """
    check_report_to(config.train.report_to)
    for name in config.train.report_to:
        if name not in OPTIONAL:
            continue
        module, package = OPTIONAL[name]
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ImportError(
                f"train.report_to={name} needs the {package} package: pip install {package}"
            ) from error


@contextmanager
def open_reporters(
    config: Config,
    resume: bool,
    first_step: int,
    figure: Callable[[Path], Path] | None = None,
    history: list[dict] | None = None,
) -> Iterator[Reporters]:
    """The reporters ``train.report_to`` asks for, closed (flushed) when the block ends.

    Args:
        config: the run config (``train.report_to``, ``train.out_dir``).
        resume: the run continues an earlier one: append to its files.
        first_step: the first optimisation step this session trains (1 for a new run).
        figure: draws the per-epoch similarity matrix to a PNG path; see ``similarity_figure``.
        history: on resume, the records of the epochs the checkpoint holds: ``metrics.jsonl``
            is cut back to them.

    Example:
        >>> with open_reporters(config, resume=False, first_step=1) as reporters:
        ...     reporters.log(record, step=record["step"])
    """
    check_reporters(config)
    out_dir = Path(config.train.out_dir)
    reporters: list[Reporter] = []
    if collectives.is_main():
        names = config.train.report_to
        reporters.append(JsonlReporter(out_dir, resume, history))  # always: resume, plots
        if "tensorboard" in names:
            reporters.append(TensorBoardReporter(out_dir, first_step))
        if "wandb" in names:
            reporters.append(WandbReporter(out_dir, config, resume))
    group = Reporters(reporters, figure)
    try:
        yield group
    finally:
        group.close()


def similarity_figure(config: Config, model: Any, root: Path) -> Callable[[Path], Path] | None:
    """A function drawing the similarity matrix of the first ``FIGURE_PAIRS`` dev pictures
    (one caption each) with the model as it is when called; None without a dev split, or when
    no backend shows pictures (so nothing is read or imported for nothing).

    The pictures come from ``simpleclip.evaluate.figures``, imported here only: training code
    does not otherwise load matplotlib.
    """
    wanted = any(name in OPTIONAL for name in config.train.report_to)
    if not wanted or config.data.val_split == NO_VALIDATION or not collectives.is_main():
        return None
    from simpleclip.evaluate import compute_embeddings, eval_split
    from simpleclip.evaluate.figures import draw_similarity_matrix

    split, skip_bad = config.data.val_split, config.data.skip_bad_images
    pairs = eval_split(model, root, split, skip_bad, first_n_images=FIGURE_PAIRS)

    def draw(path: Path) -> Path:
        embeddings = compute_embeddings(model, pairs)
        return draw_similarity_matrix(model, pairs, embeddings, path, n=FIGURE_PAIRS)

    return draw
