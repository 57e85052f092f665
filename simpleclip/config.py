"""Run configuration: nested dataclasses, loaded from YAML, overridden with ``key=value``.

One config describes a whole run: data, the two encoders, the heads, the loss and training.
Defaults describe the classic one-GPU run (ResNet-50 + DistilBERT on Flickr8k); named configs
live in ``simpleclip/configs/*.yaml`` (shipped with the package). Overrides use one syntax
everywhere, ``train.lr=3e-4``, type-checked against the dataclass fields (no ``exec``); a
setting with a few valid values is a ``Literal`` field, so a typo fails when the config is
read, naming the key and the choices, not at the first step. The
resolved config is saved with every run and every checkpoint, so a model reloads without
guessing. Taught in ``notebooks/06_training.ipynb``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

# The choices of the enumerated settings. The library code acting on them reads the same lists
# (``typing.get_args``), e.g. ``device.PRECISIONS`` and ``heads.HEAD_KINDS``.
Pairs = Literal["all", "one_per_image"]  # data.pairs
DataFormat = Literal["folder", "webdataset"]  # data.format: caption files, or tar shards
ImagePooling = Literal["avg", "attention"]  # image.pooling
TextPooling = Literal["cls", "mean"]  # text.pooling (None: the preset's own)
HeadKind = Literal["mlp", "linear", "none"]  # head.kind
LossKind = Literal["clip", "siglip"]  # loss.kind: clip_loss (softmax), siglip_loss (sigmoid)
PrecisionName = Literal["auto", "fp32", "bf16", "fp16"]  # train.precision
DistributedLoss = Literal["gather", "local"]  # train.distributed_loss
NO_VALIDATION = "none"  # data.val_split value: no per-epoch evaluation
# image.name and text.name of a pretrained CLIP's own towers (``clip_arch.towers``): like "tiny",
# a name built in code rather than loaded by name; the sizes travel in the checkpoint.
CLIP_TOWERS = "clip"


@dataclass
class DataConfig:
    root: str = "data/flickr8k"  # dataset folder in the Flickr8k layout
    synthetic_images: int = 0  # > 0: build the synthetic set of this size at root if missing
    pairs: Pairs = "all"  # "all" 5 pairs per image per epoch, or "one_per_image"
    max_length: int = 32  # tokens per caption (Flickr8k captions rarely exceed 30)
    crop_scale: tuple[float, float] = (0.8, 1.0)  # area range of the train random crop
    color_jitter: float = 0.2  # brightness/contrast/saturation jitter; hue never
    num_workers: int = 4  # DataLoader worker processes
    image_cache: bool = True  # decode + resize each picture once (uint8 memmap in root/.cache)
    train_split: str = "train"  # split(s) to train on; "train+dev" when no dev set is needed
    val_split: str = "dev"  # split scored after each epoch (picks best/); "none" skips it
    skip_bad_images: bool = False  # skip missing/empty/truncated pictures (named once), not fail
    format: DataFormat = "folder"  # "folder" (root's caption file) or "webdataset" (shards)
    shards: list[str] = field(default_factory=list)  # webdataset: tar paths/URLs, {000..009} ok
    resampled: bool = False  # webdataset: draw shards with replacement (any shard count works)
    samples_per_epoch: int = 0  # webdataset: pairs per epoch, all ranks; 0: the shards' count
    shuffle_buffer: int = 1000  # webdataset: pairs held in memory to shuffle the stream

    def __post_init__(self) -> None:  # data.shards is checked when read (set in any order)
        if self.samples_per_epoch < 0 or self.shuffle_buffer < 0:
            raise ConfigError(
                "data.samples_per_epoch and data.shuffle_buffer must be 0 or more, got "
                f"{self.samples_per_epoch} and {self.shuffle_buffer}."
            )


@dataclass
class ImageConfig:
    name: str = "resnet50"  # a preset of simpleclip.encoders, any timm model name, or "clip"
    pretrained: bool = True  # start from pretrained weights
    weights: str | None = None  # local weights file (.safetensors/.pth) instead of the hub
    trainable: bool = True  # False freezes the backbone (BatchNorm statistics too)
    unfreeze_last: int = 0  # with trainable=false: still train the last N blocks
    mean: tuple[float, float, float] | None = None  # pixel normalisation; None: the model's
    std: tuple[float, float, float] | None = None  # pixel normalisation; None: the model's
    pooling: ImagePooling = "avg"  # "avg" or CLIP's "attention" pooling (CNNs)
    lr: float = 1e-4  # learning rate of the backbone


@dataclass
class TextConfig:
    name: str = "distilbert-base-uncased"  # a preset, a hub id, a local folder, or "clip"
    pretrained: bool = True  # start from pretrained weights
    trainable: bool = True  # False freezes the transformer
    unfreeze_last: int = 0  # with trainable=false: still train the last N transformer layers
    pooling: TextPooling | None = None  # "cls" or "mean"; None: the preset's own
    lr: float = 1e-5  # learning rate of the transformer
    vocab_size: int = 1000  # tiny encoder only: WordPiece vocabulary trained on the captions


@dataclass
class HeadConfig:
    kind: HeadKind = "mlp"  # "mlp" (the tutorial's head), "linear" or "none"
    embed_dim: int = 256  # width of the shared embedding space
    dropout: float = 0.1  # dropout inside the mlp head
    lr: float = 1e-3  # learning rate of the heads and the temperature

    def __post_init__(self) -> None:
        check_positive("head", embed_dim=self.embed_dim, lr=self.lr)


@dataclass
class LossConfig:
    kind: LossKind = "clip"  # "clip" (softmax cross-entropy) or "siglip" (sigmoid, learned bias)
    multi_positive: bool = True  # duplicates of an image or caption in a batch are positives
    init_temperature: float = 0.07  # starting temperature, either kind; SigLIP's paper: 0.1
    learn_temperature: bool = True  # False keeps the temperature fixed
    init_bias: float = -10.0  # siglip only: starting logit bias (the paper's -10)

    def __post_init__(self) -> None:
        check_positive("loss", init_temperature=self.init_temperature)


def check_positive(section: str, **values: float) -> None:
    """Refuse a value that must be above zero, when the config is read, not at the first step
    (``train.batch_size=0`` used to end in a ZeroDivisionError once the model was built)."""
    for name, value in values.items():
        if not value > 0:
            raise ConfigError(f"{section}.{name} must be greater than 0, got {value!r}")


REPORT_TO = ("jsonl", "tensorboard", "wandb")  # simpleclip.train.reporting: where curves go


def check_report_to(names: list[str]) -> None:
    """Refuse a ``train.report_to`` name that no reporter answers to, listing the valid ones."""
    if isinstance(names, str):
        raise ConfigError(f"train.report_to must be a list of names, got {names!r}")
    unknown = [name for name in names if name not in REPORT_TO]
    if unknown:
        raise ConfigError(
            f"train.report_to: unknown {', '.join(map(repr, unknown))}; "
            f"valid: {', '.join(REPORT_TO)}"
        )


@dataclass
class TrainConfig:
    epochs: int = 5  # passes over the training split
    patience: int = 0  # stop after this many epochs without a better dev score; 0: never
    batch_size: int = 128  # pairs per step: also the number of negatives per pair
    weight_decay: float = 0.01  # AdamW decay of weight matrices (not biases, norms, scale)
    warmup_steps: int = 100  # linear warm-up, then cosine decay to zero
    grad_clip: float = 1.0  # max gradient norm; 0 turns clipping off
    precision: PrecisionName = "auto"  # auto (bf16/fp16 on CUDA, fp32 elsewhere), fp32, bf16, fp16
    device: str = "auto"  # auto (cuda, then mps, then cpu), or a torch device string
    seed: int = 0  # same seed, same result on CPU
    threads: int = 0  # CPU threads for torch; 0 keeps torch's default
    cache_features: bool = False  # frozen encoders only: encode the data once, train the heads
    micro_batch_size: int = 0  # > 0: encode each batch in micro-batches (GradCache), same loss
    compile: bool = False  # torch.compile the towers: faster steps after a warm-up (10-60 s)
    keep_freed_memory: bool = True  # CPU: glibc keeps freed memory, no page faults (allocator)
    channels_last: bool = True  # a trained CNN image tower in channels_last layout (faster)
    distributed_loss: DistributedLoss = "gather"  # torchrun: all ranks' negatives, or "local"
    init_from: str | None = None  # a checkpoint folder: start from its heads (not random)
    out_dir: str = "runs/clip"  # where checkpoints, metrics and the config go
    keep_last: bool = True  # False: remove last/ (the resume state) once the run ends; best/ stays
    report_to: list[str] = field(default_factory=lambda: ["jsonl"])  # + tensorboard, wandb

    def __post_init__(self) -> None:
        check_report_to(self.report_to)
        check_positive("train", epochs=self.epochs, batch_size=self.batch_size)
        if self.batch_size == 1:  # one pair has no negative: the loss is 0 and nothing learns
            raise ConfigError(
                "train.batch_size=1 gives each caption no other picture to tell apart (the "
                "contrastive loss is 0 at every step); use 2 or more (the course uses 128)."
            )
        if self.patience < 0:
            raise ConfigError(
                f"train.patience must be 0 (train every epoch) or a number of epochs without a "
                f"better dev score after which to stop, got {self.patience}."
            )


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    text: TextConfig = field(default_factory=TextConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


class ConfigError(ValueError):
    """A config file or override that does not fit the dataclasses."""


CONFIG_DIR = Path(__file__).resolve().parent / "configs"  # shipped with the package


def find_config(name: str | Path) -> Path:
    """A config file by path, or by name among the configs shipped in ``simpleclip/configs/``."""
    for candidate in (Path(name), CONFIG_DIR / name, CONFIG_DIR / f"{name}.yaml"):
        if candidate.is_file():
            return candidate
    known = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))) or "none found"
    raise FileNotFoundError(f"No config {name!r}: not a file, and not in {CONFIG_DIR} ({known}).")


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> Config:
    """Defaults, updated by a YAML file, updated by ``section.key=value`` overrides."""
    config = Config()
    if path is not None:
        path = find_config(path)
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:  # a python/object tag lands here too: nothing is run
            where = getattr(err, "problem_mark", None)
            line = f", line {where.line + 1}" if where is not None else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise ConfigError(
                f"{path}{line}: not a simpleclip config ({problem}). Restore the file, or "
                "retrain (--overwrite) if it came from a checkpoint you do not trust."
            ) from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
        config = merge(config, raw, source=str(path))
    return apply_overrides(config, overrides)


def apply_overrides(config: Config, overrides: Iterable[str]) -> Config:
    """Apply ``section.key=value`` strings; values are parsed as YAML, then type-checked."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or "." not in key:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        section, name = key.strip().split(".", 1)
        config = merge(config, {section: {name: yaml.safe_load(text)}}, source=f"--set {item}")
    return config


