"""Fine-tuning both towers on a CPU: simpleclip's training pipeline versus the tutorial's loop.

EfficientNet-Lite0 + all-MiniLM-L6-v2 (real weights, both trainable) on the Flickr8k slice,
batch 32, in two programs, alternating in rounds (A B A B), each in a fresh process so that each
has its own C allocator settings:

* ``tutorial``: a re-creation of the popular tutorial's loop (moein-shariatnia/OpenAI-CLIP): a
  Dataset that decodes each JPEG with OpenCV and runs albumentations (resize + normalise) in
  ``__getitem__``, captions tokenized once and padded to the longest caption of the whole set,
  [CLS] pooling, its projection heads and soft-target loss, fp32, plain AdamW, glibc's default
  allocator.
* ``simpleclip``: the package's ``Trainer`` as ``simpleclip train`` builds it for
  ``flickr8k_slice_effnet_minilm`` with both encoders trainable: image cache, batches padded to
  their longest caption, mean pooling, ``train.keep_freed_memory`` (``simpleclip.allocator``),
  the CNN in channels_last layout (``train.channels_last``).

Extra variants: ``simpleclip-default-malloc`` (``train.keep_freed_memory=false``),
``simpleclip-env`` (the same, with ``GLIBC_TUNABLES`` set instead), ``tutorial-keep`` (the
tutorial with ``keep_freed_memory()``), ``simpleclip-contiguous`` (``train.channels_last=false``:
the CNN in the default memory layout).
Each program prints one JSON line per round: pairs/s over the timed steps (after 2 warm-up
steps), kernel (system) and user CPU seconds, minor page faults per step, peak RSS; then the
ratio simpleclip / tutorial per round and overall (medians).

    python benchmarks/finetune_throughput.py --rounds 2 --steps 25
    python benchmarks/finetune_throughput.py --variants simpleclip simpleclip-contiguous
    python benchmarks/finetune_throughput.py --smoke    # CI: tiny random models, synthetic data
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

VARIANTS = (
    "tutorial",
    "simpleclip",
    "simpleclip-default-malloc",
    "simpleclip-env",
    "simpleclip-contiguous",
    "tutorial-keep",
)
CONFIG = "flickr8k_slice_effnet_minilm"  # its data, weights and learning rates, fine-tuned
WEIGHTS = Path("~/.cache/simpleclip-offline").expanduser()
TUNABLES = "glibc.malloc.mmap_threshold=2147483648:glibc.malloc.trim_threshold=17179869184"


# ---- the tutorial's loop, written as the tutorial writes it -------------------------------


class TutorialDataset(Dataset):
    """Tokenize every caption at once (padded to the longest); decode + augment per item."""

    def __init__(self, image_paths: list[str], captions: list[str], tokenizer, size: int) -> None:
        import albumentations as A  # the tutorial's spelling

        self.image_paths, self.captions = image_paths, captions
        self.encoded = tokenizer(captions, padding=True, truncation=True, max_length=200)
        self.transforms = A.Compose([A.Resize(size, size), A.Normalize(max_pixel_value=255.0)])

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        import cv2

        item = {k: torch.tensor(v[index]) for k, v in self.encoded.items()}
        image = cv2.cvtColor(cv2.imread(self.image_paths[index]), cv2.COLOR_BGR2RGB)
        image = self.transforms(image=image)["image"]
        item["image"] = torch.tensor(image).permute(2, 0, 1).float()
        return item


class ProjectionHead(nn.Module):
    def __init__(self, in_dim: int, out_dim: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        self.projection, self.fc = nn.Linear(in_dim, out_dim), nn.Linear(out_dim, out_dim)
        self.dropout, self.layer_norm = nn.Dropout(dropout), nn.LayerNorm(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        projected = self.projection(x)
        x = self.dropout(self.fc(F.gelu(projected)))
        return self.layer_norm(x + projected)


class TutorialCLIP(nn.Module):
    def __init__(self, image_encoder: nn.Module, text_encoder: nn.Module) -> None:
        super().__init__()
        self.image_encoder, self.text_encoder = image_encoder, text_encoder
        self.image_projection = ProjectionHead(image_encoder.num_features)
        self.text_projection = ProjectionHead(text_encoder.config.hidden_size)
        self.temperature = 1.0

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        image_embeds = self.image_projection(self.image_encoder(batch["image"]))
        text_out = self.text_encoder(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        )
        text_embeds = self.text_projection(text_out.last_hidden_state[:, 0])  # [CLS] pooling
        logits = text_embeds @ image_embeds.T / self.temperature  # (B, B)
        similar = (image_embeds @ image_embeds.T + text_embeds @ text_embeds.T) / 2
        targets = F.softmax(similar * self.temperature, dim=-1)
        texts_loss = (-targets * F.log_softmax(logits, dim=-1)).sum(1)
        images_loss = (-targets.T * F.log_softmax(logits.T, dim=-1)).sum(1)
        return ((images_loss + texts_loss) / 2).mean()


def tutorial_step(args: argparse.Namespace, root: Path) -> Callable[[], None]:
    """One step of the tutorial's ``train_epoch``: next batch, forward, backward, AdamW."""
    import timm
    from transformers import AutoModel, AutoTokenizer

    from simpleclip.data import load_split
    from simpleclip.data.dataset import find_images_dir

    pairs = load_split(root, "train+dev")
    paths = [str(find_images_dir(root) / name) for name in pairs["image"]]
    if args.smoke:  # random tiny towers, a tokenizer trained on the captions: no files needed
        from transformers import BertConfig, BertModel

        from simpleclip.tokenizer import train_wordpiece_tokenizer

        tokenizer = train_wordpiece_tokenizer(list(pairs["caption"]), 300)
        image_encoder = timm.create_model("test_efficientnet", num_classes=0, global_pool="avg")
        small = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
        text_encoder = BertModel(BertConfig(vocab_size=len(tokenizer), **small))
    else:
        tokenizer = AutoTokenizer.from_pretrained(WEIGHTS / "all-MiniLM-L6-v2")
        text_encoder = AutoModel.from_pretrained(WEIGHTS / "all-MiniLM-L6-v2")
        file = {"file": str(WEIGHTS / "efficientnet_lite0" / "model.safetensors")}
        image_encoder = timm.create_model(
            "efficientnet_lite0", pretrained=True, pretrained_cfg_overlay=file, num_classes=0
        )
    dataset = TutorialDataset(paths, list(pairs["caption"]), tokenizer, args.image_size)
    model = TutorialCLIP(image_encoder, text_encoder).train()
    heads = [*model.image_projection.parameters(), *model.text_projection.parameters()]
    optimizer = torch.optim.AdamW(
        [
            {"params": model.image_encoder.parameters(), "lr": 1e-4},
            {"params": model.text_encoder.parameters(), "lr": 1e-5},
            {"params": heads, "lr": 1e-3, "weight_decay": 1e-3},
        ],
        weight_decay=0.0,
    )
    loader = DataLoader(dataset, args.batch_size, shuffle=True, num_workers=args.workers)
    batches = forever(loader)

    def step() -> None:
        loss = model(next(batches))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


