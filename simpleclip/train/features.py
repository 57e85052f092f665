"""Frozen-encoder feature caching: encode the data once, then train only the heads.

When both encoders are frozen, every epoch would recompute exactly the same features, and that
is nearly all of the work. So we compute each image's and each caption's encoder features once,
save them under the data folder, and train the heads and the temperature on them: an epoch
takes seconds instead of minutes. The cache key covers everything that changes the features:
the encoders' names, settings and weights, the image preprocessing, the tokenization and the
data (file names, sizes and modification times, and the captions). Any change, a new file.
Augmentation does not apply here: a cached picture always gives the same features.
Taught in ``notebooks/06_training.ipynb``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from simpleclip.data import CaptionDataset
from simpleclip.evaluate import Embeddings
from simpleclip.model import CLIPModel

TOWERS = ("image", "text")


@torch.no_grad()
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
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    chunks = []
    if tower == "image":
        images = DataLoader(dataset.images(), batch_size=batch_size, num_workers=num_workers)
        for batch in tqdm(images, desc="image features", leave=False):
            chunks.append(model.image_encoder(batch.to(device)).float().cpu())
    else:
        starts = range(0, len(dataset.captions), batch_size)
        for start in tqdm(starts, desc="text features", leave=False):
            stop = min(start + batch_size, len(dataset.captions))
            batch = dataset.collate_text(range(start, stop))
            ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
            chunks.append(model.text_encoder(ids, mask).float().cpu())
    model.train(was_training)
    return torch.cat(chunks)


def compute_features(
    model: CLIPModel, dataset: CaptionDataset, batch_size: int = 128, num_workers: int = 0
) -> dict[str, torch.Tensor]:
    """Both towers' features: ``{"image_features": ..., "text_features": ...}``."""
    return {
        f"{tower}_features": compute_tower_features(model, dataset, tower, batch_size, num_workers)
        for tower in TOWERS
    }


def feature_key(model: CLIPModel, dataset: CaptionDataset, tower: str) -> str:
    """A digest of everything one tower's features depend on (see the module docstring).

    Each tower has its own key, so changing the text encoder reuses the image features.
    """
    digest = hashlib.sha256()
    config = model.config
    if tower == "image":
        settings = [
            config.image.name,
            config.image.pooling,
            asdict(model.image_encoder.preprocessing),
        ]
    else:
        settings = [config.text.name, config.text.pooling, config.data.max_length]
    digest.update(json.dumps([tower, settings], sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        if name.startswith(f"{tower}_encoder."):
            digest.update(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
    if tower == "image":
        for name in dataset.image_names:
            stat = (dataset.images_dir / name).stat()
            digest.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    else:
        digest.update(json.dumps(dataset.token_ids).encode())  # captions, as the model sees them
    return digest.hexdigest()[:24]


def cached_features(
    model: CLIPModel, dataset: CaptionDataset, cache_dir: str | Path, batch_size: int = 128
) -> dict[str, torch.Tensor]:
    """``compute_features``, each tower read from ``cache_dir`` when an up-to-date copy is there."""
    features = {}
    for tower in TOWERS:
        path = Path(cache_dir) / f"{tower}-features-{feature_key(model, dataset, tower)}.pt"
        if path.is_file():
            features[f"{tower}_features"] = torch.load(path, weights_only=True)
            continue
        tensor = compute_tower_features(model, dataset, tower, batch_size)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(tensor, tmp)
        tmp.replace(path)  # never a half-written cache file
        features[f"{tower}_features"] = tensor
    return features


@torch.no_grad()
def embed_features(
    model: CLIPModel, features: dict[str, torch.Tensor], caption_image: Any
) -> Embeddings:
    """Project cached features through the heads: the embeddings ``retrieval_metrics`` reads."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    image_embeds = model.project_image(features["image_features"].to(device)).cpu()
    text_embeds = model.project_text(features["text_features"].to(device)).cpu()
    model.train(was_training)
    return Embeddings(image_embeds, text_embeds, torch.tensor(caption_image))


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
