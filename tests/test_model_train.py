"""The CLIP model, its checkpoints, and the training loop on the synthetic set (CPU, tiny)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from simpleclip.data import load_split
from simpleclip.evaluate import evaluate
from simpleclip.model import CLIPModel, build_model
from simpleclip.train import TrainingDiverged, train
from simpleclip.train.data import build_datasets
from simpleclip.train.optim import make_optimizer
from simpleclip.train.step import Towers
from simpleclip.train.trainer import Trainer


@pytest.fixture
def tiny_model(tiny_config, synthetic_root: Path, tiny_tokenizer) -> CLIPModel:
    torch.manual_seed(0)
    return build_model(tiny_config(synthetic_root, Path("unused")), tokenizer=tiny_tokenizer)


def test_embeddings_are_unit_vectors_in_one_space(tiny_model: CLIPModel) -> None:
    tiny_model.eval()  # BatchNorm: the same statistics for every call below
    images = torch.randn(3, 3, 64, 64)
    batch = tiny_model.tokenize(["a red circle", "two blue squares on the left", "a star"])
    image_embeds = tiny_model.encode_image(images)
    text_embeds = tiny_model.encode_text(batch["input_ids"], batch["attention_mask"])
    assert image_embeds.shape == text_embeds.shape == (3, 32)
    torch.testing.assert_close(image_embeds.norm(dim=1), torch.ones(3))
    logits_per_image, logits_per_text = tiny_model(images, **batch)
    torch.testing.assert_close(logits_per_image, logits_per_text.T)
    scale = tiny_model.logit_scale.exp()
    torch.testing.assert_close(logits_per_image, scale * image_embeds @ text_embeds.T)


def test_save_and_load_reproduce_embeddings_and_tokenization(
    tiny_model: CLIPModel, tmp_path: Path
) -> None:
    tiny_model.eval()
    texts = ["a small purple triangle in the middle", "zebra"]  # 'zebra' is out of vocabulary
    saved = tiny_model.save(tmp_path / "model")
    loaded = CLIPModel.load(saved)
    batch, loaded_batch = tiny_model.tokenize(texts), loaded.tokenize(texts)
    assert torch.equal(batch["input_ids"], loaded_batch["input_ids"])
    torch.testing.assert_close(loaded.encode_text(**batch), tiny_model.encode_text(**batch))
    images = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(loaded.encode_image(images), tiny_model.encode_image(images))
    assert loaded.config == tiny_model.config


def test_a_checkpoint_without_its_config_says_it_is_incomplete(
    tiny_model: CLIPModel, tmp_path: Path
) -> None:
    """Probe 3c: without config.yaml the message named the config lookup of --config (and a
    PosixPath repr); it must say the checkpoint folder is incomplete."""
    saved = tiny_model.save(tmp_path / "model")
    (saved / "config.yaml").unlink()
    with pytest.raises(FileNotFoundError, match=r"has model\.safetensors but no config\.yaml"):
        CLIPModel.load(saved)


def test_optimizer_groups_learning_rates_and_weight_decay(tiny_model: CLIPModel) -> None:
    config = tiny_model.config
    config.image.lr, config.text.lr, config.head.lr = 0.1, 0.2, 0.3
    optimizer = make_optimizer(tiny_model, config)
    where = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    first_conv = tiny_model.image_encoder.backbone.features[0].weight
    assert where[id(first_conv)]["lr"] == 0.1 and where[id(first_conv)]["weight_decay"] > 0
    norm_bias = tiny_model.image_encoder.backbone.features[1].bias
    assert where[id(norm_bias)]["weight_decay"] == 0.0
    embedding = tiny_model.text_encoder.model.embeddings.word_embeddings.weight
    assert where[id(embedding)]["lr"] == 0.2
    scale = where[id(tiny_model.logit_scale)]
    assert scale["lr"] == 0.3 and scale["weight_decay"] == 0.0
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(
        [p for p in tiny_model.parameters() if p.requires_grad]
    )


def test_training_lowers_the_loss_and_beats_chance(
    tiny_config, synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import simpleclip.train.trainer as train_module

    flags, real_loss = [], train_module.clip_loss

    def spy(*args, **kwargs):  # one loss for 1 process and N: the loop always asks to gather
        flags.append((kwargs["gather"], kwargs["local"]))
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(train_module, "clip_loss", spy)
    config = tiny_config(synthetic_root, tmp_path / "run", "train.epochs=4", "data.pairs=all")
    result = train(config, progress=False)
    assert flags and set(flags) == {(True, False)}  # train.distributed_loss=gather
    losses = [record["train_loss"] for record in result.history]
    assert losses[-1] < 0.8 * losses[0]
    train_set, _ = build_datasets(config, result.model, synthetic_root)
    recall = evaluate(result.model, train_set)["t2i"]["R@5"]
    chance = 5 / len(train_set.image_names)
    assert recall > 3 * chance
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]
    assert (tmp_path / "run" / "config.yaml").is_file()
    assert CLIPModel.load(tmp_path / "run" / "best").config == config


def test_siglip_trains_beats_chance_and_saves_its_bias(
    tiny_config, synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """``loss.kind=siglip``: the trainer calls ``siglip_loss``, the bias learns without decay,
    and checkpoints carry it (CLIP's hold no such tensor, so they load as before)."""
    import simpleclip.train.trainer as train_module

    calls, real_loss = [], train_module.siglip_loss

    def spy(*args, **kwargs):
        calls.append((kwargs["gather"], kwargs["local"]))
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(train_module, "siglip_loss", spy)
    monkeypatch.setattr(train_module, "clip_loss", None)  # never called
    settings = ("loss.kind=siglip", "loss.init_temperature=0.1", "train.epochs=4", "data.pairs=all")
    config = tiny_config(synthetic_root, tmp_path / "run", *settings)
    result = train(config, progress=False)
    assert calls and set(calls) == {(True, False)}
    losses = [record["train_loss"] for record in result.history]
    assert losses[-1] < 0.8 * losses[0]
    train_set, _ = build_datasets(config, result.model, synthetic_root)
    assert evaluate(result.model, train_set)["t2i"]["R@5"] > 3 * 5 / len(train_set.image_names)
    bias = result.model.logit_bias
    assert isinstance(bias, torch.nn.Parameter) and bias.item() != pytest.approx(-10.0, abs=1e-4)
    group = next(
        g
        for g in make_optimizer(result.model, config).param_groups
        if any(p is bias for p in g["params"])
    )
    assert group["weight_decay"] == 0.0 and group["lr"] == config.head.lr
    loaded = CLIPModel.load(tmp_path / "run" / "last")
    assert loaded.config.loss.kind == "siglip"
    assert torch.equal(loaded.logit_bias.detach(), bias.detach().cpu())
    assert torch.equal(loaded.logit_scale.detach(), result.model.logit_scale.detach().cpu())
    clip = build_model(
        tiny_config(synthetic_root, tmp_path / "c"), tokenizer=_tokenizer(synthetic_root)
    )
    assert clip.logit_bias is None and "logit_bias" not in clip.state_dict()
    micro = ("train.micro_batch_size=8", "train.epochs=1")  # GradCache carries the bias too
    in_parts = train(tiny_config(synthetic_root, tmp_path / "m", *settings, *micro), progress=False)
    assert in_parts.model.logit_bias.item() != pytest.approx(-10.0, abs=1e-4)


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(
    tiny_config, synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    straight = train(tiny_config(synthetic_root, tmp_path / "a"), progress=False)
    original = Trainer.run_epoch

    def interrupted(self, dataset, epoch, *args):
        if epoch == 1:
            raise KeyboardInterrupt  # the user pressed Ctrl-C during epoch 2
        return original(self, dataset, epoch, *args)

    monkeypatch.setattr(Trainer, "run_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(synthetic_root, tmp_path / "b"), progress=False)
    monkeypatch.setattr(Trainer, "run_epoch", original)
    resumed = train(tiny_config(synthetic_root, tmp_path / "b"), resume=True, progress=False)
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    for (name, a), (_, b) in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_resume_refuses_a_different_model(
    tiny_config, synthetic_root: Path, tmp_path: Path
) -> None:
    train(tiny_config(synthetic_root, tmp_path / "r", "train.epochs=1"), progress=False)
    other = tiny_config(synthetic_root, tmp_path / "r", "head.embed_dim=16")
    with pytest.raises(ValueError, match="'head' settings differ"):
        train(other, resume=True, progress=False)


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_checkpoint(
    tiny_config, synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import simpleclip.train.trainer as train_module

    train(tiny_config(synthetic_root, tmp_path / "n", "train.epochs=1"), progress=False)
    good = CLIPModel.load(tmp_path / "n" / "last").state_dict()
    monkeypatch.setattr(train_module, "clip_loss", lambda *a, **k: torch.tensor(float("nan")))
    with pytest.raises(TrainingDiverged, match=r"nan at epoch 2, step \d+.*last good checkpoint"):
        train(tiny_config(synthetic_root, tmp_path / "n"), resume=True, progress=False)
    kept = CLIPModel.load(tmp_path / "n" / "last").state_dict()
    for name, tensor in good.items():
        assert torch.equal(tensor, kept[name]), name


def test_frozen_encoders_only_train_heads_and_temperature(tiny_config, synthetic_root, tmp_path):
    config = tiny_config(
        synthetic_root,
        tmp_path / "f",
        "train.epochs=1",
        "image.trainable=false",
        "text.trainable=false",
    )
    torch.manual_seed(0)
    before = build_model(config, tokenizer=_tokenizer(synthetic_root))
    result = train(config, progress=False)
    assert result.model.image_encoder.backbone.training is False
    for prefix in ("image_encoder.", "text_encoder."):
        params = [n for n, p in result.model.named_parameters() if n.startswith(prefix)]
        assert params and not any(
            p.requires_grad for n, p in result.model.named_parameters() if n.startswith(prefix)
        )
    assert result.model.logit_scale.item() != pytest.approx(before.logit_scale.item(), abs=1e-7)


def _tokenizer(root: Path):
    from simpleclip.tokenizer import train_wordpiece_tokenizer

    return train_wordpiece_tokenizer(load_split(root, "train")["caption"], 300)


def test_train_on_train_plus_dev_without_validation(
    tiny_config, synthetic_root: Path, tmp_path: Path
):
    config = tiny_config(
        synthetic_root,
        tmp_path / "run",
        "train.epochs=2",
        "data.train_split=train+dev",
        "data.val_split=none",
    )
    result = train(config, progress=False)
    train_set, dev_set = build_datasets(config, result.model, synthetic_root)
    assert dev_set is None
    expected = load_split(synthetic_root, "train")["image"].nunique()
    expected += load_split(synthetic_root, "dev")["image"].nunique()
    assert len(train_set.image_names) == expected
    assert [record["val"] for record in result.history] == [None, None]
    best = CLIPModel.load(tmp_path / "run" / "best")  # with no dev score, best is the last epoch
    for name, tensor in result.model.state_dict().items():
        torch.testing.assert_close(best.state_dict()[name], tensor.cpu(), msg=name)


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend",
    # Dynamo's graph capture run as is: every wiring check, in seconds. Inductor (what
    # train.compile uses) generates and compiles C++ for minutes on 2 cores: the long tier, and
    # the GPU check.
    ["eager", pytest.param("inductor", marks=pytest.mark.course)],
)
def test_compiled_towers_train_like_eager_ones(
    tiny_config, synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend
):
    # Three epochs: within the first (3 steps of warm-up) the loss need not fall yet.
    eager = train(tiny_config(synthetic_root, tmp_path / "eager", "train.epochs=3"), progress=False)
    config = tiny_config(
        synthetic_root, tmp_path / "compiled", "train.epochs=3", "train.compile=true"
    )
    compile_, compiled_modules = torch.compile, []

    def record_and_compile(module, **kwargs):
        compiled_modules.append(module)
        return compile_(module, backend=backend)

    monkeypatch.setattr(torch, "compile", record_and_compile)
    compiled = train(config, progress=False)
    assert [type(m).__name__ for m in compiled_modules] == ["Towers"]
    # Compiled dropout draws other masks, so the losses agree closely, not bit for bit.
    first = compiled.history[0]["step_losses"][0]
    assert first == pytest.approx(eager.history[0]["step_losses"][0], rel=0.05)
    last, eager_last = compiled.history[-1]["train_loss"], eager.history[-1]["train_loss"]
    assert last == pytest.approx(eager_last, rel=0.1)
    assert last < 0.9 * compiled.history[0]["train_loss"]  # it learns
    model = compiled.model.eval()  # no dropout: the compiled towers compute the same function
    train_set, _ = build_datasets(config, model, synthetic_root)
    batch = train_set.collate([train_set[i] for i in range(8)])
    batch = {k: v for k, v in batch.items() if k in ("images", "input_ids", "attention_mask")}
    with torch.no_grad():
        expected = Towers(model)(batch)
        actual = compile_(Towers(model), backend=backend)(batch)
    for a, b in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_trainer_step_trains_in_training_mode_whatever_mode_it_finds(
    tiny_config, synthetic_root: Path, tiny_tokenizer
) -> None:
    """A Hugging Face model comes out of from_pretrained in eval mode: without switching to
    training mode first, a step would run without dropout and give another loss."""
    import copy

    config = tiny_config(synthetic_root, Path("unused"), "head.kind=mlp", "head.dropout=0.5")
    torch.manual_seed(0)
    model = build_model(config, tokenizer=tiny_tokenizer)
    train_set, _ = build_datasets(config, model, synthetic_root)
    batch = train_set.collate([train_set[i] for i in range(8)])
    losses = []
    for mode in (True, False):
        copy_ = copy.deepcopy(model).train(mode)
        trainer = Trainer.build(copy_, config, total_steps=10)
        torch.manual_seed(1)
        losses.append(trainer.step(batch))
        assert copy_.training and copy_.text_head.training
    assert losses[0] == losses[1]
    # The check has teeth: with this dropout, eval and training forwards really differ.
    with torch.no_grad():
        torch.manual_seed(1)
        in_eval = Towers(copy.deepcopy(model).eval())(batch)[1]
        torch.manual_seed(1)
        in_training = Towers(copy.deepcopy(model).train())(batch)[1]
    assert not torch.allclose(in_eval, in_training, atol=1e-4)


@pytest.mark.parametrize(
    ("settings", "laid_out"),
    [
        ((), True),  # the tiny CNN, trained: channels_last
        (("train.channels_last=false",), False),
        (("image.trainable=false",), False),  # frozen: only run forward, left as it is
        (("image.name=tiny_vit",), False),  # a ViT: one convolution, not a CNN
    ],
)
def test_a_trained_cnn_image_tower_is_laid_out_channels_last(
    tiny_config, synthetic_root: Path, tmp_path: Path, settings, laid_out
) -> None:
    config = tiny_config(synthetic_root, tmp_path, *settings)
    model = build_model(config, tokenizer=_tokenizer(synthetic_root))
    loop = Trainer.build(model, config)
    weights = [p for p in model.image_encoder.parameters() if p.dim() == 4]  # conv kernels
    assert weights
    channels_last = [p.is_contiguous(memory_format=torch.channels_last) for p in weights]
    assert all(channels_last) if laid_out else not all(channels_last)
    pixels = torch.randn(4, 3, model.preprocessing.input_size, model.preprocessing.input_size)
    batch = {"images": pixels, **model.tokenize(["a red circle"] * 4)}
    batch |= {"image_ids": torch.arange(4), "text_ids": torch.arange(4)}
    assert torch.isfinite(torch.tensor(loop.step(batch)))  # and it still trains


def _scripted_dev_scores(monkeypatch: pytest.MonkeyPatch, r1_per_epoch: list[float]) -> None:
    """Training as usual, but the dev split "scores" ``r1_per_epoch[i]`` after epoch i + 1."""
    import simpleclip.train.loop as loop_module

    real = loop_module.training_data
    scores = iter(r1_per_epoch)

    def scripted(config, model, root, progress=True):
        train_set, _ = real(config, model, root, progress)

        def validate() -> dict:
            r = next(scores)
            return {d: {"R@1": r, "R@5": r, "R@10": r} for d in ("t2i", "i2t")}

        return train_set, validate

    monkeypatch.setattr(loop_module, "training_data", scripted)


def test_patience_stops_when_dev_stops_improving_and_best_keeps_the_peak(
    tiny_config, synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    _scripted_dev_scores(monkeypatch, [0.5, 0.6, 0.55, 0.58, 0.9, 0.9])
    config = tiny_config(synthetic_root, tmp_path / "p", "train.epochs=6", "train.patience=2")
    result = train(config, progress=True)
    # epoch 2 is the peak; epochs 3 and 4 are not better: stop before epoch 5 (its 0.9 unseen)
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]
    assert result.best_epoch == 2
    lines = (tmp_path / "p" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]
    assert "Early stop after epoch 4" in capsys.readouterr().out
    best, last = CLIPModel.load(tmp_path / "p" / "best"), CLIPModel.load(tmp_path / "p" / "last")
    assert not torch.equal(best.logit_scale, last.logit_scale)  # best/ is epoch 2, not 4
    # a resumed run that already ran out of patience trains nothing more
    resumed = train(config, resume=True, progress=False)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4]


def test_patience_zero_trains_every_epoch_and_patience_needs_a_dev_split(
    tiny_config, synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from simpleclip.config import ConfigError

    _scripted_dev_scores(monkeypatch, [0.5, 0.4, 0.3])
    config = tiny_config(synthetic_root, tmp_path / "z", "train.epochs=3")
    assert [r["epoch"] for r in train(config, progress=False).history] == [1, 2, 3]
    assert train(config, resume=True, progress=False).best_epoch == 1
    no_dev = tiny_config(synthetic_root, tmp_path / "n", "train.patience=1", "data.val_split=none")
    with pytest.raises(ValueError, match=r"data\.val_split is 'none'.*train\.patience=0"):
        train(no_dev, progress=False)
    with pytest.raises(ConfigError, match=r"train\.patience must be 0"):
        tiny_config(synthetic_root, tmp_path / "x", "train.patience=-1")


def test_keep_last_false_leaves_best_only_and_a_resume_says_there_is_nothing_to_resume(
    tiny_config, synthetic_root: Path, tmp_path: Path, capsys
) -> None:
    from simpleclip.cli import main
    from simpleclip.config import save_config

    config = tiny_config(synthetic_root, tmp_path / "k", "train.keep_last=false")
    result = train(config, progress=True)
    checkpoints = {p.name for p in (tmp_path / "k").iterdir()} & {"best", "last", "last.old"}
    assert checkpoints == {"best"}
    out = capsys.readouterr().out
    assert f"Run finished: kept best/ (epoch {result.best_epoch}); removed last/" in out
    best = CLIPModel.load(result.best_dir)
    assert best.config.train.keep_last is False
    config_file = tmp_path / "k.yaml"
    save_config(config, config_file)
    assert main(["train", "--config", str(config_file), "--resume"]) == 1  # no traceback
    err = capsys.readouterr().err
    assert "Nothing to resume in" in err and "train.keep_last=false" in err
    assert len(err.strip().splitlines()) == 1


def test_keep_last_false_still_leaves_last_after_a_crash_so_the_run_resumes(
    tiny_config, synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Trainer.run_epoch

    def interrupted(self, dataset, epoch, *args):
        if epoch == 1:
            raise KeyboardInterrupt  # killed during epoch 2
        return original(self, dataset, epoch, *args)

    config = tiny_config(synthetic_root, tmp_path / "c", "train.keep_last=false")
    monkeypatch.setattr(Trainer, "run_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(config, progress=False)
    assert (tmp_path / "c" / "last" / "trainer_state.pt").is_file()  # epoch 1's resume state
    monkeypatch.setattr(Trainer, "run_epoch", original)
    resumed = train(config, resume=True, progress=False)
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    assert (tmp_path / "c" / "best").is_dir() and not (tmp_path / "c" / "last").exists()


def test_keep_last_false_without_a_dev_split_keeps_the_last_epoch_in_best(
    tiny_config, synthetic_root: Path, tmp_path: Path
) -> None:
    settings = ("train.epochs=1", "data.val_split=none", "train.keep_last=false")
    result = train(tiny_config(synthetic_root, tmp_path / "n", *settings), progress=False)
    assert not (tmp_path / "n" / "last").exists()
    best = CLIPModel.load(result.best_dir)  # with no dev score, best/ is the last epoch
    for name, tensor in result.model.state_dict().items():
        assert torch.equal(best.state_dict()[name], tensor.cpu()), name
