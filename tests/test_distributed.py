"""Several processes (DDP, gloo on the CPU) and GradCache: the same gradients as one big batch.

Two ranks on batches b0 and b1 must give the gradients of one process on b0 + b1, for the
gathered loss and the local-rows loss, with and without micro-batches; micro-batches must give
the full batch's gradients in one process too. The encoders are LayerNorm-only (``tiny_vit`` and
the tiny transformer): BatchNorm statistics legitimately depend on how a batch is split.
One spawn of 2 processes runs every 2-rank scenario; the tests below read its results.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
from torch.nn.parallel import DistributedDataParallel

import simpleclip.train.loop as train_module
from simpleclip.data import read_captions
from simpleclip.loss import clip_loss, siglip_loss
from simpleclip.model import CLIPModel, build_model
from simpleclip.train import distributed, train
from simpleclip.train.step import (
    Towers,
    check_train_options,
    full_backward,
    grad_cache_backward,
    split_batch,
)
from simpleclip.train.trainer import Trainer

WORLD, B = 2, 8  # ranks, pairs per rank
VARIANTS = [("gather", 0), ("local", 0), ("gather", 2), ("local", 2)]  # (loss, micro_batch_size)
TOLERANCE = 1e-5
NO_SCALER = torch.amp.GradScaler("cpu", enabled=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _join_and_run(rank: int, port: int, fn, args: tuple) -> None:
    """Entry point of each spawned rank: the environment torchrun would set, then ``fn``."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    try:
        fn(rank, *args)
    finally:
        dist.destroy_process_group()


def _loss_fn(model: CLIPModel, kind: str):
    """The loss a rank computes: over all ranks' pairs (or one process's whole batch).

    One function for both: ``clip_loss`` (or ``siglip_loss`` for a model with a
    ``logit_bias``) with ``gather`` (and ``local``) on the ranks, without on the reference process.
    """

    def loss(image_embeds, text_embeds, batch):
        ids = {"image_ids": batch["image_ids"], "text_ids": batch["text_ids"]}
        options = {"gather": kind != "single", "local": kind == "local", **ids}
        if model.logit_bias is not None:  # loss.kind=siglip
            return siglip_loss(
                image_embeds, text_embeds, model.logit_scale, model.logit_bias, **options
            )
        return clip_loss(image_embeds, text_embeds, model.logit_scale, **options)

    return loss


def _gradients(
    model: CLIPModel,
    batch: dict,
    kind: str,
    micro: int,
    towers=None,
    scaler=NO_SCALER,
    autocast=nullcontext,
) -> tuple:
    """One backward as the trainer does it; returns (loss, {name: grad})."""
    towers = towers or Towers(model)
    model.zero_grad(set_to_none=True)
    if micro:
        params = [p for p in (model.logit_scale, model.logit_bias) if p is not None]
        loss = grad_cache_backward(
            towers, batch, _loss_fn(model, kind), params, scaler, autocast, micro
        )
    else:
        loss = full_backward(towers, batch, _loss_fn(model, kind), scaler, autocast)
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return loss, grads


def _max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[n] - b[n]).abs().max().item() for n in a)


def _rank_gradients(rank: int, model_dir: Path, batch: dict, variants=VARIANTS) -> dict:
    mine = {k: v.chunk(WORLD)[rank] for k, v in batch.items()}  # rank r gets b_r
    results = {}
    for kind, micro in variants:
        model = CLIPModel.load(model_dir)  # eval mode: no dropout, the same graph on every rank
        towers = distributed.wrap(Towers(model), torch.device("cpu"))
        _gradients(model, mine, kind, micro, towers)  # a first step: DDP must accept a second
        results[kind, micro] = _gradients(model, mine, kind, micro, towers)
    return results


def _rank_training(rank: int, config_a, config_b) -> dict:
    straight = train(config_a, progress=False)
    original = Trainer.run_epoch

    def interrupted(self, dataset, epoch, *args):
        if epoch == 1:
            raise KeyboardInterrupt  # both ranks stop at the start of epoch 2
        return original(self, dataset, epoch, *args)

    Trainer.run_epoch = interrupted
    try:
        train(config_b, progress=False)
    except KeyboardInterrupt:
        pass
    finally:
        Trainer.run_epoch = original
    resumed = train(config_b, resume=True, progress=False)
    return {
        "straight": straight.model.state_dict(),
        "straight_history": straight.history,
        "resumed": resumed.model.state_dict(),
        "resumed_history": resumed.history,
    }


