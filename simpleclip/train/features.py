"""Frozen-encoder feature caching: encode the data once, then train only what can change.

When an encoder is frozen, every epoch would recompute exactly the same features, and with both
frozen that is nearly all of the work. So we compute the frozen towers' features (each image's,
each caption's) once, save them under the data folder, and train the rest on them: with both
towers frozen only the heads and the temperature train, and an epoch takes seconds instead of
minutes. With the image tower alone frozen this is locked-image tuning (LiT, Zhai et al. 2022):
the pictures are encoded once, the text tower is fine-tuned on the cached image features.
The cache key covers everything that changes the features: the encoders' names, settings and
weights, the image preprocessing, the tokenization and the data (file names, sizes and
modification times, and the captions), hashed with ``simpleclip.cache``. Any change, a new
file; a damaged file is computed again. Features are computed by ``simpleclip.inference``, like
every other encoding. Augmentation does not apply here: a cached picture always gives the same
features.
Taught in ``notebooks/06_training.ipynb``.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from simpleclip.cache import digest, file_stamp, read_cache_file, weights_fingerprint
from simpleclip.checkpoint import atomic_file
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
    progress: bool = True,
) -> torch.Tensor:
    """Encoder outputs (before the heads) of one tower for every image or every caption.

    ``progress``: a progress bar (computing Flickr8k's image features takes minutes on a CPU).

    Shapes: image -> (N_images, D_img); text -> (N_captions, D_txt); float32 on the CPU.
    """
    if tower == "image":
        return embed_images(
            model, dataset.images(), batch_size, num_workers, features=True, progress=progress
        )
    batches = caption_batches(dataset, batch_size)
    return embed_texts(model, batches, features=True, progress=progress)


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


def frozen_towers(model: CLIPModel) -> tuple[str, ...]:
    """The towers (``"image"``, ``"text"``) whose encoder has no trainable parameter: the ones
    whose features cannot change during training, so the ones worth caching."""
    encoders = {"image": model.image_encoder, "text": model.text_encoder}
    return tuple(
        tower for tower in TOWERS if not any(p.requires_grad for p in encoders[tower].parameters())
    )


def cached_features(
    model: CLIPModel,
    dataset: CaptionDataset,
    cache_dir: str | Path,
    batch_size: int = 128,
    towers: tuple[str, ...] = TOWERS,
    progress: bool = True,
) -> dict[str, torch.Tensor]:
    """The features of ``towers`` (both by default), ``{"image_features": ...,
    "text_features": ...}``, each read from ``cache_dir`` when an up-to-date copy is there (a
    damaged file is computed again); ``progress``: a bar while computing."""
    features = {}
    for tower in towers:
        path = Path(cache_dir) / f"{tower}-features-{feature_key(model, dataset, tower)}.pt"
        tensor = read_cache_file(path)
        if not isinstance(tensor, torch.Tensor):
            tensor = compute_tower_features(model, dataset, tower, batch_size, progress=progress)
            with atomic_file(path) as tmp:  # a reader never sees half a file
                torch.save(tensor, tmp)
        features[f"{tower}_features"] = tensor
    return features


def embed_features(
    model: CLIPModel,
    features: dict[str, torch.Tensor],
    dataset: CaptionDataset,
    batch_size: int = 4096,
) -> Embeddings:
    """The embeddings ``retrieval_metrics`` reads: cached features projected through the heads;
    a tower without cached features (the one being trained) encodes ``dataset`` itself."""
    if "image_features" in features:
        image_features = features["image_features"].split(batch_size)
        image_embeds = encode_batches(model, model.project_image, image_features)
    else:
        image_embeds = embed_images(model, dataset.images())
    if "text_features" in features:
        text_features = features["text_features"].split(batch_size)
        text_embeds = encode_batches(model, model.project_text, text_features)
    else:
        text_embeds = embed_texts(model, caption_batches(dataset))
    return Embeddings(image_embeds, text_embeds, torch.tensor(dataset.caption_image))


class FeatureDataset(Dataset):
    """The pairs of a ``CaptionDataset``, served as cached features instead of pixels and ids.

    It walks the data exactly like the dataset it wraps (``pairs`` mode, ``set_epoch``). A tower
    without cached features is served as the wrapped dataset serves it: pictures (with its
    transform or image cache, seeded per item), or padded token ids.
    """

    def __init__(self, dataset: CaptionDataset, features: dict[str, torch.Tensor]) -> None:
        self.dataset = dataset
        self.image_features = features.get("image_features")
        self.text_features = features.get("text_features")

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def __getitem__(self, index: int) -> dict[str, Any]:
        caption, image = self.dataset.pair(index)
        item: dict[str, Any] = {"caption": caption, "image_id": image}
        if self.image_features is None:
            item["image"] = self.dataset.load_image(image, augment_seed=index)
        return item

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Shapes: image_features (B, D_img) or images (B, ...), text_features (B, D_txt) or
        input_ids and attention_mask (B, L); image_ids, text_ids (B,)."""
        captions = torch.tensor([item["caption"] for item in items])
        images = torch.tensor([item["image_id"] for item in items])
        batch: dict[str, Any] = {
            "image_ids": images,
            "text_ids": torch.as_tensor(self.dataset.caption_text_id[captions.numpy()]),
        }
        if self.image_features is not None:
            batch["image_features"] = self.image_features[images]
        else:
            batch["images"] = torch.stack([item["image"] for item in items])
        if self.text_features is not None:
            batch["text_features"] = self.text_features[captions]
        else:
            batch.update(self.dataset.collate_text(captions.tolist()))
        return batch