# ---- simpleclip's pipeline --------------------------------------------------------------


def simpleclip_step(args: argparse.Namespace, root: Path, variant: str) -> Callable[[], None]:
    """One ``Trainer.step`` on the next batch, as ``simpleclip train`` runs it."""
    from simpleclip.allocator import keep_freed_memory
    from simpleclip.config import load_config
    from simpleclip.train.data import new_model, training_data
    from simpleclip.train.trainer import Trainer

    overrides = [
        f"data.root={root}",
        "data.val_split=none",
        f"data.num_workers={args.workers}",
        "image.trainable=true",
        "text.trainable=true",
        "train.cache_features=false",
        f"train.batch_size={args.batch_size}",
        f"train.keep_freed_memory={variant in ('simpleclip', 'simpleclip-contiguous')}",
        f"train.channels_last={variant != 'simpleclip-contiguous'}",
    ]
    if args.smoke:
        overrides += ["image.name=tiny", "text.name=tiny", "image.weights=null"]
    config = load_config(CONFIG, overrides)
    if config.train.keep_freed_memory:
        keep_freed_memory()  # as simpleclip.train.train does on a CPU, before any large tensor
    model = new_model(config, root)
    train_set, _ = training_data(config, model, root)
    train_set.set_epoch(0)
    loop = Trainer.build(model, config, "cpu", total_steps=10_000)
    loader = DataLoader(
        train_set,
        args.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=args.workers,
        collate_fn=train_set.collate,
    )
    batches = forever(loader)
    return lambda: loop.step(next(batches))


