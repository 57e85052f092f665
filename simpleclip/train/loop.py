"""The training loop: contrastive learning of a CLIPModel on image-caption pairs.

Each step encodes a batch of B pictures and their B captions, compares all B x B pairs and
pulls the true pairs together (``simpleclip.loss.clip_loss``). After each epoch the model is
evaluated on the dev split (Recall@K; ``data.val_split``), one line is appended to
``metrics.jsonl``, and two checkpoints are written atomically: ``last/`` (with the optimizer,
scheduler, scaler and RNG state, for ``resume``) and ``best/`` (highest dev recall sum; the
last epoch when ``val_split`` is ``"none"``). A NaN or infinite loss stops the run with a clear
message and leaves the last good checkpoint in place. The data side lives in ``train.data``.
Under ``torchrun --nproc_per_node=N`` each rank takes ``train.batch_size`` pairs per step, so
the contrastive batch is N × batch_size (``train.distributed``); only rank 0 evaluates and
writes files, logs and progress bars, and the logged loss is the mean over ranks.
``train.micro_batch_size`` splits the gradient computation (GradCache, ``train.step``).
Taught in ``notebooks/06_training.ipynb``; CLIP paper, Section 2.5.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from simpleclip.config import Config, save_config
from simpleclip.data.image_cache import BatchAugment
from simpleclip.loss import clip_loss
from simpleclip.model import CLIPModel
from simpleclip.train import distributed
from simpleclip.train.checkpoint import atomic_directory, readable_directory
from simpleclip.train.data import new_model, prepare_data, training_data
from simpleclip.train.device import Precision, select_device, select_precision
from simpleclip.train.optim import make_optimizer, make_scheduler
from simpleclip.train.step import Towers, check_train_options, full_backward, grad_cache_backward

TRAINER_STATE = "trainer_state.pt"
MODEL_SECTIONS = ("image", "text", "head")  # must match the checkpoint to resume


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class TrainResult:
    model: CLIPModel  # the model after the last epoch
    history: list[dict[str, Any]]  # one record per epoch, as in metrics.jsonl
    out_dir: Path
    seconds: float = 0.0  # wall time of the training loop (data loading and validation included)
    best_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.best_dir = self.out_dir / "best"


def train(config: Config, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train a CLIP model as ``config`` describes; see the module docstring for the outputs.

    Args:
        config: the full run config.
        resume: continue from ``out_dir/last`` exactly where it stopped.
        progress: show tqdm progress bars (rank 0 only).
    """
    check_train_options(config.train)
    with distributed.process_group(select_device(config.train.device)) as device:
        return _train(config, resume, progress and distributed.is_main(), device)


def _train(config: Config, resume: bool, progress: bool, device: torch.device) -> TrainResult:
    start = time.perf_counter()
    if config.train.threads > 0:
        torch.set_num_threads(config.train.threads)
    torch.manual_seed(config.train.seed)  # the same initial weights on every rank
    out_dir = Path(config.train.out_dir)
    last = out_dir / "last"
    with distributed.main_process_first():  # rank 0 writes the data and downloads weights first
        root = prepare_data(config)
        model = _resume_model(config, last) if resume else new_model(config, root)
    if distributed.world_size() > 1:  # different dropout draws on each rank
        torch.manual_seed(config.train.seed + distributed.rank())
    precision = select_precision(device, config.train.precision)
    model.to(device)
    optimizer = make_optimizer(model, config)
    towers = distributed.wrap(Towers(model), device)
    if config.train.compile:  # kernels fused for these shapes; recompiles for new ones
        towers = torch.compile(towers)
    with distributed.main_process_first():  # rank 0 writes the caches, the others read them
        train_set, validate = training_data(config, model, root)
    steps_per_epoch = max(1, len(train_set) // (config.train.batch_size * distributed.world_size()))
    scheduler = make_scheduler(
        optimizer, config.train.warmup_steps, steps_per_epoch * config.train.epochs
    )
    scaler = torch.amp.GradScaler(device.type, enabled=precision.use_scaler)
    loop = _Loop(model, towers, optimizer, scheduler, scaler, precision, device, config, progress)
    state: dict[str, Any] = {"epoch": 0, "step": 0, "best": -math.inf, "history": []}
    if resume:
        state = _load_trainer_state(last, loop)
    elif distributed.is_main():
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "metrics.jsonl").write_text("")
    if distributed.is_main():
        save_config(config, out_dir / "config.yaml")
    for epoch in range(state["epoch"], config.train.epochs):
        record = loop.run_epoch(train_set, epoch, state, last)
        record["val"] = distributed.broadcast_object(validate() if distributed.is_main() else None)
        _end_epoch(loop, record, state, out_dir)
    return TrainResult(model, state["history"], out_dir, time.perf_counter() - start)


def _end_epoch(loop: _Loop, record: dict, state: dict, out_dir: Path) -> None:
    """Update ``state``; rank 0 appends to metrics.jsonl and saves ``best/`` and ``last/``."""
    if record["val"] is None:  # no validation split: the latest model is the best we know
        score = float(record["epoch"])
    else:
        score = sum(record["val"][d][f"R@{k}"] for d in ("t2i", "i2t") for k in (1, 5, 10))
    improved, state["best"] = score > state["best"], max(score, state["best"])
    state.update(epoch=record["epoch"], history=[*state["history"], record])
    rng_states = distributed.gather_rng_states()  # a collective: every rank takes part
    if distributed.is_main():
        with (out_dir / "metrics.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")
        if improved:
            loop.model.save(out_dir / "best")
        _save_last(loop, out_dir / "last", state, rng_states)
    distributed.barrier()  # the checkpoint is complete before any rank goes on (or resumes)


