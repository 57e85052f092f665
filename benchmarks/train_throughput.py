"""Training throughput: simpleclip's input pipeline versus the loop people write first.

Prints one JSON line per mode, then one with the speed-up, all measured in one run:

* ``fast``: simpleclip's pipeline, its trainer built by ``Trainer.build`` exactly as ``train``
  builds it. Pictures decoded once into the pre-resized uint8 image cache, then augmented per
  item as decoded ones are, captions tokenized once and padded per batch; a trained CNN in
  channels_last (``train.channels_last``); on CUDA also bf16 autocast, pinned memory and
  non-blocking copies, DataLoader workers; with ``--set train.compile=true`` the towers are
  compiled (``torch.compile``; warm-up excluded).
* ``baseline``: the straightforward loop of the popular tutorials. Each ``__getitem__`` decodes
  the JPEG, runs albumentations and tokenizes its caption padded to ``max_length``; the same
  trainer in fp32, without channels_last or compiling.

For each mode: pairs/s of the training step alone (one batch already on the device, repeated)
and of the full loop with data loading, plus peak memory (CUDA max allocated, else the process's
peak RSS). The modes alternate in short rounds and medians are kept, so load from other jobs on
the machine hits both alike. Weights are random, so no download is needed.

    python benchmarks/train_throughput.py --config synthetic_tiny --batch-size 128
    python benchmarks/train_throughput.py --config flickr8k_resnet50_distilbert --mode fast \\
        --set data.root=data/flickr8k --steps 50       # on a GPU
    python benchmarks/train_throughput.py --config synthetic_tiny --batch-size 128 \
        --set train.compile=true                       # compiled fast loop
    python benchmarks/train_throughput.py --smoke       # CI: a few steps, tiny data
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from simpleclip.config import NO_VALIDATION, Config, load_config
from simpleclip.data import CaptionDataset, load_rgb, load_split
from simpleclip.device import select_device
from simpleclip.model import CLIPModel, build_model
from simpleclip.tokenizer import train_wordpiece_tokenizer
from simpleclip.train.data import prepare_data, training_data
from simpleclip.train.trainer import Trainer

OFFLINE_ARCHITECTURES = {  # hub text models rebuilt from their default config, no download
    "distilbert-base-uncased": "DistilBertConfig",
    "sentence-transformers/all-mpnet-base-v2": "MPNetConfig",
    "bert-base-uncased": "BertConfig",
}


class TutorialDataset(Dataset):
    """The baseline: decode, augment and tokenize inside ``__getitem__``, every time."""

    def __init__(self, data: CaptionDataset, tokenizer, transform, max_length: int) -> None:
        self.data, self.tokenizer, self.transform = data, tokenizer, transform
        self.max_length = max_length

    def __len__(self) -> int:
        return len(self.data.captions)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image_index = int(self.data.caption_image[index])
        pixels = np.asarray(load_rgb(self.data.images_dir / self.data.image_names[image_index]))
        tokens = self.tokenizer(
            self.data.captions[index],
            padding="max_length",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return {
            "images": self.transform(image=pixels)["image"],
            "input_ids": tokens["input_ids"][0],
            "attention_mask": tokens["attention_mask"][0],
            "image_ids": torch.tensor(image_index),
            "text_ids": torch.tensor(index),
        }


def build_offline_model(config: Config, root: Path) -> CLIPModel:
    """The config's architecture with random weights, buildable with no network."""
    import transformers

    captions = load_split(root, "train")["caption"]
    tokenizer = train_wordpiece_tokenizer(captions, max(config.text.vocab_size, 1000))
    hf_config = None
    if config.text.name in OFFLINE_ARCHITECTURES:
        config_class = getattr(transformers, OFFLINE_ARCHITECTURES[config.text.name])
        hf_config = config_class(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    return build_model(config, tokenizer=tokenizer, hf_config=hf_config, pretrained=False)


class Setup:
    """One mode's model, optimizer loop and data, ready to be timed."""

    def __init__(self, config: Config, model: CLIPModel, mode: str) -> None:
        if mode == "baseline":  # the tutorials' loop: fp32, default memory layout, not compiled
            plain = {"precision": "fp32", "channels_last": False, "compile": False}
            config = replace(config, train=replace(config.train, **plain))
        self.mode, self.config = mode, config
        self.device = select_device(config.train.device)
        self.loop = Trainer.build(model, config, self.device, total_steps=10_000)
        self.precision = self.loop.precision
        self.loader = make_loader(config, model, mode, self.device)
        model.train()
        self.batch = next(iter(self.loader))
        self.batches = forever(self.loader)
        self.time_loop(3)  # warm-up, not measured: allocator, oneDNN kernels, torch.compile

    def time_steps(self, steps: int) -> float:
        """Seconds for ``steps`` optimisation steps on one batch already loaded."""
        return timed(lambda: self.loop.step(self.batch), steps, self.device)

    def time_loop(self, steps: int) -> float:
        """Seconds for ``steps`` steps with data loading, as in training."""
        return timed(lambda: self.loop.step(next(self.batches)), steps, self.device)


def forever(loader: DataLoader):
    """Batches without end, each freshly loaded (``itertools.cycle`` would replay stored ones)."""
    while True:
        yield from loader


def measure(setups: list[Setup], name: str, steps: int, rounds: int) -> list[dict]:
    """Alternate the modes in short rounds and keep medians: load from other jobs hits both."""
    times = {s.mode: {"step": [], "loop": []} for s in setups}
    for _ in range(rounds):
        for setup in setups:
            times[setup.mode]["step"].append(setup.time_steps(steps))
            times[setup.mode]["loop"].append(setup.time_loop(steps))
    peak, kind = peak_memory(setups[0].device)
    rows = []
    for setup in setups:
        pairs = setup.config.train.batch_size * steps
        rows.append(
            {
                "mode": setup.mode,
                "device": str(setup.device),
                "config": name,
                "batch_size": setup.config.train.batch_size,
                "steps": steps,
                "rounds": rounds,
                "precision": str(setup.precision.dtype or "fp32").replace("torch.", ""),
                "step_pairs_per_s": round(pairs / float(np.median(times[setup.mode]["step"])), 1),
                "loop_pairs_per_s": round(pairs / float(np.median(times[setup.mode]["loop"])), 1),
                "peak_memory_mb": round(peak, 1),
                "memory": kind,
            }
        )
    return rows


def make_loader(config: Config, model: CLIPModel, mode: str, device: torch.device) -> DataLoader:
    """The training split built exactly as ``train`` builds it (``training_data``), the image
    cache on in the fast mode; the baseline wraps the same pictures and transform in the
    tutorials' per-item dataset."""
    as_trained = replace(
        config,
        data=replace(config.data, image_cache=mode != "baseline", val_split=NO_VALIDATION),
    )
    data, _ = training_data(as_trained, model, Path(config.data.root))
    workers = config.data.num_workers
    if mode == "baseline":
        naive = TutorialDataset(data, model.tokenizer, data.transform, config.data.max_length)
        return DataLoader(
            naive,
            batch_size=config.train.batch_size,
            shuffle=True,
            num_workers=workers,
            drop_last=True,
        )
    return DataLoader(
        data,
        batch_size=config.train.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        collate_fn=data.collate,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
    )


def timed(step, steps: int, device: torch.device) -> float:
    for _ in range(2):  # warm-up: allocator, kernels, lazy initialisation
        step()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return time.perf_counter() - start


def peak_memory(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20, "cuda_max_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process_peak_rss"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="synthetic_tiny")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per mode")
    parser.add_argument("--mode", choices=["both", "fast", "baseline"], default="both")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--smoke", action="store_true", help="a few steps on tiny data (CI)")
    args = parser.parse_args(argv)
    overrides = list(args.overrides)
    if args.smoke:
        tmp = tempfile.mkdtemp(prefix="throughput-")
        overrides += [f"data.root={tmp}/data", "data.synthetic_images=120", "data.num_workers=0"]
        args.steps, args.rounds, args.batch_size = 2, 1, args.batch_size or 16
    if args.batch_size:
        overrides.append(f"train.batch_size={args.batch_size}")
    config = load_config(
        args.config, ["image.pretrained=false", "text.pretrained=false", *overrides]
    )
    if config.train.threads > 0:
        torch.set_num_threads(config.train.threads)
    root = prepare_data(config)
    setups = []
    for mode in ["baseline", "fast"] if args.mode == "both" else [args.mode]:
        torch.manual_seed(config.train.seed)
        setups.append(Setup(config, build_offline_model(config, root), mode))
    results = {
        row["mode"]: row for row in measure(setups, Path(args.config).stem, args.steps, args.rounds)
    }
    for row in results.values():
        print(json.dumps(row), flush=True)
    if len(results) == 2:
        ratio = results["fast"]["loop_pairs_per_s"] / results["baseline"]["loop_pairs_per_s"]
        print(json.dumps({"speedup_full_loop": round(ratio, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