def _rank_compiled_training(rank: int, config) -> dict:
    """``train.compile`` with micro-batches: what DDP wraps, ``no_sync`` calls, all-reduces.

    ``torch.compile`` runs for real with the ``eager`` backend (Dynamo's graph capture, no
    kernel generation, a few seconds); a comm hook counts the backwards DDP synchronises.
    """
    seen = {"wrapped": [], "no_sync": 0, "synced_backwards": 0}
    wrap, no_sync, compile_ = distributed.wrap, DistributedDataParallel.no_sync, torch.compile

    def spy_wrap(module, device):
        towers = wrap(module, device)
        seen["wrapped"].append((type(towers).__name__, type(module).__name__))

        def count(state, bucket):
            seen["synced_backwards"] += bucket.index() == 0  # bucket 0: once per synced backward
            return allreduce_hook(state, bucket)

        towers.register_comm_hook(None, count)
        return towers

    def spy_no_sync(self):
        seen["no_sync"] += 1
        return no_sync(self)

    distributed.wrap, DistributedDataParallel.no_sync = spy_wrap, spy_no_sync
    torch.compile = lambda module, **kwargs: compile_(module, backend="eager")
    try:
        result = train(config, progress=False)
    finally:
        distributed.wrap, DistributedDataParallel.no_sync, torch.compile = wrap, no_sync, compile_
    return {**seen, "steps": result.history[-1]["step"]}


def _rank_hidden_ddp_error(model_dir: Path, batch: dict) -> str:
    """GradCache under 2 ranks on towers that are not the outer DDP: the error message."""
    model = CLIPModel.load(model_dir)
    towers = nn.Sequential(distributed.wrap(Towers(model), torch.device("cpu")))  # DDP inside
    mine = {k: v.chunk(WORLD)[dist.get_rank()] for k, v in batch.items()}
    try:
        _gradients(model, mine, "gather", 2, towers)
    except TypeError as error:
        return str(error)
    return "no error"


def _two_ranks(
    rank: int, model_dirs: dict, batch: dict, config_a, config_b, config_c, out: Path
) -> None:
    model_dir = model_dirs["clip"]
    results = {"gradients": _rank_gradients(rank, model_dir, batch)}
    results["siglip_gradients"] = _rank_gradients(rank, model_dirs["siglip"], batch)
    results.update(_rank_training(rank, config_a, config_b))
    results["compiled"] = _rank_compiled_training(rank, config_c)
    results["hidden_ddp"] = _rank_hidden_ddp_error(model_dir, batch)
    torch.save(results, out / f"rank{rank}.pt")


def _test_batch(root: Path, model: CLIPModel) -> dict[str, torch.Tensor]:
    """2·B pairs; picture 0 (rank 0) reappears as pair B (rank 1), caption 3 as pair B + 5.

    The second copy of the picture is another "augmentation" of it: bit-identical copies would
    give the same loss whether or not they are marked as positives.
    """
    torch.manual_seed(1)
    images = torch.randn(WORLD * B, 3, 64, 64)
    images[B] = images[0] + 0.5 * torch.randn(3, 64, 64)
    captions = list(read_captions(root / "captions.txt")["caption"][: WORLD * B])
    captions[B + 5] = captions[3]
    image_ids, text_ids = torch.arange(WORLD * B), torch.arange(WORLD * B) + 100
    image_ids[B], text_ids[B + 5] = 0, text_ids[3]
    return {
        "images": images,
        **model.tokenize(captions),
        "image_ids": image_ids,
        "text_ids": text_ids,
    }


