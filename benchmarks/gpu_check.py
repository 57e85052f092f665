"""One prepared run on a GPU machine: is simpleclip trainable on one GPU, and how fast? (issue 18)

Eight checks, each timed and guarded (a failure is recorded and the next check runs); every
figure goes to ``OUT/gpu_check.json``, rewritten after each check; exit status 1 if one failed.

1. ``gpu_tests``: the suite's CUDA tests (``pytest -m gpu``) pass.
2. ``throughput``: pairs/s of the full loop, data included, of ``flickr8k_resnet50_distilbert``
   (random weights: no hub there) on a Flickr8k-sized synthetic set, batch 128 and 256, bf16,
   with and without channels_last and ``train.compile``; peak memory; the time of one epoch,
   extrapolated from the timed steps. Target: >= 3,000 pairs/s at batch 128.
3. ``grad_cache``: batch 1024 in micro-batches of 128 versus whole: memory, pairs/s, and the
   loss of one step from the same weights and batch, equal to 1e-3.
4. ``frozen_features``: feature extraction pictures/s, seconds per epoch on cached features.
5. ``bf16_run``: ``simpleclip.train.train`` for >= 200 steps in bf16: finite, falling loss.
6. ``gpu_notebooks``: notebooks 06 and 07 of the gpu track (ResNet-50 + DistilBERT, random
   weights) on the same set, their code cells run by ``run_notebook_cells.py``: seconds,
   epoch time, peak memory, and the test recall 07 writes.
7. ``clip_finetune``: the ``clip_finetune`` config on a CLIP of ViT-B/32's sizes (transformers'
   default ``CLIPConfig``, random weights: no hub there) at batch 256 in bf16: pairs/s, peak
   memory, finite losses.
8. ``shards``: the synthetic set written as webdataset shards (``simpleclip shards``), read by
   16 DataLoader workers as ``data.format=webdataset`` trains: pairs/s of the reader alone,
   next to the caption folder read by the same workers with the JPEG decoded every time.

Sections 2 and 3 time the loop of ``train_throughput.py``, section 4 reuses ``feature_cache.py``.
The compiled variants of section 2 run last, as far as the time budget allows. Started by
``benchmarks/gpu_check.sh OUT``; ``--cpu`` is the dry run of the test suite (tiny sizes).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
from feature_cache import run as feature_cache_run  # benchmarks/ is on sys.path: run as a script
from train_throughput import Setup, build_offline_model, measure

from simpleclip.config import Config, load_config
from simpleclip.data import load_split, make_synthetic
from simpleclip.data.shard_writer import write_shards
from simpleclip.device import select_device
from simpleclip.train import train
from simpleclip.train.data import build_datasets
from simpleclip.train.features import compute_tower_features
from simpleclip.train.from_clip import fit_to_clip, start_from_clip

REPO = Path(__file__).resolve().parents[1]
TARGET_PAIRS_PER_S = 3000.0  # at batch 128, bf16 (issue 18)
LOSS_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Sizes:
    """How big each check is; ``GPU`` is the real run, ``CPU`` the dry run."""

    config: str = "flickr8k_resnet50_distilbert"
    images: int = 8091  # Flickr8k's number of pictures, 5 captions each
    image_size: int = 224
    workers: int = 12  # DataLoader workers, of 16 cores: the rest feed the GPU
    precision: str = "bf16"
    batch_sizes: tuple[int, ...] = (128, 256)
    steps: int = 30  # timed steps; Setup (3) and timed() (2) warm up 5 before
    compiled: tuple[tuple[int, bool], ...] = ((128, True), (128, False), (256, True), (256, False))
    min_compile_s: float = 75  # budget a compiled variant needs to start
    grad_cache_batch: int = 1024
    micro_batch: int = 128
    grad_cache_steps: int = 5
    feature_epochs: int = 3
    run_steps: int = 200
    clip_width: int = 0  # 0: transformers' default CLIPConfig (ViT-B/32); else a tiny CLIP
    clip_batch: int = 256
    clip_steps: int = 20
    shard_workers: int = 16
    shard_batches: int = 60  # batches of 128 read per mode
    notebook_settings: tuple[str, ...] = ("train.epochs=1",)  # 06 resumes it for one more
    budget_s: float = 430  # wall time for this script; gpu_check.sh kills it at 455 s


GPU = Sizes()
CPU = Sizes(
    config="synthetic_tiny",
    images=160,
    image_size=64,
    workers=0,
    precision="fp32",
    batch_sizes=(16, 32),
    steps=2,
    compiled=((16, True), (16, False)),
    min_compile_s=0,
    grad_cache_batch=32,
    micro_batch=8,
    grad_cache_steps=1,
    feature_epochs=2,
    run_steps=20,
    clip_width=32,
    clip_batch=16,
    clip_steps=2,
    shard_workers=0,
    shard_batches=3,
    notebook_settings=(  # the gpu track's notebooks with the dry run's tiny towers
        "train.epochs=1",
        "train.batch_size=32",
        "image.name=tiny",
        "image.pooling=avg",
        "head.embed_dim=64",
        "train.device=cpu",
        "train.threads=1",
    ),
    budget_s=900,
)


class TimeBudget(Exception):
    """A check ran past the time left to the whole run."""


@contextmanager
def time_limit(seconds: float):
    """Raise ``TimeBudget`` in the main thread after ``seconds`` (SIGALRM; Unix only).

    Nests: an enclosing limit keeps counting and is re-armed on the way out.
    """

    def expire(signum, frame):
        raise TimeBudget(f"stopped after {seconds:.0f} s: the run's time budget was spent")

    previous = signal.signal(signal.SIGALRM, expire)
    outer, start = signal.alarm(0), time.monotonic()  # seconds left to an enclosing limit
    signal.alarm(max(1, math.ceil(min(seconds, outer) if outer else seconds)))
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        if outer:
            signal.alarm(max(1, math.ceil(outer - (time.monotonic() - start))))


class Check:
    """The report being written, the time left, and the guard around each section."""

    def __init__(self, out: Path, sizes: Sizes, cpu: bool) -> None:
        self.start, self.sizes, self.path = time.perf_counter(), sizes, out / "gpu_check.json"
        self.report: dict[str, Any] = {"meta": machine(cpu, sizes), "sections": {}}
        out.mkdir(parents=True, exist_ok=True)

    def remaining(self) -> float:
        return self.sizes.budget_s - (time.perf_counter() - self.start)

    def section(self, name: str, run: Callable[[], tuple[dict, bool]]) -> dict | None:
        """Run one check within the time left; record its figures, verdict, seconds, error."""
        print(f"[gpu_check] {name} ({self.remaining():.0f} s left)", flush=True)
        figures, ok, error, start = None, False, None, time.perf_counter()
        try:
            with time_limit(max(5.0, self.remaining())):
                figures, ok = run()
        except Exception as err:  # recorded; the other checks still run
            traceback.print_exc()
            error = f"{type(err).__name__}: {err}"[:2000]
        seconds = round(time.perf_counter() - start, 1)
        self.report["sections"][name] = {"ok": ok, "seconds": seconds, "error": error}
        if figures:
            self.report.setdefault(name, {}).update(figures)
        print(f"[gpu_check] {name}: {'ok' if ok else 'FAILED'} in {seconds} s", flush=True)
        free_memory()
        self.save()
        return figures

    def save(self) -> None:
        self.report["meta"]["wall_s"] = round(time.perf_counter() - self.start, 1)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.report, indent=2) + "\n")
        tmp.replace(self.path)  # a killed run still leaves a whole JSON


def machine(cpu: bool, sizes: Sizes) -> dict[str, Any]:
    cuda = torch.cuda.is_available() and not cpu
    shm = shutil.disk_usage("/dev/shm").total if Path("/dev/shm").is_dir() else 0
    return {
        "mode": "cpu-dry-run" if cpu else "gpu",
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "shm_gib": round(shm / 2**30, 1),  # DataLoader workers pass batches through /dev/shm
        "sizes": asdict(sizes),
    }


def free_memory() -> None:
    gc.collect()  # DataLoader workers and CUDA tensors of the last section go with it
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# --- data and the offline text tower --------------------------------------------------------


def prepare_data(sizes: Sizes, work: Path) -> dict:
    start = time.perf_counter()
    root = make_synthetic(work / "data", n_images=sizes.images, image_size=sizes.image_size)
    return {
        "root": str(root),
        "images": sizes.images,
        "image_size": sizes.image_size,
        "train_images": len(load_split(root, "train")) // 5,
        "train_pairs": len(load_split(root, "train")),  # 5 captions a picture: an epoch's pairs
        "seconds": round(time.perf_counter() - start, 1),
    }


def save_offline_text_tower(config: Config, root: Path, folder: Path) -> list[str]:
    """The config's text tower with random weights as a local Hugging Face folder, so that
    ``train`` builds it with no hub; returns the overrides that point the config at it."""
    model = build_offline_model(config, root)  # the architecture train_throughput.py times
    model.text_encoder.model.save_pretrained(folder)
    model.tokenizer.save_pretrained(folder)
    return [f"text.name={folder}", f"text.pooling={model.text_encoder.pooling}"]


# --- 1. the suite's CUDA tests --------------------------------------------------------------


def gpu_tests(cpu: bool) -> tuple[dict, bool]:
    files = [
        str(p.relative_to(REPO))
        for p in sorted((REPO / "tests").glob("test_*.py"))
        if "mark.gpu" in p.read_text()
    ]
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider"]
    command += ["-o", "addopts=--strict-markers"]  # pyproject's --dist would need pytest-xdist
    result = subprocess.run(
        [*command, *files], cwd=REPO, capture_output=True, text=True, timeout=240
    )
    print(result.stdout[-4000:], result.stderr[-2000:], sep="\n", flush=True)
    summary = (result.stdout.strip().splitlines() or [""])[-1]
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped)", summary)}
    figures = {"files": files, "exit_code": result.returncode, "summary": summary}
    figures.update({k: counts.get(k, 0) for k in ("passed", "failed", "skipped")})
    return figures, result.returncode == 0 and (cpu or figures["passed"] > 0)


# --- 2. throughput, and 3. GradCache: the loop of train_throughput.py -----------------------


def build_setup(config: Config, root: Path, channels_last: bool) -> Setup:
    """``train_throughput.Setup`` ("fast" mode, warmed up), with or without channels_last."""
    torch.manual_seed(config.train.seed)
    config = replace(config, train=replace(config.train, channels_last=channels_last))
    return Setup(config, build_offline_model(config, root), "fast")


def throughput_run(sizes: Sizes, common: list[str], root: Path, batch: int, cl: bool, comp: bool):
    config = load_config(
        sizes.config, [*common, f"train.batch_size={batch}", f"train.compile={str(comp).lower()}"]
    )
    free_memory()
    if comp:
        torch.compiler.reset()  # a static compile for these shapes, not a recompile of the last
    start = time.perf_counter()
    setup = build_setup(config, root, channels_last=cl)
    setup_seconds = time.perf_counter() - start
    row = measure([setup], Path(sizes.config).stem, sizes.steps, rounds=1)[0]
    return {
        "batch_size": batch,
        "channels_last": cl,
        "compile": comp,
        "loop_pairs_per_s": row["loop_pairs_per_s"],  # data loading included
        "step_pairs_per_s": row["step_pairs_per_s"],  # one batch already on the device
        "peak_memory_mb": row["peak_memory_mb"],
        "memory": row["memory"],
        "precision": row["precision"],
        "setup_seconds": round(setup_seconds, 1),  # model, data, warm-up (and compile)
    }


def throughput(check: Check, common: list[str], root: Path, variants: list) -> tuple[dict, bool]:
    """Time each (batch, channels_last, compile) variant; one failure does not stop the rest."""
    runs, ok = check.report.setdefault("throughput", {}).setdefault("runs", []), True
    for batch, cl, comp in variants:
        variant = {"batch_size": batch, "channels_last": cl, "compile": comp}
        left = check.remaining() - 5
        if comp and left < check.sizes.min_compile_s:
            runs.append({**variant, "skipped": f"time budget: {left:.0f} s left"})
            continue
        try:
            with time_limit(max(1.0, left)):
                runs.append(throughput_run(check.sizes, common, root, batch, cl, comp))
        except TimeBudget as err:
            ok = ok and comp  # a compile that outlasts the budget is skipped, not failed
            runs.append({**variant, "skipped" if comp else "error": str(err)})
        except Exception as err:  # e.g. out of memory, or no C compiler for torch.compile
            traceback.print_exc()
            ok = False
            runs.append({**variant, "error": f"{type(err).__name__}: {err}"[:1000]})
        print(f"[gpu_check]   {json.dumps(runs[-1])}", flush=True)
        check.save()
    return {}, ok  # the rows are already in report["throughput"]["runs"]


def summarise_throughput(report: dict, sizes: Sizes, cpu: bool) -> dict:
    """The best figure at the first batch size (128) against the target, and the epoch time."""
    runs = [r for r in report.get("throughput", {}).get("runs", []) if "loop_pairs_per_s" in r]
    target_batch = sizes.batch_sizes[0]
    at_target_batch = [r for r in runs if r["batch_size"] == target_batch]
    best = max(at_target_batch, key=lambda r: r["loop_pairs_per_s"], default=None)
    plain = [r for r in at_target_batch if not r["channels_last"] and not r["compile"]]
    epoch_pairs = report.get("data", {}).get("train_pairs", 0)
    for r in runs:
        r["epoch_seconds_estimate"] = round(epoch_pairs / r["loop_pairs_per_s"], 1)
    best_rate = best["loop_pairs_per_s"] if best else None
    return {
        "target_pairs_per_s": TARGET_PAIRS_PER_S,
        "target_batch_size": target_batch,
        "best": best,
        "target_met": None if cpu else bool(best_rate and best_rate >= TARGET_PAIRS_PER_S),
        "train_default_loop_pairs_per_s": plain[0]["loop_pairs_per_s"] if plain else None,
        "epoch_pairs": epoch_pairs,
        "epoch_seconds_estimate": round(epoch_pairs / best_rate, 1) if best_rate else None,
        "epoch_note": "extrapolated: epoch_pairs / loop pairs/s of the timed steps, not a full "
        "epoch; bf16_run.epoch_seconds is one whole epoch of train() (no channels_last, eager)",
    }


def same_weights_losses(setup: Setup, initial: dict, batch: dict) -> dict[str, float]:
    """The loss of one step from ``initial`` on ``batch``: eval mode (no dropout, BatchNorm's
    running statistics: GradCache must match exactly) and train mode (dropout draws and
    BatchNorm's per-micro-batch statistics differ: for information only)."""
    losses = {}
    for mode in ("eval", "train"):
        setup.loop.model.load_state_dict(initial)
        setup.loop.model.train(mode == "train")
        torch.manual_seed(0)
        losses[mode] = setup.loop.gradients(batch)  # in this mode; step() would switch to train
    setup.loop.model.train()
    return losses


def grad_cache_side(config: Config, root: Path, steps: int, initial: dict | None, batch):
    """Time one side of the comparison; then its loss from ``initial`` weights on ``batch``."""
    torch.manual_seed(config.train.seed)
    model = build_offline_model(config, root)
    initial = initial or {k: v.detach().clone() for k, v in model.state_dict().items()}
    setup = Setup(config, model, "fast")
    row = measure([setup], "grad_cache", steps, rounds=1)[0]
    batch = batch or setup.batch  # the same pairs for both sides
    keys = ("loop_pairs_per_s", "step_pairs_per_s", "peak_memory_mb", "memory")
    return {k: row[k] for k in keys}, same_weights_losses(setup, initial, batch), initial, batch


def grad_cache(sizes: Sizes, common: list[str], root: Path) -> tuple[dict, bool]:
    figures: dict[str, Any] = {"batch_size": sizes.grad_cache_batch}
    figures["micro_batch_size"] = sizes.micro_batch
    losses, initial, batch = {}, None, None
    for label, micro in (("whole", 0), ("micro", sizes.micro_batch)):
        batching = [f"train.batch_size={sizes.grad_cache_batch}", f"train.micro_batch_size={micro}"]
        config = load_config(sizes.config, [*common, *batching])
        free_memory()
        try:
            figures[label], losses[label], initial, batch = grad_cache_side(
                config, root, sizes.grad_cache_steps, initial, batch
            )
        except torch.OutOfMemoryError as err:  # the whole batch may not fit: a finding too
            figures[label] = {"error": f"OutOfMemoryError: {err}"[:500]}
    if len(losses) < 2:
        figures.update(loss={"tolerance": LOSS_TOLERANCE, "agrees": None}, memory_ratio=None)
        return figures, False
    diff = {mode: abs(losses["whole"][mode] - losses["micro"][mode]) for mode in ("eval", "train")}
    figures["loss"] = {f"{k}_{mode}": v[mode] for k, v in losses.items() for mode in v}
    figures["loss"].update({f"diff_{mode}": d for mode, d in diff.items()})
    figures["loss"].update(tolerance=LOSS_TOLERANCE, agrees=diff["eval"] <= LOSS_TOLERANCE)
    peaks = [figures[side]["peak_memory_mb"] for side in ("micro", "whole")]
    figures["memory_ratio"] = round(peaks[0] / peaks[1], 3)  # micro-batches / whole batch
    return figures, figures["loss"]["agrees"]


# --- 4. frozen encoders, and 5. a bf16 run: simpleclip.train.train --------------------------


def extraction_rates(sizes: Sizes, common: list[str], root: Path) -> dict:
    """Pictures/s and captions/s of ``compute_tower_features``, as ``train.cache_features``
    calls it (batch 128, no workers), and pictures/s with the DataLoader workers."""
    frozen = ["image.trainable=false", "text.trainable=false", "train.cache_features=true"]
    config = load_config(sizes.config, [*common, *frozen])
    device = select_device(config.train.device)
    model = build_offline_model(config, root).to(device)
    dataset, _ = build_datasets(config, model, root)
    rates = {}
    for key, tower, workers in (
        ("image_features_per_s", "image", 0),
        ("image_features_per_s_workers", "image", sizes.workers),
        ("text_features_per_s", "text", 0),
    ):
        start = time.perf_counter()
        compute_tower_features(model, dataset, tower, batch_size=128, num_workers=workers)
        sync(device)
        count = len(dataset.image_names) if tower == "image" else len(dataset.captions)
        rates[key] = round(count / (time.perf_counter() - start), 1)
    rates["extraction_precision"] = "fp32"  # compute_tower_features runs without autocast
    return rates


def frozen_features(sizes: Sizes, common: list[str], root: Path, text: list[str], work: Path):
    figures = extraction_rates(sizes, common, root)
    free_memory()
    epochs = [f"train.epochs={sizes.feature_epochs}"]
    run = feature_cache_run(sizes.config, [*common, *text, *epochs], True, work / "features")
    figures.update(
        cached_epoch_seconds=run["epoch_seconds"],  # heads and temperature only
        cached_run_seconds=run["total_seconds"],  # model, feature cache, epochs, validation
        epochs=run["epochs"],
        t2i_r5=run["t2i_R@5"],
    )
    return figures, True


def bf16_run(sizes: Sizes, common: list[str], root: Path, text: list[str], work: Path):
    """``train`` for whole epochs of at least ``run_steps`` steps, in bf16."""
    batch = load_config(sizes.config, common).train.batch_size
    steps_per_epoch = max(1, len(load_split(root, "train")) // batch)
    epochs = math.ceil(sizes.run_steps / steps_per_epoch)
    overrides = ["train.precision=bf16", "data.pairs=all", f"train.epochs={epochs}"]
    overrides.append(f"train.out_dir={work}/run")
    result = train(load_config(sizes.config, [*common, *text, *overrides]), progress=False)
    losses = [x for record in result.history for x in record["step_losses"]]
    k = max(1, min(20, len(losses) // 4))
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    finite = all(math.isfinite(x) for x in losses)
    figures = {
        "steps": len(losses),
        "batch_size": batch,
        "finite": finite,
        "first_loss": round(first, 4),  # mean of the first k steps
        "last_loss": round(last, 4),  # mean of the last k steps
        "mean_of_steps": k,
        "loss_falls": last < first,
        "epoch_seconds": round(result.history[0]["epoch_seconds"], 1),
        "pairs_per_second": round(result.history[0]["pairs_per_second"], 1),
        "seconds": round(result.seconds, 1),
    }
    return figures, finite and last < first


# --- 6. a pretrained CLIP fine-tuned, and 7. shards read by 16 workers ----------------------


def save_random_clip(sizes: Sizes, root: Path, folder: Path) -> dict:
    """A CLIP with random weights in transformers' layout, as ``train.init_from`` reads one:
    ViT-B/32's sizes (transformers' default ``CLIPConfig``, CLIP's 49,408-token embedding) on
    the GPU, tiny in the dry run. Its BPE merges are learnt from the set's captions (OpenAI's
    need the hub)."""
    from transformers import CLIPConfig
    from transformers import CLIPModel as HFCLIPModel

    from simpleclip.clip_arch import BPETokenizer, learn_merges

    tokenizer = BPETokenizer(learn_merges(load_split(root, "train")["caption"], 200))
    text = {"bos_token_id": tokenizer.sot_id, "eos_token_id": tokenizer.eot_id, "pad_token_id": 0}
    text["vocab_size"] = tokenizer.vocab_size if sizes.clip_width else 49408
    vision: dict[str, int] = {}
    extra: dict[str, int] = {}
    if sizes.clip_width:
        width = sizes.clip_width
        tiny = {"hidden_size": width, "intermediate_size": 4 * width, "num_attention_heads": 4}
        text.update(tiny, num_hidden_layers=2)
        vision = {**tiny, "num_hidden_layers": 2, "image_size": 32, "patch_size": 8}
        extra = {"projection_dim": 16}
    torch.manual_seed(0)
    hf = HFCLIPModel(CLIPConfig(text_config=text, vision_config=vision, **extra))
    hf.save_pretrained(folder)
    tokenizer.save(folder)
    vision_config = hf.config.vision_config
    return {
        "parameters": sum(p.numel() for p in hf.parameters()),
        "vision": f"ViT {vision_config.num_hidden_layers} layers, width "
        f"{vision_config.hidden_size}, patch {vision_config.patch_size}, "
        f"{vision_config.image_size} px",
        "text_layers": hf.config.text_config.num_hidden_layers,
    }


def clip_finetune(sizes: Sizes, common: list[str], root: Path, work: Path) -> tuple[dict, bool]:
    """The loop of ``train_throughput.py`` on ``clip_finetune``'s model and recipe."""
    folder = work / "clip"
    figures = save_random_clip(sizes, root, folder)
    overrides = [*common, f"train.init_from={folder}", f"train.batch_size={sizes.clip_batch}"]
    config = load_config("clip_finetune", overrides)
    free_memory()
    model = start_from_clip(config)
    config = fit_to_clip(config, model)
    setup = Setup(config, model, "fast")
    losses = [setup.loop.step(next(setup.batches)) for _ in range(sizes.clip_steps)]
    row = measure([setup], "clip_finetune", sizes.clip_steps, rounds=1)[0]
    finite = all(math.isfinite(x) for x in losses)
    figures.update(
        {k: row[k] for k in ("batch_size", "precision", "peak_memory_mb", "memory")},
        loop_pairs_per_s=row["loop_pairs_per_s"],  # data loading included
        step_pairs_per_s=row["step_pairs_per_s"],  # one batch already on the device
        losses=[round(x, 4) for x in losses],
        finite=finite,
    )
    return figures, finite


def read_rate(loader: Any, batches: int) -> float:
    """Pairs/s of ``batches`` batches from ``loader`` (after one, which starts the workers)."""
    iterator = iter(loader)
    next(iterator)
    start, pairs = time.perf_counter(), 0
    for batch, _ in zip(iterator, range(batches), strict=False):
        pairs += len(batch["input_ids"])
    return round(pairs / (time.perf_counter() - start), 1)


def shards(sizes: Sizes, common: list[str], root: Path, work: Path) -> tuple[dict, bool]:
    """The reader alone (no model): shards versus the caption folder, the same workers."""
    from torch.utils.data import DataLoader

    workers = sizes.shard_workers
    train_images = len(load_split(root, "train")) // 5
    per_shard = max(1, train_images // max(1, workers))  # at least one shard per reader
    start = time.perf_counter()
    written = write_shards(root, "train", work / "shards", per_shard)
    figures: dict[str, Any] = {
        "shards": len(written),
        "per_shard": per_shard,
        "write_seconds": round(time.perf_counter() - start, 1),
        "workers": workers,
    }
    pattern = f"{written[0].parent}/{{00000..{len(written) - 1:05d}}}.tar"
    reading = [*common, f"data.num_workers={workers}", "train.batch_size=128"]
    reading += ["data.val_split=none", "data.image_cache=false", "data.pairs=all"]
    model = build_offline_model(load_config(sizes.config, reading), root)
    folder_set, _ = build_datasets(load_config(sizes.config, reading), model, root)
    folder = DataLoader(
        folder_set,
        batch_size=128,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        collate_fn=folder_set.collate,
    )
    streamed = [*reading, "data.format=webdataset", f"data.shards={pattern}"]
    shard_set, _ = build_datasets(load_config(sizes.config, streamed), model, root)
    batches = min(sizes.shard_batches, len(shard_set.loader()) - 1, len(folder) - 1)
    if batches < 1:
        raise ValueError(f"{len(folder_set)} pairs: too few for two batches of 128")
    figures["shards_pairs_per_s"] = read_rate(shard_set.loader(), batches)
    figures["folder_decode_pairs_per_s"] = read_rate(folder, batches)
    figures["batches"] = batches
    figures["skipped_samples"] = shard_set.skipped
    figures["shards_vs_folder_decode"] = round(
        figures["shards_pairs_per_s"] / figures["folder_decode_pairs_per_s"], 2
    )
    return figures, shard_set.skipped == 0


def gpu_notebooks(sizes: Sizes, root: Path, text: list[str], work: Path) -> tuple[dict, bool]:
    """Notebooks 06 (training) and 07 (evaluation) as the gpu track runs them, shortened."""
    run = work / "runs" / "course-gpu"
    settings = [f"data.root={root}", f"data.num_workers={sizes.workers}", "image.pretrained=false"]
    settings += [*text, *sizes.notebook_settings, f"train.out_dir={run}"]
    env = {**os.environ, "SIMPLECLIP_TRACK": "gpu", "SIMPLECLIP_SET": " ".join(settings)}
    env.pop("SIMPLECLIP_SMOKE", None)
    figures: dict[str, Any] = {"settings": settings}
    for stem in ("06_training", "07_evaluation"):
        script = [sys.executable, str(REPO / "benchmarks" / "run_notebook_cells.py")]
        notebook = REPO / "notebooks" / f"{stem}.ipynb"
        result = subprocess.run(
            [*script, str(notebook)], env=env, capture_output=True, text=True, check=False
        )
        print(result.stdout[-3000:], result.stderr[-3000:], sep="\n", flush=True)
        if result.returncode != 0:
            raise RuntimeError(f"{stem} failed: {result.stderr.strip()[-1500:]}")
        figures[stem] = json.loads(result.stdout.strip().splitlines()[-1])
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    figures["epoch_seconds"] = [round(r["epoch_seconds"], 1) for r in history]
    figures["pairs_per_second"] = [round(r["pairs_per_second"], 1) for r in history]
    test = json.loads((run / "metrics_test.json").read_text())
    figures["test_t2i"], figures["test_n_images"] = test["t2i"], test["n_images"]
    return figures, True


# --- the run --------------------------------------------------------------------------------


def run_checks(check: Check, work: Path, cpu: bool) -> None:
    sizes = check.sizes
    data = check.section("data", lambda: (prepare_data(sizes, work), True))
    if data is None:
        return
    root = Path(data["root"])
    common = ["image.pretrained=false", "text.pretrained=false", f"data.root={root}"]
    common += ["data.synthetic_images=0", f"data.num_workers={sizes.workers}"]
    common += [f"train.precision={sizes.precision}", f"train.out_dir={work}/runs"]
    if cpu:  # one thread: the dry run shares 2 cores with other jobs
        common += ["train.device=cpu", "train.threads=1", "train.batch_size=32"]
    check.report["throughput"] = {"steps": sizes.steps, "warmup_steps": 5}
    check.report["throughput"].update(workers=sizes.workers, precision=sizes.precision)
    text: list[str] = []

    def offline_text() -> tuple[dict, bool]:
        text.extend(save_offline_text_tower(load_config(sizes.config, common), root, work / "t"))
        return {"overrides": text}, True

    eager = [(b, cl, False) for b in sizes.batch_sizes for cl in (True, False)]
    check.section("gpu_tests", lambda: gpu_tests(cpu))
    check.section("throughput", lambda: throughput(check, common, root, eager))
    check.section("grad_cache", lambda: grad_cache(sizes, common, root))
    check.section("offline_text", offline_text)
    check.section("frozen_features", lambda: frozen_features(sizes, common, root, text, work))
    check.section("bf16_run", lambda: bf16_run(sizes, common, root, text, work))
    check.section("gpu_notebooks", lambda: gpu_notebooks(sizes, root, text, work))
    check.section("clip_finetune", lambda: clip_finetune(sizes, common, root, work))
    check.section("shards", lambda: shards(sizes, common, root, work))
    compiled = [(b, cl, True) for b, cl in sizes.compiled]
    check.section("throughput_compiled", lambda: throughput(check, common, root, compiled))


def verdict(report: dict, cpu: bool) -> dict:
    sections = report["sections"]
    checks = {
        "sections_without_error": all(s["error"] is None for s in sections.values()),
        "gpu_tests_pass": sections.get("gpu_tests", {}).get("ok", False),
        "throughput_target_met": report.get("throughput", {}).get("target_met"),
        "grad_cache_loss_agrees": report.get("grad_cache", {}).get("loss", {}).get("agrees"),
        "bf16_finite_and_falling": sections.get("bf16_run", {}).get("ok", False),
        "clip_finetune_finite": sections.get("clip_finetune", {}).get("ok", False),
        "shards_read_without_skips": sections.get("shards", {}).get("ok", False),
        "gpu_notebooks_ran": sections.get("gpu_notebooks", {}).get("ok", False),
    }
    if cpu:  # no target on a CPU
        checks.pop("throughput_target_met")
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for gpu_check.json")
    parser.add_argument("--cpu", action="store_true", help="dry run: tiny sizes on the CPU")
    parser.add_argument("--budget-s", type=float, default=None, help="wall-time budget")
    args = parser.parse_args(argv)
    sizes = CPU if args.cpu else GPU
    if args.budget_s:
        sizes = replace(sizes, budget_s=args.budget_s)
    if args.cpu:
        # These VMs report AMX without enabling it: cap oneDNN for the bf16 run.
        os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_FP16")
        torch.set_num_threads(1)
        # Dynamo's graph capture without code generation (as tests/test_distributed.py does):
        # inductor's C++ build takes minutes on 2 busy cores and is not what a CPU run checks.
        torch.compile = partial(torch.compile, backend="eager")
    elif not torch.cuda.is_available():
        print("[gpu_check] no CUDA device: run with --cpu for the dry run", file=sys.stderr)
        return 2
    check = Check(args.out, sizes, args.cpu)
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    try:
        run_checks(check, work, args.cpu)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = summarise_throughput(check.report, sizes, args.cpu)
    check.report.setdefault("throughput", {}).update(summary)
    check.report["checks"] = verdict(check.report, args.cpu)
    check.report["ok"] = all(v is True for v in check.report["checks"].values())
    check.save()
    print(json.dumps({"checks": check.report["checks"], "ok": check.report["ok"]}), flush=True)
    return 0 if check.report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