# ---- measuring ----------------------------------------------------------------------------


def forever(loader: DataLoader) -> Iterator[dict[str, torch.Tensor]]:
    """Batches without end, each freshly loaded (as an epoch loop would)."""
    while True:
        yield from loader


def run_worker(args: argparse.Namespace) -> dict:
    """This process: build one variant, warm up, time ``args.steps`` steps."""
    from simpleclip.allocator import keep_freed_memory

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    root = Path(args.root)
    variant = args.worker
    if variant == "tutorial-keep":
        keep_freed_memory()
    if variant.startswith("tutorial"):
        step = tutorial_step(args, root)
    else:
        step = simpleclip_step(args, root, variant)
    for _ in range(args.warmup):  # oneDNN kernels, first allocations: not measured
        step()
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "variant": variant,
        "pairs_per_s": round(args.steps * args.batch_size / seconds, 2),
        "seconds": round(seconds, 2),
        "system_s": round(after.ru_stime - before.ru_stime, 2),
        "user_s": round(after.ru_utime - before.ru_utime, 2),
        "minor_faults_per_step": round((after.ru_minflt - before.ru_minflt) / args.steps),
        "peak_rss_mb": round(after.ru_maxrss / 1024),  # Linux: KiB
        "batch_size": args.batch_size,
        "steps": args.steps,
    }


def spawn(variant: str, args: argparse.Namespace, argv: list[str]) -> dict:
    """Run one variant in a fresh Python: its own allocator settings, its own peak RSS."""
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    if variant == "simpleclip-env":
        env["GLIBC_TUNABLES"] = TUNABLES
    command = [sys.executable, __file__, *argv, "--worker", variant, "--root", str(args.root)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{variant} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def ratio(rows: list[dict], top: str, bottom: str) -> float | None:
    speed = {r["variant"]: r["pairs_per_s"] for r in rows}
    return round(speed[top] / speed[bottom], 2) if top in speed and bottom in speed else None


def run_rounds(args: argparse.Namespace, argv: list[str]) -> None:
    """A B A B: each round runs every variant once; then medians per variant and the ratio."""
    rows = []
    for number in range(1, args.rounds + 1):
        round_rows = []
        for variant in args.variants:
            row = {"round": number, **spawn(variant, args, argv)}
            print(json.dumps(row), flush=True)
            round_rows.append(row)
        rows += round_rows
        print(json.dumps({"round": number, "ratio": ratio(round_rows, "simpleclip", "tutorial")}))
    medians = []
    for variant in args.variants:
        mine = [r for r in rows if r["variant"] == variant]
        keys = ("pairs_per_s", "system_s", "minor_faults_per_step", "peak_rss_mb")
        middle = {k: round(statistics.median(r[k] for r in mine), 2) for k in keys}
        medians.append({"variant": variant, **middle})
    summary = {"median": medians, "ratio": ratio(medians, "simpleclip", "tutorial")}
    print(json.dumps(summary), flush=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=VARIANTS[:2])
    parser.add_argument("--rounds", type=int, default=2, help="A B rounds")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per program")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=224, help="tutorial's resize")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers, both loops")
    parser.add_argument("--root", default="../shared/data/flickr8k_1k", help="Flickr8k layout")
    parser.add_argument("--smoke", action="store_true", help="tiny random towers, a few steps")
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(args)), flush=True)
        return 0
    if args.smoke:
        from simpleclip.data import make_synthetic

        args.root = make_synthetic(Path(tempfile.mkdtemp(prefix="finetune-")) / "data", 40)
        argv += ["--steps", "2", "--warmup", "1", "--batch-size", "8", "--image-size", "64"]
        args.rounds = 1
    run_rounds(args, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
