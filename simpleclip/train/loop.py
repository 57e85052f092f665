"""The training loop: contrastive learning of a CLIPModel on image-caption pairs.

Each step encodes a batch of B pictures and their B captions, compares all B x B pairs and
pulls the true pairs together (``simpleclip.loss.clip_loss``). After each epoch the model is
evaluated on the dev split (Recall@K; ``data.val_split``), one line is appended to
``metrics.jsonl`` (and sent to TensorBoard or W&B: ``train.reporting``), and two checkpoints
are written atomically: ``last/`` (with the optimizer, scheduler, scaler and RNG state, for
``resume``) and ``best/`` (highest dev recall sum; the last epoch when ``val_split`` is
``"none"``); ``train.keep_last=false`` removes ``last/`` once the run ends normally, keeping
``best/`` (a crash still leaves ``last/`` to resume from). ``train.patience`` stops the run
after that many epochs without a better dev score (early stopping: on a small set the model
starts memorising its training photos while dev recall falls). A NaN or infinite loss stops
the run with a clear message and leaves the last good checkpoint in place. The data side
lives in ``train.data``.
Under ``torchrun --nproc_per_node=N`` each rank takes ``train.batch_size`` pairs per step, so
the contrastive batch is N × batch_size (``train.distributed``); only rank 0 evaluates and
writes files, logs and progress bars, and the logged loss is the mean over ranks.
``train.micro_batch_size`` splits the gradient computation (GradCache, ``train.step``); one
optimisation step is ``train.trainer.Trainer.step``.
Taught in ``notebooks/06_training.ipynb``; CLIP paper, Section 2.5.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from simpleclip import collectives
from simpleclip.allocator import keep_freed_memory
from simpleclip.checkpoint import WEIGHTS, atomic_directory, previous_of, readable_directory
from simpleclip.config import NO_VALIDATION, Config, save_config
from simpleclip.data.shard_plan import check_shards
from simpleclip.device import select_device
from simpleclip.model import CLIPModel
from simpleclip.recall import DIRECTIONS, KS, recall_key
from simpleclip.safe_files import load_tensors
from simpleclip.train import distributed
from simpleclip.train.checkpoint import disk_full_guard, gather_rng_states, restore_rng_state
from simpleclip.train.data import new_model, prepare_data, training_data
from simpleclip.train.from_clip import fit_to_clip
from simpleclip.train.reporting import (
    Reporters,
    check_reporters,
    open_reporters,
    similarity_figure,
)
from simpleclip.train.run_dir import BEST, LAST, RUN_CONFIG, claim_run_dir
from simpleclip.train.step import check_train_options
from simpleclip.train.trainer import Trainer

TRAINER_STATE = "trainer_state.pt"
MODEL_SECTIONS = ("image", "text", "head")  # must match the checkpoint to resume


@dataclass
class TrainResult:
    model: CLIPModel  # the model after the last epoch
    history: list[dict[str, Any]]  # one record per epoch, as in metrics.jsonl
    out_dir: Path
    seconds: float = 0.0  # wall time of the training loop (data loading and validation included)
    best_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.best_dir = self.out_dir / BEST

    @property
    def best_epoch(self) -> int:
        """The epoch ``best/`` holds (1-based): the best dev score, the first one on a tie."""
        return best_epoch(self.history)


def best_epoch(history: list[dict[str, Any]]) -> int:
    """The first epoch with the highest dev score of ``history`` (``metrics.jsonl``'s records);
    the last epoch when there is no dev split; 0 before the first epoch."""
    scores = [epoch_score(record) for record in history]
    return history[scores.index(max(scores))]["epoch"] if history else 0


def epoch_score(record: dict[str, Any]) -> float:
    """What ``best/`` maximises: the sum of the six dev recalls (the epoch number without dev)."""
    if record["val"] is None:
        return float(record["epoch"])
    return sum(record["val"][d][recall_key(k)] for d in DIRECTIONS for k in KS)


def train(
    config: Config, resume: bool = False, progress: bool = True, overwrite: bool = False
) -> TrainResult:
    """Train a CLIP model as ``config`` describes; see the module docstring for the outputs.

    Args:
        config: the full run config.
        resume: continue from ``out_dir/last`` exactly where it stopped.
        progress: show tqdm progress bars (rank 0 only).
        overwrite: replace a run already in ``out_dir``; without it (or ``resume``) a run
            there is refused with FileExistsError (``train.run_dir``).
    """
    check_train_options(config.train)
    if config.train.patience and config.data.val_split == NO_VALIDATION:
        raise ValueError(
            f"train.patience={config.train.patience} stops on the dev score, but "
            "data.val_split is 'none'. Name a split to score (data.val_split=dev) or set "
            "train.patience=0."
        )
    check_reporters(config)  # a missing tensorboard/wandb fails now, not after an epoch
    if config.data.format == "webdataset":  # a missing shard or a hanging split: refused now
        check_shards(config.data, distributed.ranks_launched())
    with (
        distributed.process_group(select_device(config.train.device)) as device,
        claim_run_dir(config.train.out_dir, resume, overwrite, collectives.is_main()),
    ):
        return _train(config, resume, progress and collectives.is_main(), device)


class NothingToResume(RuntimeError):
    """``--resume`` of a run whose ``last/`` is gone while ``best/`` is there: a run with
    ``train.keep_last=false`` that finished."""


def _train(config: Config, resume: bool, progress: bool, device: torch.device) -> TrainResult:
    start = time.perf_counter()
    out_dir = Path(config.train.out_dir)
    if resume and not _has_checkpoint(out_dir / LAST) and _has_model(out_dir / BEST):
        raise NothingToResume(
            f"Nothing to resume in {out_dir}: it has best/ but no last/, the resume state (a "
            "run with train.keep_last=false removes last/ when it finishes). Use best/ as it "
            "is, or train again with --overwrite or another train.out_dir."
        )
    if resume and not _has_checkpoint(out_dir / LAST):
        if collectives.is_main():
            print(
                f"Nothing to resume in {out_dir}: the run stopped before its first epoch "
                "ended. Starting it again."
            )
        resume = False
    if device.type == "cpu" and config.train.keep_freed_memory:
        keep_freed_memory()  # before the first large allocation: faster CPU steps (allocator)
    if config.train.threads > 0:
        torch.set_num_threads(config.train.threads)
    torch.manual_seed(config.train.seed)  # the same initial weights on every rank
    last = out_dir / LAST
    with collectives.main_process_first():  # rank 0 writes the data and downloads weights first
        root = prepare_data(config)
        model = _resume_model(config, last) if resume else new_model(config, root)
    config = fit_to_clip(config, model)  # a pretrained CLIP's heads and text length are its own
    if collectives.world_size() > 1:  # different dropout draws on each rank
        torch.manual_seed(config.train.seed + collectives.rank())
    model.to(device)
    with collectives.main_process_first():  # rank 0 writes the caches, the others read them
        train_set, validate = training_data(config, model, root, progress)
    steps_per_epoch = max(1, len(train_set) // (config.train.batch_size * collectives.world_size()))
    loop = Trainer.build(model, config, device, steps_per_epoch * config.train.epochs, progress)
    state: dict[str, Any] = {"epoch": 0, "step": 0, "best": -math.inf, "history": []}
    if resume:
        state = _load_trainer_state(last, loop)
    figure = similarity_figure(config, model, root)  # None without a dev set or a dashboard
    history = state["history"] if resume else None  # metrics.jsonl is cut back to it
    with open_reporters(config, resume, state["step"] + 1, figure, history) as reporters:
        if collectives.is_main():  # metrics.jsonl is started (or kept, on resume) by now
            save_config(config, out_dir / RUN_CONFIG)
        for epoch in range(state["epoch"], config.train.epochs):
            if _out_of_patience(config, state["history"], progress):
                break
            record = loop.run_epoch(train_set, epoch, state, last)
            main = collectives.is_main()
            record["val"] = collectives.broadcast_object(validate() if main else None)
            _end_epoch(loop, record, state, out_dir, reporters)
    if not config.train.keep_last and collectives.is_main() and _has_model(out_dir / BEST):
        _remove_last(out_dir, state["history"], progress)
    return TrainResult(model, state["history"], out_dir, time.perf_counter() - start)


def _remove_last(out_dir: Path, history: list[dict[str, Any]], say: bool) -> None:
    """``train.keep_last=false``: the run ended normally, so its resume state (the model again,
    plus two optimizer moments per trained weight) is no longer needed; ``best/`` is the result."""
    for folder in (out_dir / LAST, previous_of(out_dir / LAST)):
        shutil.rmtree(folder, ignore_errors=True)
    if say:
        print(
            f"Run finished: kept best/ (epoch {best_epoch(history)}); removed last/, the "
            "resume state (train.keep_last=false)."
        )


def _end_epoch(
    loop: Trainer, record: dict, state: dict, out_dir: Path, reporters: Reporters
) -> None:
    """Update ``state``; rank 0 reports the record (metrics.jsonl, and TensorBoard or W&B if
    ``train.report_to`` says so) and saves ``best/`` and ``last/``."""
    score = epoch_score(record)  # without a dev split the latest model is the best we know
    improved, state["best"] = score > state["best"], max(score, state["best"])
    state.update(epoch=record["epoch"], history=[*state["history"], record])
    rng_states = gather_rng_states()  # a collective: every rank takes part
    if collectives.is_main():
        kept = _what_is_kept(state["history"][:-1])
        with disk_full_guard(out_dir, kept):
            reporters.log(record, record["step"])
            if improved:
                loop.model.save(out_dir / BEST, reference_frozen=True)
            _save_last(loop, out_dir / LAST, state, rng_states)
    collectives.barrier()  # the checkpoint is complete before any rank goes on (or resumes)


def _what_is_kept(finished: list[dict[str, Any]]) -> str:
    """What a failed save leaves: the checkpoints are swapped in whole, so the earlier ones."""
    if not finished:
        return "no epoch had been saved yet, so nothing is lost but this run's time"
    return (
        f"last/ still holds epoch {finished[-1]['epoch']}, complete (checkpoints are swapped "
        "in whole, so best/ is whole too)"
    )


def _out_of_patience(config: Config, history: list[dict[str, Any]], say: bool) -> bool:
    """True when ``train.patience`` epochs have passed without a better dev score."""
    patience = config.train.patience
    if not patience or not history or history[-1]["epoch"] - best_epoch(history) < patience:
        return False
    if say:
        print(
            f"Early stop after epoch {history[-1]['epoch']}: no better dev score for "
            f"{patience} epochs; best/ holds epoch {best_epoch(history)}."
        )
    return True


def _save_last(loop: Trainer, last: Path, state: dict, rng_states: torch.Tensor) -> None:
    """Model files plus everything ``resume`` needs (every rank's RNG), swapped in atomically."""
    with atomic_directory(last) as tmp:
        loop.model.write_files(tmp, reference_frozen=True)
        trainer_state = {
            "optimizer": loop.optimizer.state_dict(),
            "scheduler": loop.scheduler.state_dict(),
            "scaler": loop.scaler.state_dict(),
            "torch_rng": rng_states[0],  # rank 0's, as a one-process run saves it
            "rank_rngs": rng_states,  # (N ranks, state bytes)
            "progress": {k: state[k] for k in ("epoch", "step", "best")},
            "history": json.dumps(state["history"]),
        }
        torch.save(trainer_state, tmp / TRAINER_STATE)


def _has_checkpoint(last: Path) -> bool:
    """``last/`` (or its ``.old`` twin) holds a complete checkpoint to resume from."""
    return any((folder / TRAINER_STATE).is_file() for folder in (last, previous_of(last)))


def _has_model(folder: Path) -> bool:
    """``folder`` (or its ``.old`` twin) holds a saved model."""
    return any((f / WEIGHTS).is_file() for f in (folder, previous_of(folder)))


def _resume_model(config: Config, last: Path) -> CLIPModel:
    model = CLIPModel.load(readable_directory(last, required=TRAINER_STATE))
    config = fit_to_clip(config, model)
    for section in MODEL_SECTIONS:
        if getattr(model.config, section) != getattr(config, section):
            raise ValueError(
                f"Cannot resume: the '{section}' settings differ from the checkpoint in {last}. "
                "Resume with the same model config, or start a new run in another out_dir."
            )
    return model


def _load_trainer_state(last: Path, loop: Trainer) -> dict[str, Any]:
    saved = load_tensors(readable_directory(last, required=TRAINER_STATE) / TRAINER_STATE)
    loop.optimizer.load_state_dict(saved["optimizer"])
    loop.scheduler.load_state_dict(saved["scheduler"])
    loop.scaler.load_state_dict(saved["scaler"])
    restore_rng_state(saved.get("rank_rngs", saved["torch_rng"][None]))
    return {**saved["progress"], "history": json.loads(saved["history"])}