class _Loop:
    """One epoch of optimisation steps, with a live progress bar."""

    def __init__(
        self,
        model,
        towers,
        optimizer,
        scheduler,
        scaler,
        precision: Precision,
        device,
        config: Config,
        progress: bool,
    ) -> None:
        self.model, self.towers, self.optimizer = model, towers, optimizer
        self.scheduler, self.scaler, self.precision = scheduler, scaler, precision
        self.device = device
        self.config, self.progress = config, progress
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        data = config.data  # pictures from the image cache are finished here, batch by batch
        self.augment = BatchAugment(
            model.image_encoder.preprocessing,
            train=True,
            crop_scale=data.crop_scale,
            color_jitter=data.color_jitter,
        )

    def run_epoch(self, dataset, epoch: int, state: dict, last: Path) -> dict:
        train = self.config.train
        dataset.set_epoch(epoch)
        sampler = distributed.shard_sampler(dataset, train.seed, epoch)  # None in one process
        per_rank = len(sampler) if sampler is not None else len(dataset)
        loader = DataLoader(
            dataset,
            batch_size=train.batch_size,
            shuffle=sampler is None,
            sampler=sampler,
            drop_last=per_rank > train.batch_size,
            num_workers=self.config.data.num_workers,
            collate_fn=dataset.collate,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(train.seed * 100_003 + epoch),
        )
        self.model.train()
        losses, pairs, start = [], 0, time.perf_counter()
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{train.epochs}", disable=not self.progress)
        for batch in bar:
            loss = self.step(batch)
            if not math.isfinite(loss):
                raise TrainingDiverged(
                    f"The loss became {loss} at epoch {epoch + 1}, step {state['step'] + 1}. "
                    f"Stopped; the last good checkpoint is kept in {last} (if an epoch finished). "
                    "Try lower learning rates, precision=fp32, or a smaller grad_clip."
                )
            state["step"] += 1
            losses.append(loss)
            pairs += len(batch["image_ids"]) * distributed.world_size()  # all ranks' pairs
            speed = pairs / (time.perf_counter() - start)
            bar.set_postfix(loss=f"{loss:.3f}", pairs_s=f"{speed:.0f}")
        seconds = time.perf_counter() - start
        return {
            "epoch": epoch + 1,
            "step": state["step"],
            "train_loss": sum(losses) / max(1, len(losses)),
            "step_losses": [round(x, 5) for x in losses],
            "lr": self.scheduler.get_last_lr()[-1],
            "temperature": math.exp(-self.model.logit_scale.item()),
            "epoch_seconds": seconds,
            "pairs_per_second": pairs / seconds,
        }

    def step(self, batch: dict[str, torch.Tensor]) -> float:
        """One optimisation step; returns the loss (NaN/inf is reported, not applied)."""
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        if batch.get("images") is not None and batch["images"].dtype == torch.uint8:
            batch["images"] = self.augment(batch["images"])  # (B, S, S, 3) -> (B, 3, S, S)
        self.optimizer.zero_grad(set_to_none=True)
        autocast = partial(self.precision.autocast, self.device)  # a fresh context per use
        micro = self.config.train.micro_batch_size
        if micro > 0:
            loss = grad_cache_backward(
                self.towers, batch, self.loss, self.model.logit_scale, self.scaler, autocast, micro
            )
        else:
            loss = full_backward(self.towers, batch, self.loss, self.scaler, autocast)
        if not math.isfinite(loss):
            return loss
        if self.config.train.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.trainable, self.config.train.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return loss

    def loss(self, image_embeds, text_embeds, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``clip_loss`` in one process; under torchrun, over all ranks' pairs."""
        multi = self.config.loss.multi_positive
        ids = {k: batch[k] for k in ("image_ids", "text_ids")} if multi else {}
        if distributed.world_size() == 1:
            return clip_loss(image_embeds, text_embeds, self.model.logit_scale, **ids)
        local = self.config.train.distributed_loss == "local"
        return distributed.gathered_clip_loss(
            image_embeds, text_embeds, self.model.logit_scale, local=local, **ids
        )


def _save_last(loop: _Loop, last: Path, state: dict, rng_states: torch.Tensor) -> None:
    """Model files plus everything ``resume`` needs (every rank's RNG), swapped in atomically."""
    with atomic_directory(last) as tmp:
        loop.model.write_files(tmp)
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


def _resume_model(config: Config, last: Path) -> CLIPModel:
    model = CLIPModel.load(readable_directory(last, required=TRAINER_STATE))
    for section in MODEL_SECTIONS:
        if getattr(model.config, section) != getattr(config, section):
            raise ValueError(
                f"Cannot resume: the '{section}' settings differ from the checkpoint in {last}. "
                "Resume with the same model config, or start a new run in another out_dir."
            )
    return model


def _load_trainer_state(last: Path, loop: _Loop) -> dict[str, Any]:
    saved = torch.load(
        readable_directory(last, required=TRAINER_STATE) / TRAINER_STATE, weights_only=True
    )
    loop.optimizer.load_state_dict(saved["optimizer"])
    loop.scheduler.load_state_dict(saved["scheduler"])
    loop.scaler.load_state_dict(saved["scaler"])
    distributed.set_rng_state(saved.get("rank_rngs", saved["torch_rng"][None]))
    return {**saved["progress"], "history": json.loads(saved["history"])}