@pytest.fixture(scope="module")
def vit(tmp_path_factory, tiny_config, synthetic_root, tiny_tokenizer) -> dict:
    """A saved CLIP model without BatchNorm (ViT + transformer, linear heads, E = 32), a batch."""
    config = tiny_config(synthetic_root, Path("unused"), "image.name=tiny_vit")
    torch.manual_seed(0)
    model = build_model(config, tokenizer=tiny_tokenizer)
    model_dir = model.save(tmp_path_factory.mktemp("vit") / "model")
    config = tiny_config(synthetic_root, Path("unused"), "image.name=tiny_vit", "loss.kind=siglip")
    torch.manual_seed(0)
    siglip = build_model(config, tokenizer=tiny_tokenizer)  # the same towers, plus logit_bias
    siglip_dir = siglip.save(tmp_path_factory.mktemp("vit_siglip") / "model")
    return {
        "model_dir": model_dir,
        "siglip_dir": siglip_dir,
        "batch": _test_batch(synthetic_root, model),
    }


def _load(vit: dict) -> CLIPModel:
    return CLIPModel.load(vit["model_dir"])  # eval mode: no dropout


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory, tiny_config, synthetic_root, vit) -> dict:
    """Run every 2-rank scenario in one spawn of 2 gloo processes; rank 0's and 1's results."""
    tmp = tmp_path_factory.mktemp("ddp")
    data = shutil.copytree(synthetic_root, tmp / "data", ignore=shutil.ignore_patterns(".cache"))
    settings = (
        "train.device=cpu",
        "train.threads=1",
        "train.batch_size=16",
        "train.micro_batch_size=8",
        "train.distributed_loss=local",
    )
    config_a = tiny_config(data, tmp / "a", *settings)
    config_b = tiny_config(data, tmp / "b", *settings)
    config_c = tiny_config(data, tmp / "c", *settings, "train.compile=true", "train.epochs=1")
    model_dirs = {"clip": vit["model_dir"], "siglip": vit["siglip_dir"]}
    args = (_two_ranks, (model_dirs, vit["batch"], config_a, config_b, config_c, tmp))
    mp.spawn(_join_and_run, args=(_free_port(), *args), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    return {"ranks": ranks, "tmp": tmp, "data": data}


@pytest.mark.parametrize(("kind", "micro"), VARIANTS)
def test_two_ranks_give_the_gradients_of_one_process_on_the_whole_batch(
    vit, two_ranks, kind, micro
) -> None:
    reference_loss, reference = _gradients(_load(vit), vit["batch"], "single", 0)
    assert all(g.abs().sum() > 0 for g in reference.values())  # every parameter is tested
    for rank in range(WORLD):
        loss, grads = two_ranks["ranks"][rank]["gradients"][kind, micro]
        difference = _max_difference(grads, reference)
        print(f"{kind}, micro={micro}, rank {rank}: max |grad difference| = {difference:.2e}")
        assert difference < TOLERANCE
        assert loss == pytest.approx(reference_loss, abs=1e-6)  # mean over ranks


@pytest.mark.parametrize(("kind", "micro"), VARIANTS)
def test_siglip_on_two_ranks_gives_the_gradients_of_one_process(vit, two_ranks, kind, micro):
    """The sigmoid loss under gather (N·B rows, ÷ N·B) and local (B rows, ÷ B), whole or in
    micro-batches (GradCache): DDP's average is one process's gradient on the whole batch,
    ``logit_scale`` and ``logit_bias`` included."""
    model = CLIPModel.load(vit["siglip_dir"])
    reference_loss, reference = _gradients(model, vit["batch"], "single", 0)
    assert {"logit_scale", "logit_bias"} <= reference.keys()
    assert all(g.abs().sum() > 0 for g in reference.values())  # every parameter is tested
    for rank in range(WORLD):
        loss, grads = two_ranks["ranks"][rank]["siglip_gradients"][kind, micro]
        difference = _max_difference(grads, reference)
        print(
            f"siglip {kind}, micro={micro}, rank {rank}: max |grad difference| = {difference:.2e}"
        )
        assert difference < TOLERANCE
        assert loss == pytest.approx(reference_loss, abs=1e-6)  # mean over ranks
    batch = dict(vit["batch"], image_ids=torch.arange(WORLD * B))  # duplicate not marked
    _, unmarked = _gradients(model, batch, "single", 0)
    assert _max_difference(grads, unmarked) > 100 * TOLERANCE  # ids gathered across ranks


def test_the_duplicate_across_ranks_is_a_positive(vit, two_ranks) -> None:
    """Without gathering the ids, rank 1 would not know its pair B is image 0: other targets."""
    batch = dict(vit["batch"], image_ids=torch.arange(WORLD * B))  # duplicate not marked
    _, unmarked = _gradients(_load(vit), batch, "single", 0)
    _, grads = two_ranks["ranks"][0]["gradients"]["gather", 0]
    assert _max_difference(grads, unmarked) > 100 * TOLERANCE


@pytest.mark.parametrize("saved", ["model_dir", "siglip_dir"])
def test_micro_batches_give_the_full_batch_gradients(vit, saved) -> None:
    """GradCache for both losses; SigLIP's ``logit_bias`` gets its gradient too."""
    model, batch = CLIPModel.load(vit[saved]), vit["batch"]
    full_loss, full = _gradients(model, batch, "single", 0)
    assert "logit_scale" in full and ("logit_bias" in full) == (saved == "siglip_dir")
    cached_loss, cached = _gradients(model, batch, "single", len(batch["image_ids"]) // 4)
    difference = _max_difference(cached, full)
    print(f"GradCache, 4 micro-batches: max |grad difference| = {difference:.2e}")
    assert difference < TOLERANCE
    assert cached_loss == pytest.approx(full_loss, abs=1e-6)


def test_micro_batches_replay_dropout(vit) -> None:
    """With dropout on, the second forward must draw the same masks as the first."""
    model, batch = _load(vit).train(), vit["batch"]
    micro = len(batch["image_ids"]) // 4
    torch.manual_seed(5)
    _, cached = _gradients(model, batch, "single", micro)
    torch.manual_seed(5)  # reference: the same micro-batch forwards (same masks), one graph
    model.zero_grad(set_to_none=True)
    parts = [Towers(model)(chunk) for chunk in split_batch(batch, micro)]
    image_embeds, text_embeds = (torch.cat(p) for p in zip(*parts, strict=True))
    _loss_fn(model, "single")(image_embeds, text_embeds, batch).backward()
    reference = {n: p.grad for n, p in model.named_parameters()}
    difference = _max_difference(cached, reference)
    print(f"GradCache with dropout: max |grad difference| = {difference:.2e}")
    assert difference < TOLERANCE
    torch.manual_seed(6)  # other masks give other gradients: dropout really is on
    assert _max_difference(_gradients(model, batch, "single", micro)[1], cached) > 1e-4


def test_micro_batches_work_with_autocast_and_a_loss_scaler(vit) -> None:
    """bf16 autocast, and loss scaling: step 2's gradients are scaled like the loss."""
    model, batch = _load(vit), vit["batch"]
    _, reference = _gradients(model, batch, "single", 0)  # fp32, unscaled
    mixed = {
        "scaler": torch.amp.GradScaler("cpu", init_scale=1024.0),
        "autocast": lambda: torch.autocast("cpu", dtype=torch.bfloat16),
    }
    _, full = _gradients(model, batch, "single", 0, **mixed)
    _, cached = _gradients(model, batch, "single", 4, **mixed)

    def relative(a: dict, b: dict) -> float:  # over all parameters: some gradients are ~0
        return (
            torch.cat([(a[n] - b[n]).flatten() for n in b]).norm()
            / torch.cat([g.flatten() for g in b.values()]).norm()
        ).item()

    worst = relative({n: g / 1024 for n, g in cached.items()}, reference)
    versus_full = relative(cached, full)
    print(f"bf16 + scaler: relative difference {worst:.1e} to fp32, {versus_full:.1e} to full")
    assert worst < 0.05 and versus_full < 0.02


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("train.micro_batch_size=5", "does not divide train.batch_size=32"),
        ("train.micro_batch_size=64", "does not divide"),
        # load_config refuses it (test_config.py); a TrainConfig changed by hand meets the guard
        ("train.distributed_loss=global", "must be 'gather' or 'local'"),
    ],
)
def test_bad_options_are_refused_with_a_clear_message(tiny_config, setting, message) -> None:
    key, _, value = setting.removeprefix("train.").partition("=")
    config = tiny_config(Path("unused"), Path("unused"))
    config.train = dataclasses.replace(config.train, **{key: yaml.safe_load(value)})
    with pytest.raises(ValueError, match=message):
        check_train_options(config.train)
    with pytest.raises(ValueError, match=message):
        train(config)  # before touching any file