def merge(config: Any, updates: dict[str, Any], source: str, section: str = "") -> Any:
    """A copy of dataclass ``config`` with ``updates`` (nested dicts) checked and applied;
    ``section`` (``"train."``) prefixes the keys errors name."""
    hints = typing.get_type_hints(type(config))
    changes = {}
    for key, value in updates.items():
        if key not in hints:
            valid = ", ".join(hints)
            raise ConfigError(
                f"{source}: unknown key {key!r} in {type(config).__name__}; valid keys: {valid}"
            )
        current = getattr(config, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: {key} must be a mapping")
            changes[key] = merge(current, value, source, f"{section}{key}.")
        else:
            changes[key] = _check_type(value, hints[key], f"{source}: {section}{key}")
    return dataclasses.replace(config, **changes)


def _check_type(value: Any, hint: Any, where: str) -> Any:
    """Return ``value`` converted to ``hint`` if that is lossless, else raise ConfigError."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _check_type(value, next(a for a in args if a is not type(None)), where)
    if origin is Literal:
        if value not in args:
            choices = [repr(a) for a in args]
            valid = " or ".join(choices) if len(args) == 2 else "one of " + ", ".join(choices)
            raise ConfigError(f"{where} must be {valid}, got {value!r}")
        return value
    if origin is list:  # a list, or "a,b" as typed after --set
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return [_check_type(v.strip() if isinstance(v, str) else v, args[0], where) for v in items]
    if origin is tuple:
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ConfigError(f"{where} must be a list of {len(args)} values, got {value!r}")
        return tuple(_check_type(v, a, where) for v, a in zip(value, args, strict=True))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):  # YAML 1.1 reads 3e-4 as a string
        try:
            return float(value)
        except ValueError:
            pass
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"{where} must be {hint.__name__}, got {value!r}")
    return value


def to_dict(config: Config) -> dict[str, Any]:
    """Plain nested dict (tuples become lists), ready for YAML or JSON."""

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return list(value) if isinstance(value, tuple) else value

    return plain(dataclasses.asdict(config))


def save_config(config: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
