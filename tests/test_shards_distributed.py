"""Two processes (DDP, gloo on the CPU) fed by webdataset shards.

Without resampling every pair of an epoch is seen exactly once across the ranks, both ranks
take the same number of steps, and the gathered loss on the two ranks' shard batches gives the
gradients of one process on both batches (the check of ``test_distributed.py``, now fed by
shards). One spawn of 2 processes, as there; the tests below read its results.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

pytest.importorskip("webdataset", reason="pip install 'simpleclip[scale]' (or requirements.txt)")

from test_distributed import (  # the gloo helpers of the folder-fed tests
    TOLERANCE,
    WORLD,
    _free_port,
    _gradients,
    _join_and_run,
    _max_difference,
)

from simpleclip.data import build_transforms
from simpleclip.data.shard_writer import write_shards
from simpleclip.data.shards import ShardDataset
from simpleclip.model import CLIPModel, build_model
from simpleclip.train import distributed, train
from simpleclip.train.step import Towers

B, PER_SHARD, EPOCHS = 16, 24, 2  # 96 training pictures: 4 shards, 3 steps per rank


def _rank_epochs(model_dir: Path, shards: list[str]) -> dict:
    """The pairs each epoch gives this rank, and its gradients on its first batch."""
    model = CLIPModel.load(model_dir)
    transform = build_transforms(model.image_encoder.preprocessing, train=False)
    dataset = ShardDataset(
        shards, model.tokenizer, transform, B, pairs="one_per_image", shuffle_buffer=50
    )
    epochs, first = [], None
    for epoch in range(EPOCHS):
        dataset.set_epoch(epoch)
        batches = list(dataset.loader())
        first = first or batches[0]
        epochs.append([b["image_ids"].tolist() for b in batches])
    towers = distributed.wrap(Towers(model), torch.device("cpu"))
    loss, grads = _gradients(model, first, "gather", 0, towers)
    return {"epochs": epochs, "batch": first, "loss": loss, "grads": grads}


def _two_ranks(rank: int, model_dir: Path, shards: list[str], config, out: Path) -> None:
    results = _rank_epochs(model_dir, shards)
    results["history"] = train(config, progress=False).history
    torch.save(results, out / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory, tiny_config, synthetic_root, tiny_tokenizer) -> dict:
    tmp = tmp_path_factory.mktemp("ddp_shards")
    paths = write_shards(synthetic_root, "train", tmp / "shards", PER_SHARD)
    config = tiny_config(synthetic_root, Path("unused"), "image.name=tiny_vit")
    torch.manual_seed(0)
    model_dir = build_model(config, tokenizer=tiny_tokenizer).save(tmp / "model")
    config = tiny_config(
        synthetic_root,
        tmp / "run",
        "data.format=webdataset",
        f"data.shards={paths[0].parent}/{{00000..0000{len(paths) - 1}}}.tar",
        "data.val_split=none",
        "train.device=cpu",
        "train.threads=1",
        f"train.batch_size={B}",
        "train.epochs=1",
    )
    shards = [str(p) for p in paths]
    args = (_two_ranks, (model_dir, shards, config, tmp))
    mp.spawn(_join_and_run, args=(_free_port(), *args), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    return {"ranks": ranks, "model_dir": model_dir, "pictures": 4 * PER_SHARD}


def test_every_pair_of_an_epoch_is_seen_once_across_ranks(two_ranks) -> None:
    rank0, rank1 = two_ranks["ranks"]
    for epoch in range(EPOCHS):
        seen = [[i for batch in r["epochs"][epoch] for i in batch] for r in (rank0, rank1)]
        assert len(seen[0]) == len(seen[1]) == two_ranks["pictures"] // WORLD
        assert not set(seen[0]) & set(seen[1])  # disjoint: each rank its own shards
        assert len(set(seen[0]) | set(seen[1])) == two_ranks["pictures"]  # all of them, once
    assert rank0["epochs"][0] != rank0["epochs"][1]  # another order each epoch


def test_both_ranks_take_the_same_number_of_steps(two_ranks) -> None:
    for rank in two_ranks["ranks"]:
        assert [len(epoch) for epoch in rank["epochs"]] == [3] * EPOCHS  # 96 / (2 × 16)
        assert [r["step"] for r in rank["history"]] == [3]  # train() under DDP, from shards
    losses = [rank["history"][0]["step_losses"] for rank in two_ranks["ranks"]]
    assert losses[0] == losses[1]  # the logged loss is the mean over ranks: the same on both


def _joined(batches: list[dict], pad_token_id: int) -> dict:
    """The two ranks' batches as one, captions padded to the longer of the two."""
    length = max(b["input_ids"].shape[1] for b in batches)
    pads = {"input_ids": pad_token_id, "attention_mask": 0}

    def pad(b: dict, key: str) -> torch.Tensor:
        return F.pad(b[key], (0, length - b[key].shape[1]), value=pads[key])

    return {
        key: torch.cat([pad(b, key) if key in pads else b[key] for b in batches])
        for key in batches[0]
    }


def test_gathered_loss_on_shard_batches_matches_one_process(two_ranks) -> None:
    model = CLIPModel.load(two_ranks["model_dir"])
    batches = [rank["batch"] for rank in two_ranks["ranks"]]
    whole = _joined(batches, model.tokenizer.pad_token_id)
    reference_loss, reference = _gradients(model, whole, "single", 0)
    assert all(g.abs().sum() > 0 for g in reference.values())
    for rank in two_ranks["ranks"]:
        difference = _max_difference(rank["grads"], reference)
        print(f"shards, gather: max |grad difference| = {difference:.2e}")
        assert difference < TOLERANCE
        assert rank["loss"] == pytest.approx(reference_loss, abs=1e-6)
