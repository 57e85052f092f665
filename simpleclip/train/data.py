"""The data side of training: the dataset folder, the splits, the model's tokenizer, the caches.

``train`` calls these before its first step: build the synthetic set if asked, read the
training and validation splits with the image encoder's own preprocessing, and serve training
pairs from the fastest source that gives the same result: cached encoder features when both
encoders are frozen, else pictures pre-resized once into a uint8 cache. Caches live beside the
data, or in the user's cache for read-only data (``simpleclip.cache.data_cache_dir``).
Taught in ``notebooks/06_training.ipynb``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from simpleclip.cache import data_cache_dir
from simpleclip.checkpoint import WEIGHTS, readable_directory
from simpleclip.config import NO_VALIDATION, Config
from simpleclip.data import CaptionDataset, build_transforms, load_split, make_synthetic
from simpleclip.data.dataset import find_images_dir
from simpleclip.data.image_cache import build_image_cache
from simpleclip.data.shards import ShardDataset  # webdataset itself only once shards are read
from simpleclip.evaluate import eval_split, evaluate, retrieval_metrics
from simpleclip.model import CLIPModel, build_model
from simpleclip.safe_files import load_safetensors
from simpleclip.tokenizer import train_wordpiece_tokenizer
from simpleclip.train.features import (
    FeatureDataset,
    cached_features,
    embed_features,
    frozen_towers,
)
from simpleclip.train.from_clip import start_from_clip, uses_clip_towers


def prepare_data(config: Config) -> Path:
    """The dataset folder; the synthetic set is built there first if the config asks for it."""
    root = Path(config.data.root)
    if config.data.synthetic_images > 0 and not root.exists():
        make_synthetic(root, n_images=config.data.synthetic_images, seed=config.train.seed)
    return root


def build_datasets(
    config: Config, model: CLIPModel, root: Path
) -> tuple[CaptionDataset | ShardDataset, CaptionDataset | None]:
    """Training and validation datasets (``data.train_split``, ``data.val_split``) with the
    image encoder's own preprocessing; no validation set when ``val_split`` is ``"none"``.

    With cached image features the train set uses the eval transform: they are computed once.
    With ``data.skip_bad_images`` unreadable pictures are left out of both sets (and so out of
    the image and feature caches, which are built from ``image_names``). With
    ``data.format=webdataset`` the training pairs stream from ``data.shards`` and the dev split
    is still read from the folder ``data.root``.
    """
    pre = model.image_encoder.preprocessing
    augment = not (config.train.cache_features and "image" in frozen_towers(model))
    train_tf = build_transforms(pre, augment, config.data.crop_scale, config.data.color_jitter)
    if config.data.format == "webdataset":
        train_set = shard_dataset(config, model, train_tf)
        if config.data.val_split != NO_VALIDATION and not root.is_dir():
            raise FileNotFoundError(
                f"data.val_split={config.data.val_split} is scored on the caption folder "
                f"data.root={root}, which does not exist (shards are for training): point "
                "data.root at the folder, or set data.val_split=none."
            )
    else:
        train_set = CaptionDataset(
            load_split(root, config.data.train_split),
            find_images_dir(root),
            transform=train_tf,
            pairs=config.data.pairs,
            seed=config.train.seed,
            tokenizer=model.tokenizer,
            max_length=config.data.max_length,
            skip_bad_images=config.data.skip_bad_images,
        )
    if config.data.val_split == NO_VALIDATION:
        return train_set, None
    dev_set = eval_split(model, root, config.data.val_split, config.data.skip_bad_images)
    return train_set, dev_set


def shard_dataset(config: Config, model: CLIPModel, transform: Any) -> ShardDataset:
    """The training pairs of ``data.shards`` (``data.format=webdataset``), read as ``data``
    and ``train`` say."""
    data = config.data
    return ShardDataset(
        data.shards,
        model.tokenizer,
        transform,
        config.train.batch_size,
        pairs=data.pairs,
        max_length=data.max_length,
        num_workers=data.num_workers,
        resampled=data.resampled,
        samples_per_epoch=data.samples_per_epoch,
        shuffle_buffer=data.shuffle_buffer,
        seed=config.train.seed,
    )


def new_model(config: Config, root: Path) -> CLIPModel:
    """The model a config describes; a from-scratch text encoder gets a tokenizer trained here.

    With ``train.init_from`` (a checkpoint folder, e.g. a linear probe's ``best/``) the model
    starts from that checkpoint's heads and temperature instead of random ones: a fine-tune
    that starts from random heads first spends its steps undoing noise in the shared space,
    while the encoders' gradients are meaningless. See ``load_matching_weights``. A run on
    ``"clip"`` towers starts from the whole pretrained CLIP ``train.init_from`` names
    (``train.from_clip``); its ``model.config`` is the config fitted to that CLIP.
    """
    if uses_clip_towers(config):
        return start_from_clip(config)
    tokenizer = None
    if config.text.name == "tiny":  # a from-scratch text encoder gets a tokenizer of its own
        captions = load_split(root, config.data.train_split)["caption"]
        tokenizer = train_wordpiece_tokenizer(captions, config.text.vocab_size)
    model = build_model(config, tokenizer=tokenizer)
    if config.train.init_from:
        load_matching_weights(model, config.train.init_from)
    return model


HEAD_TENSORS = ("image_head.", "text_head.", "logit_scale", "logit_bias")  # must all match


def load_matching_weights(model: CLIPModel, directory: str | Path) -> list[str]:
    """Copy into ``model`` every tensor of ``directory/model.safetensors`` whose name and shape
    match; returns their names. The heads and the temperature must all match.

    Raises:
        FileNotFoundError: no checkpoint in ``directory``.
        ValueError: a head tensor is missing from the checkpoint or has another shape (another
            head kind or ``embed_dim``, or encoders of other widths); the message names them.
    """
    try:
        directory = readable_directory(Path(directory).expanduser(), required=WEIGHTS)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"train.init_from: {err}") from None
    source, own = load_safetensors(directory / WEIGHTS), model.state_dict()
    fits = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
    heads = [k for k in own if k.startswith(HEAD_TENSORS)]
    bad = [
        f"{k} {tuple(own[k].shape)} vs {tuple(source[k].shape) if k in source else 'missing'}"
        for k in heads
        if k not in fits
    ]
    if bad:
        raise ValueError(
            f"train.init_from={directory}: its heads do not fit this model (model vs "
            f"checkpoint): {'; '.join(bad)}. Use a checkpoint with the same head.kind, "
            "head.embed_dim and encoder widths."
        )
    model.load_state_dict(fits, strict=False)
    return sorted(fits)


def training_data(
    config: Config, model: CLIPModel, root: Path, progress: bool = True
) -> tuple[CaptionDataset | FeatureDataset | ShardDataset, Callable[[], dict | None]]:
    """The training set (pictures, or cached features) and a function giving dev metrics
    (None without a validation split).

    With ``train.cache_features`` the frozen towers' features are cached; a trainable tower
    still sees its pictures or captions (the image tower frozen alone: LiT). ``progress``: bars
    while the image cache or the features are first computed.
    """
    train_set, dev_set = build_datasets(config, model, root)
    if config.data.format == "webdataset":  # pictures stream from the shards: nothing cached
        if config.train.cache_features:
            raise ValueError(
                "train.cache_features caches a caption folder's features; shards are streamed "
                "(data.format=webdataset). Set train.cache_features=false, or train from the "
                "folder (data.format=folder)."
            )
        return train_set, lambda: evaluate(model, dev_set) if dev_set else None
    cache = data_cache_dir(root)
    towers = frozen_towers(model) if config.train.cache_features else ()
    if config.train.cache_features and not towers:
        raise ValueError(
            "train.cache_features needs a frozen encoder (its features must not change): add "
            "--frozen, or set image.trainable=false (locked-image tuning) and/or "
            "text.trainable=false, with unfreeze_last=0 and image.pooling=avg (attention "
            "pooling is trained)."
        )
    if "image" not in towers and config.data.image_cache:
        pre = model.image_encoder.preprocessing
        image_cache = build_image_cache(
            train_set.images_dir, train_set.image_names, pre, cache, progress
        )
        train_set.use_image_cache(image_cache.filename)
    if not towers:
        return train_set, lambda: evaluate(model, dev_set) if dev_set else None
    features = cached_features(model, train_set, cache, towers=towers, progress=progress)
    train_set = FeatureDataset(train_set, features)
    if dev_set is None:
        return train_set, lambda: None
    dev_features = cached_features(model, dev_set, cache, towers=towers, progress=progress)

    def validate() -> dict:
        return retrieval_metrics(embed_features(model, dev_features, dev_set))

    return train_set, validate