def test_two_rank_training_writes_rank_0_files_once_and_ranks_agree(two_ranks) -> None:
    run = two_ranks["tmp"] / "a"
    assert sorted(p.name for p in run.iterdir()) == ["best", "config.yaml", "last", "metrics.jsonl"]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert [r["step"] for r in records] == [3, 6]  # 96 pairs / (2 ranks × 16) per epoch
    caches = sorted(p.name for p in (two_ranks["data"] / ".cache").iterdir())
    assert len(caches) == 1 and caches[0].endswith(".npy") and "tmp" not in caches[0]
    rank0, rank1 = two_ranks["ranks"]
    clocks = ("epoch_seconds", "pairs_per_second")  # each rank times itself

    def untimed(history: list[dict]) -> list[dict]:
        return [{k: v for k, v in record.items() if k not in clocks} for record in history]

    assert untimed(rank0["straight_history"]) == untimed(rank1["straight_history"])
    assert records == json.loads(json.dumps(rank0["straight_history"]))
    for name, tensor in rank0["straight"].items():  # DDP kept the weights in step
        if "running_" not in name and "num_batches" not in name:  # BatchNorm stats: per rank
            assert torch.equal(tensor, rank1["straight"][name]), name


def test_resume_under_two_ranks_gives_the_uninterrupted_weights(two_ranks) -> None:
    for rank in two_ranks["ranks"]:
        assert [r["epoch"] for r in rank["resumed_history"]] == [1, 2]
        for name, tensor in rank["straight"].items():
            torch.testing.assert_close(rank["resumed"][name], tensor, rtol=0, atol=0, msg=name)


