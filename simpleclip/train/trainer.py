"""One optimisation step of CLIP, and an epoch of them: the trainer ``train`` runs.

A step moves a batch to the device, computes the gradients (whole batch, or micro-batches with
GradCache: ``train.step``), clips them, and lets AdamW and the schedule take one step; a NaN or
infinite loss is reported, never applied. The state lives on the ``Trainer`` (model, towers,
optimizer, schedule, scaler), as in minGPT's trainer. Pictures arrive augmented and normalised
by the dataset (in DataLoader workers). Taught in ``notebooks/06_training.ipynb``, which
writes the same step by hand and checks it against ``Trainer.step``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from functools import partial
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset

from simpleclip import collectives
from simpleclip.config import Config
from simpleclip.device import Precision, select_precision
from simpleclip.loss import clip_loss, siglip_loss
from simpleclip.model import CLIPModel
from simpleclip.progress import progress_bar
from simpleclip.train import distributed
from simpleclip.train.optim import make_optimizer, make_scheduler
from simpleclip.train.step import Towers, full_backward, grad_cache_backward


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def trains_a_cnn(image_encoder: nn.Module) -> bool:
    """A convolutional image tower with trainable weights: the one ``train.channels_last`` lays
    out as (B, H, W, C) in memory. Convolutions then run without re-ordering their inputs: on a
    2-core CPU, 24-35% less CPU time per fine-tuning step of EfficientNet-Lite0
    (``benchmarks/finetune_throughput.py``); on CUDA, tensor cores want it too. A ViT has one
    convolution (its patch embedding) and is left alone; a frozen tower is only run forward
    (or its features are cached).
    """
    convolutions = sum(isinstance(m, nn.Conv2d) for m in image_encoder.modules())
    trainable = any(p.requires_grad for p in image_encoder.parameters())
    return convolutions > 1 and trainable


def place_model(model: CLIPModel, config: Config, device: torch.device | str) -> None:
    """Put ``model`` where and how ``Trainer.build`` trains it: on ``device``, a trained CNN
    image tower in channels_last layout (``train.channels_last``). The layout changes the
    convolutions' summation order, so a step written by hand that must match ``Trainer.step``
    to the last digits starts from a model placed the same way (notebook 06)."""
    model.to(device)
    if config.train.channels_last and trains_a_cnn(model.image_encoder):
        model.image_encoder.to(memory_format=torch.channels_last)


class Trainer:
    """Optimisation steps for one model: its towers (compiled, then DDP-wrapped), AdamW, the
    schedule, the loss scaler and the precision; ``step`` is one step, ``run_epoch`` an epoch.

    ``Trainer.build`` makes one as ``train`` does, so a notebook can take a single step with
    exactly the package's recipe and compare it with one written by hand.
    """

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

    @classmethod
    def build(
        cls,
        model: CLIPModel,
        config: Config,
        device: torch.device | str = "cpu",
        total_steps: int = 1000,
        progress: bool = False,
    ) -> Trainer:
        """The trainer ``train`` uses for ``model``: moved to ``device`` (a trained CNN image tower
        in channels_last layout: ``train.channels_last``), towers compiled if
        ``train.compile``, then DDP-wrapped under torchrun, AdamW with per-part learning rates,
        warm-up + cosine over ``total_steps``, and loss scaling for fp16."""
        device = torch.device(device)
        precision = select_precision(device, config.train.precision)
        place_model(model, config, device)
        optimizer = make_optimizer(model, config)
        towers = Towers(model)
        if config.train.compile:  # kernels fused for these shapes; recompiles for new ones
            towers = torch.compile(towers)
        towers = distributed.wrap(towers, device)  # DDP outermost, after compiling: no_sync works
        scheduler = make_scheduler(optimizer, config.train.warmup_steps, total_steps)
        scaler = torch.amp.GradScaler(device.type, enabled=precision.use_scaler)
        return cls(model, towers, optimizer, scheduler, scaler, precision, device, config, progress)

    def run_epoch(self, dataset, epoch: int, state: dict, last: Path) -> dict:
        train = self.config.train
        dataset.set_epoch(epoch)
        loader = self.loader(dataset, epoch)
        self.model.train()
        losses, pairs, start = [], 0, time.perf_counter()
        bar = progress_bar(
            loader, desc=f"epoch {epoch + 1}/{train.epochs}", disable=not self.progress
        )
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
            pairs += len(batch["image_ids"]) * collectives.world_size()  # all ranks' pairs
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

    def loader(self, dataset, epoch: int) -> Iterable[dict[str, torch.Tensor]]:
        """This rank's batches of one epoch. Tar shards split themselves by rank and worker and
        give every rank the same number of batches (``ShardDataset.loader``); a map-style set is
        shuffled, split by ``distributed.shard_sampler`` under torchrun."""
        train, pin_memory = self.config.train, self.device.type == "cuda"
        if isinstance(dataset, IterableDataset):
            return dataset.loader(pin_memory)
        sampler = distributed.shard_sampler(dataset, train.seed, epoch)  # None in one process
        per_rank = len(sampler) if sampler is not None else len(dataset)
        return DataLoader(
            dataset,
            batch_size=train.batch_size,
            shuffle=sampler is None,
            sampler=sampler,
            drop_last=per_rank > train.batch_size,
            num_workers=self.config.data.num_workers,
            collate_fn=dataset.collate,
            pin_memory=pin_memory,
            generator=torch.Generator().manual_seed(train.seed * 100_003 + epoch),
        )

    def step(self, batch: dict[str, torch.Tensor]) -> float:
        """One optimisation step; returns the loss (NaN/inf is reported, not applied).

        The model is put in training mode first: a Hugging Face model comes out of
        ``from_pretrained`` in eval mode, and a step without dropout is another step.
        """
        self.model.train()  # frozen encoders stay in eval mode (their ``train`` says so)
        loss = self.gradients(batch)
        if not math.isfinite(loss):
            return loss
        if self.config.train.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.trainable, self.config.train.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return loss

    def gradients(self, batch: dict[str, torch.Tensor]) -> float:
        """The loss of one batch and its gradients (whole, or micro-batch by micro-batch), in
        the model's current mode, without an optimizer step: ``step``'s first half, also what a
        check of GradCache against the whole batch compares. Returns the loss."""
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        self.optimizer.zero_grad(set_to_none=True)
        autocast = partial(self.precision.autocast, self.device)  # a fresh context per use
        micro = self.config.train.micro_batch_size
        if micro > 0:
            loss_params = [
                p for p in (self.model.logit_scale, self.model.logit_bias) if p is not None
            ]
            return grad_cache_backward(
                self.towers, batch, self.loss, loss_params, self.scaler, autocast, micro
            )
        return full_backward(self.towers, batch, self.loss, self.scaler, autocast)

    def loss(self, image_embeds, text_embeds, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``clip_loss`` or ``siglip_loss`` (``loss.kind``) over all ranks' pairs (this
        process's alone without torchrun)."""
        multi = self.config.loss.multi_positive
        ids = {k: batch[k] for k in ("image_ids", "text_ids")} if multi else {}
        local = self.config.train.distributed_loss == "local"
        options = {"gather": True, "local": local, **ids}
        logit_scale, logit_bias = self.model.logit_scale, self.model.logit_bias
        if self.config.loss.kind == "siglip":
            return siglip_loss(image_embeds, text_embeds, logit_scale, logit_bias, **options)
        return clip_loss(image_embeds, text_embeds, logit_scale, **options)
