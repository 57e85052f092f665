"""The training loop: contrastive learning of a CLIPModel on image-caption pairs.

Each step encodes a batch of B pictures and their B captions, compares all B x B pairs and
pulls the true pairs together (``simpleclip.loss.clip_loss``). After each epoch the model is
evaluated on the dev split (Recall@K), one line is appended to ``metrics.jsonl``, and two
checkpoints are written atomically: ``last/`` (with the optimizer, scheduler, scaler and RNG
state, for ``resume``) and ``best/`` (highest dev recall sum). A NaN or infinite loss stops the
run with a clear message and leaves the last good checkpoint in place.
Taught in ``notebooks/06_training.ipynb``; CLIP paper, Section 2.5.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from simpleclip.checkpoint import atomic_directory, readable_directory
from simpleclip.config import Config, save_config
from simpleclip.data import CaptionDataset, build_transforms, load_split, make_synthetic
from simpleclip.data.dataset import find_images_dir
from simpleclip.data.image_cache import BatchAugment, build_image_cache
from simpleclip.device import Precision, select_device, select_precision
from simpleclip.evaluate import evaluate, retrieval_metrics
from simpleclip.features import FeatureDataset, cached_features, embed_features
from simpleclip.loss import clip_loss
from simpleclip.model import CLIPModel, build_model
from simpleclip.optim import make_optimizer, make_scheduler
from simpleclip.tokenizer import train_wordpiece_tokenizer

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


def prepare_data(config: Config) -> Path:
    """The dataset folder; the synthetic set is built there first if the config asks for it."""
    root = Path(config.data.root)
    if config.data.synthetic_images > 0 and not root.exists():
        make_synthetic(root, n_images=config.data.synthetic_images, seed=config.train.seed)
    return root


def build_datasets(
    config: Config, model: CLIPModel, root: Path
) -> tuple[CaptionDataset, CaptionDataset]:
    """Train and dev datasets with the image encoder's own preprocessing.

    With cached features the train set uses the eval transform: features are computed once.
    """
    pre = model.image_encoder.preprocessing
    augment = not config.train.cache_features
    train_tf = build_transforms(pre, augment, config.data.crop_scale, config.data.color_jitter)
    common = {"tokenizer": model.tokenizer, "max_length": config.data.max_length}
    images = find_images_dir(root)
    train_set = CaptionDataset(
        load_split(root, "train"), images, transform=train_tf, pairs=config.data.pairs,
        seed=config.train.seed, **common,
    )  # fmt: skip
    dev_set = CaptionDataset(
        load_split(root, "dev"), images, transform=build_transforms(pre, False), **common
    )
    return train_set, dev_set


def _new_model(config: Config, root: Path) -> CLIPModel:
    tokenizer = None
    if config.text.name == "tiny":  # a from-scratch text encoder gets a tokenizer of its own
        captions = load_split(root, "train")["caption"]
        tokenizer = train_wordpiece_tokenizer(captions, config.text.vocab_size)
    return build_model(config, tokenizer=tokenizer)


def train(config: Config, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train a CLIP model as ``config`` describes; see the module docstring for the outputs.

    Args:
        config: the full run config.
        resume: continue from ``out_dir/last`` exactly where it stopped.
        progress: show tqdm progress bars.
    """
    start = time.perf_counter()
    if config.train.threads > 0:
        torch.set_num_threads(config.train.threads)
    torch.manual_seed(config.train.seed)
    out_dir = Path(config.train.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    root = prepare_data(config)
    last = out_dir / "last"
    model = _resume_model(config, last) if resume else _new_model(config, root)
    device = select_device(config.train.device)
    precision = select_precision(device, config.train.precision)
    model.to(device)
    train_set, validate = _training_data(config, model, root)
    steps_per_epoch = max(1, len(train_set) // config.train.batch_size)
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(
        optimizer, config.train.warmup_steps, steps_per_epoch * config.train.epochs
    )
    scaler = torch.amp.GradScaler(device.type, enabled=precision.use_scaler)
    state: dict[str, Any] = {"epoch": 0, "step": 0, "best": -math.inf, "history": []}
    if resume:
        state = _load_trainer_state(last, optimizer, scheduler, scaler)
    else:
        (out_dir / "metrics.jsonl").write_text("")
    save_config(config, out_dir / "config.yaml")
    loop = _Loop(model, optimizer, scheduler, scaler, precision, device, config, progress)
    for epoch in range(state["epoch"], config.train.epochs):
        record = loop.run_epoch(train_set, epoch, state, last)
        record["val"] = validate()
        score = sum(record["val"][d][f"R@{k}"] for d in ("t2i", "i2t") for k in (1, 5, 10))
        state.update(epoch=epoch + 1, history=[*state["history"], record])
        with (out_dir / "metrics.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")
        if score > state["best"]:
            state["best"] = score
            model.save(out_dir / "best")
        _save_last(model, last, state, optimizer, scheduler, scaler)
    return TrainResult(model, state["history"], out_dir, time.perf_counter() - start)


def _training_data(config: Config, model: CLIPModel, root: Path):
    """The training set (pictures, or cached features) and a function giving dev metrics."""
    train_set, dev_set = build_datasets(config, model, root)
    if not config.train.cache_features:
        if config.data.image_cache:
            pre = model.image_encoder.preprocessing
            cache = build_image_cache(train_set.images_dir, train_set.image_names, pre,
                                      root / ".cache")  # fmt: skip
            train_set.use_image_cache(cache.filename)
        return train_set, lambda: evaluate(model, dev_set)
    encoders = (model.image_encoder, model.text_encoder)
    if any(p.requires_grad for encoder in encoders for p in encoder.parameters()):
        raise ValueError(
            "train.cache_features needs frozen encoders (their features must not change): "
            "add --frozen, or set image.trainable=false and text.trainable=false, with "
            "unfreeze_last=0 and image.pooling=avg (attention pooling is trained)."
        )
    cache = root / ".cache"
    train_features = cached_features(model, train_set, cache)
    dev_features = cached_features(model, dev_set, cache)

    def validate() -> dict:
        return retrieval_metrics(embed_features(model, dev_features, dev_set.caption_image))

    return FeatureDataset(train_set, train_features), validate


class _Loop:
    """One epoch of optimisation steps, with a live progress bar."""

    def __init__(self, model, optimizer, scheduler, scaler, precision: Precision, device,
                 config: Config, progress: bool) -> None:  # fmt: skip
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.scaler, self.precision, self.device = scaler, precision, device
        self.config, self.progress = config, progress
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        data = config.data  # pictures from the image cache are finished here, batch by batch
        self.augment = BatchAugment(model.image_encoder.preprocessing, train=True,
                                    crop_scale=data.crop_scale, color_jitter=data.color_jitter)

    def run_epoch(self, dataset, epoch: int, state: dict, last: Path) -> dict:
        train = self.config.train
        dataset.set_epoch(epoch)
        loader = DataLoader(
            dataset, batch_size=train.batch_size, shuffle=True,
            drop_last=len(dataset) > train.batch_size, num_workers=self.config.data.num_workers,
            collate_fn=dataset.collate, pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(train.seed * 100_003 + epoch),
        )  # fmt: skip
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
            pairs += len(batch["image_ids"])
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
        multi = self.config.loss.multi_positive
        with self.precision.autocast(self.device):
            if "image_features" in batch:  # cached features: only the heads run
                image_embeds = self.model.project_image(batch["image_features"])
                text_embeds = self.model.project_text(batch["text_features"])
            else:
                image_embeds = self.model.encode_image(batch["images"])  # (B, E)
                text_embeds = self.model.encode_text(batch["input_ids"], batch["attention_mask"])
            loss = clip_loss(
                image_embeds, text_embeds, self.model.logit_scale,
                image_ids=batch["image_ids"] if multi else None,
                text_ids=batch["text_ids"] if multi else None,
            )  # fmt: skip
        value = loss.item()
        if not math.isfinite(value):
            return value
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.config.train.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.trainable, self.config.train.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return value


def _save_last(model: CLIPModel, last: Path, state: dict, optimizer, scheduler, scaler) -> None:
    """Model files plus everything ``resume`` needs, swapped in atomically."""
    with atomic_directory(last) as tmp:
        model.write_files(tmp)
        trainer_state = {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "torch_rng": torch.get_rng_state(),
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


def _load_trainer_state(last: Path, optimizer, scheduler, scaler) -> dict[str, Any]:
    saved = torch.load(
        readable_directory(last, required=TRAINER_STATE) / TRAINER_STATE, weights_only=True
    )
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    scaler.load_state_dict(saved["scaler"])
    torch.set_rng_state(saved["torch_rng"])
    return {**saved["progress"], "history": json.loads(saved["history"])}