def test_compiled_towers_are_wrapped_in_ddp_and_micro_batches_sync_once(two_ranks) -> None:
    """Compile first, wrap second: the loop holds a DDP, so GradCache can call ``no_sync``.

    3 steps of 2 micro-batches each: ``no_sync`` around the first micro-batch of every step,
    and DDP all-reduces once per step (3 times), not after every micro-batch (6 times).
    """
    for rank in two_ranks["ranks"]:
        seen = rank["compiled"]
        assert seen["wrapped"] == [("DistributedDataParallel", "OptimizedModule")]
        assert seen["steps"] == 3
        assert seen["no_sync"] == seen["steps"] * (2 - 1)
        assert seen["synced_backwards"] == seen["steps"]
        assert "compile first, wrap second" in rank["hidden_ddp"]  # the old order is refused


@pytest.mark.slow
def test_torchrun_cli_trains_on_two_ranks(tmp_path: Path) -> None:
    """The real launcher: ``torchrun --nproc_per_node=2 -m simpleclip train``, one launch (each
    launch starts three interpreters; resuming under two ranks is proven in the spawned ranks,
    ``test_resume_under_two_ranks_gives_the_uninterrupted_weights``)."""
    torchrun = Path(sys.executable).with_name("torchrun")
    data, out = tmp_path / "data", tmp_path / "run"
    settings = [
        f"data.root={data}",
        "data.synthetic_images=80",
        f"train.out_dir={out}",
        "train.device=cpu",
        "train.threads=1",
        "train.batch_size=16",
        "train.warmup_steps=1",
        "train.epochs=2",
        "head.embed_dim=32",
    ]
    command = [
        str(torchrun),
        "--standalone",
        f"--nproc_per_node={WORLD}",
        "-m",
        "simpleclip",
        "train",
        "--config",
        "synthetic_tiny",
        *(f"--set={s}" for s in settings),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("Done in") == 1  # only rank 0 prints
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]  # rank 0 logs, once
    assert [json.loads(line)["step"] for line in lines] == [2, 4]  # 80 pictures' train split
    assert (data / "synthetic.json").is_file()  # rank 0 built the set, rank 1 waited
    saved = torch.load(out / "last" / train_module.TRAINER_STATE, weights_only=True)
    assert saved["progress"]["epoch"] == 2 and len(saved["rank_rngs"]) == WORLD
