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

from simpleclip.cache import data_cache_dir
from simpleclip.config import Config
from simpleclip.data import CaptionDataset, build_transforms, load_split, make_synthetic
from simpleclip.data.dataset import find_images_dir
from simpleclip.data.image_cache import build_image_cache
from simpleclip.evaluate import eval_split, evaluate, retrieval_metrics
from simpleclip.model import CLIPModel, build_model
from simpleclip.tokenizer import train_wordpiece_tokenizer
from simpleclip.train.features import FeatureDataset, cached_features, embed_features

NO_VALIDATION = "none"  # data.val_split value: no per-epoch evaluation


def prepare_data(config: Config) -> Path:
    """The dataset folder; the synthetic set is built there first if the config asks for it."""
    root = Path(config.data.root)
    if config.data.synthetic_images > 0 and not root.exists():
        make_synthetic(root, n_images=config.data.synthetic_images, seed=config.train.seed)
    return root


def build_datasets(
    config: Config, model: CLIPModel, root: Path
) -> tuple[CaptionDataset, CaptionDataset | None]:
    """Training and validation datasets (``data.train_split``, ``data.val_split``) with the
    image encoder's own preprocessing; no validation set when ``val_split`` is ``"none"``.

    With cached features the train set uses the eval transform: features are computed once.
    With ``data.skip_bad_images`` unreadable pictures are left out of both sets (and so out of
    the image and feature caches, which are built from ``image_names``).
    """
    pre = model.image_encoder.preprocessing
    augment = not config.train.cache_features
    train_tf = build_transforms(pre, augment, config.data.crop_scale, config.data.color_jitter)
    common = {
        "tokenizer": model.tokenizer,
        "max_length": config.data.max_length,
        "skip_bad_images": config.data.skip_bad_images,
    }
    images = find_images_dir(root)
    train_set = CaptionDataset(
        load_split(root, config.data.train_split),
        images,
        transform=train_tf,
        pairs=config.data.pairs,
        seed=config.train.seed,
        **common,
    )
    if config.data.val_split == NO_VALIDATION:
        return train_set, None
    dev_set = eval_split(model, root, config.data.val_split, config.data.skip_bad_images)
    return train_set, dev_set


def new_model(config: Config, root: Path) -> CLIPModel:
    """The model a config describes; a from-scratch text encoder gets a tokenizer trained here."""
    tokenizer = None
    if config.text.name == "tiny":  # a from-scratch text encoder gets a tokenizer of its own
        captions = load_split(root, config.data.train_split)["caption"]
        tokenizer = train_wordpiece_tokenizer(captions, config.text.vocab_size)
    return build_model(config, tokenizer=tokenizer)


def training_data(
    config: Config, model: CLIPModel, root: Path
) -> tuple[CaptionDataset | FeatureDataset, Callable[[], dict | None]]:
    """The training set (pictures, or cached features) and a function giving dev metrics
    (None without a validation split)."""
    train_set, dev_set = build_datasets(config, model, root)
    cache = data_cache_dir(root)
    if not config.train.cache_features:
        if config.data.image_cache:
            pre = model.image_encoder.preprocessing
            image_cache = build_image_cache(train_set.images_dir, train_set.image_names, pre, cache)
            train_set.use_image_cache(image_cache.filename)
        return train_set, lambda: evaluate(model, dev_set) if dev_set else None
    encoders = (model.image_encoder, model.text_encoder)
    if any(p.requires_grad for encoder in encoders for p in encoder.parameters()):
        raise ValueError(
            "train.cache_features needs frozen encoders (their features must not change): "
            "add --frozen, or set image.trainable=false and text.trainable=false, with "
            "unfreeze_last=0 and image.pooling=avg (attention pooling is trained)."
        )
    train_features = cached_features(model, train_set, cache)
    if dev_set is None:
        return FeatureDataset(train_set, train_features), lambda: None
    dev_features = cached_features(model, dev_set, cache)

    def validate() -> dict:
        return retrieval_metrics(embed_features(model, dev_features, dev_set.caption_image))

    return FeatureDataset(train_set, train_features), validate
