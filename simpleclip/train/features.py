"""Frozen-encoder feature caching: encode the data once, then train only the heads.

When both encoders are frozen, every epoch would recompute exactly the same features, and that
is nearly all of the work. So we compute each image's and each caption's encoder features once,
save them under the data folder, and train the heads and the temperature on them: an epoch
takes seconds instead of minutes. The cache key covers everything that changes the features:
the encoders' names, settings and weights, the image preprocessing, the tokenization and the
data (file names, sizes and modification times, and the captions), hashed with
``simpleclip.cache``. Any change, a new file; a damaged file is computed again. Features are
computed by ``simpleclip.inference``, like every other encoding. Augmentation does not apply
here: a cached picture always gives the same features.
Taught in ``notebooks/06_training.ipynb``.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from simpleclip.cache import digest, file_stamp, read_cache_file, weights_fingerprint, write_atomic
from simpleclip.data import CaptionDataset
from simpleclip.evaluate import Embeddings
from simpleclip.inference import caption_batches, embed_images, embed_texts, encode_batches
from simpleclip.model import CLIPModel

TOWERS = ("image", "text")
FEATURES_VERSION = 2  # part of every key: bump when features are computed differently


def compute_tower_features(
    model: CLIPModel,
    dataset: CaptionDataset,
    tower: str,
    batch_size: int = 128,
    num_workers: int = 0,
) -> torch.Tensor:
    """Encoder outputs (before the heads) of one tower for every image or every caption.

    Shapes: image -> (N_images, D_img); text -> (N_captions, D_txt); float32 on the CPU.
    """
    if tower == "image":
        return embed_images(
            model, dataset.images(), batch_size, num_workers, features=True, progress=True
        )
    return embed_texts(model, caption_batches(dataset, batch_size), features=True, progress=True)


def feature_key(model: CLIPModel, dataset: CaptionDataset, tower: str) -> str:
    """A digest of everything one tower's features depend on (see the module docstring).

    Each tower has its own key, so changing the text encoder reuses the image features.
    """
    config = model.config
    if tower == "image":
        settings = [config.image.name, config.image.pooling, asdict(model.preprocessing)]
        encoder = model.image_encoder
        data = [f"{name}:{file_stamp(dataset.images_dir / name)}" for name in dataset.image_names]
    else:
        settings = [config.text.name, config.text.pooling, config.data.max_length]
        encoder = model.text_encoder
        data = [json.dumps(dataset.token_ids)]  # the captions, as the model sees them
    header = json.dumps([FEATURES_VERSION, tower, settings], sort_keys=True)
    return digest(header, weights_fingerprint(encoder), *data)[:24]


def cached_features(
    model: CLIPModel, dataset: CaptionDataset, cache_dir: str | Path, batch_size: int = 128
) -> dict[str, torch.Tensor]:
    """Both towers' features, ``{"image_features": ..., "text_features": ...}``, each read from
    ``cache_dir`` when an up-to-date copy is there (a damaged file is computed again)."""
    features = {}
    for tower in TOWERS:
        path = Path(cache_dir) / f"{tower}-features-{feature_key(model, dataset, tower)}.pt"
        tensor = read_cache_file(path)
        if not isinstance(tensor, torch.Tensor):
            tensor = compute_tower_features(model, dataset, tower, batch_size)
            write_atomic(tensor, path)
        features[f"{tower}_features"] = tensor
    return features


def embed_features(
    model: CLIPModel, features: dict[str, torch.Tensor], caption_image: Any, batch_size: int = 4096
) -> Embeddings:
    """Project cached features through the heads: the embeddings ``retrieval_metrics`` reads."""
    image_features = features["image_features"].split(batch_size)
    text_features = features["text_features"].split(batch_size)
    return Embeddings(
        encode_batches(model, model.project_image, image_features),
        encode_batches(model, model.project_text, text_features),
        torch.tensor(caption_image),
    )


class FeatureDataset(Dataset):
    """The pairs of a ``CaptionDataset``, served as cached features instead of pixels and ids.

    It walks the data exactly like the dataset it wraps (``pairs`` mode, ``set_epoch``).
    """

    def __init__(self, dataset: CaptionDataset, features: dict[str, torch.Tensor]) -> None:
        self.dataset = dataset
        self.image_features = features["image_features"]
        self.text_features = features["text_features"]

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def __getitem__(self, index: int) -> tuple[int, int]:
        return self.dataset.pair(index)

    def collate(self, pairs: list[tuple[int, int]]) -> dict[str, Any]:
        """Shapes: image_features (B, D_img), text_features (B, D_txt), ids (B,)."""
        captions = torch.tensor([c for c, _ in pairs])
        images = torch.tensor([i for _, i in pairs])
        return {
            "image_features": self.image_features[images],
            "text_features": self.text_features[captions],
            "image_ids": images,
            "text_ids": torch.as_tensor(self.dataset.caption_text_id[captions.numpy()]),
        }
