"""Training from a pretrained CLIP: ``clip_finetune`` (the whole model) and ``clip_lit`` (the
image tower locked, its features cached), on the tiny random CLIP of ``clip_folder`` (conftest)
and the synthetic set. A run starts from the CLIP's weights and learned temperature, trains what
its config says, and its checkpoints load, evaluate, export and share like any run's.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from simpleclip.cli import main
from simpleclip.config import Config, ConfigError, load_config
from simpleclip.hub import stage_checkpoint
from simpleclip.model import CLIPModel
from simpleclip.model_card import write_model_card
from simpleclip.train import train
from simpleclip.train.data import new_model
from simpleclip.train.run_dir import BEST, LAST

CAPTIONS = ["a red circle", "two blue squares", "a small green triangle"]


def clip_config(name: str, clip_folder: Path, root: Path, out: Path, *overrides: str) -> Config:
    """A shipped CLIP config, shrunk to the synthetic set and a few fast steps."""
    return load_config(
        name,
        [
            f"train.init_from={clip_folder}",
            f"data.root={root}",
            f"train.out_dir={out}",
            "data.num_workers=0",
            "train.batch_size=32",
            "train.epochs=2",
            "train.warmup_steps=2",
            "train.precision=fp32",
            *overrides,
        ],
    )


def embeddings(model: CLIPModel, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return model.encode_image(pixels), model.encode_text(**model.tokenize(CAPTIONS))


@pytest.fixture(scope="module")
def pixels(clip_folder: Path) -> torch.Tensor:
    size = CLIPModel.load(clip_folder).preprocessing.input_size
    return torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(3))


def test_a_run_starts_from_the_clip_and_its_learned_temperature(
    clip_folder: Path, synthetic_root: Path, tmp_path: Path, pixels, capsys
) -> None:
    config = clip_config("clip_finetune", clip_folder, synthetic_root, tmp_path)
    assert (config.head.embed_dim, config.loss.init_temperature) == (512, 0.07)  # ViT-B/32's
    model = new_model(config, synthetic_root)
    source = CLIPModel.load(clip_folder)
    for got, expected in zip(embeddings(model, pixels), embeddings(source, pixels), strict=True):
        assert torch.equal(got, expected)
    assert model.logit_scale.item() == pytest.approx(math.log(100))  # not 0.07's log(14.3)
    assert model.logit_scale.requires_grad and model.config.head.embed_dim == 16
    assert "head.embed_dim=16 (config: 512)" in capsys.readouterr().out  # not silently
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"image_encoder", "text_encoder", "image_head", "text_head", "logit_scale"}


def test_finetune_trains_every_part_and_its_run_reloads_resumes_and_evaluates(
    clip_folder: Path, synthetic_root: Path, tmp_path: Path, pixels, capsys
) -> None:
    fast = ["image.lr=1e-4", "text.lr=1e-4", "head.lr=1e-4"]  # visible in two epochs
    out = tmp_path / "run"
    result = train(clip_config("clip_finetune", clip_folder, synthetic_root, out, *fast), False)
    losses = [record["train_loss"] for record in result.history]
    assert losses[1] < losses[0] - 0.5, losses
    source, trained = CLIPModel.load(clip_folder).state_dict(), result.model.state_dict()
    unchanged = [k for k, v in source.items() if k in trained and torch.equal(v, trained[k])]
    moved = {"image_encoder", "text_encoder", "image_head", "text_head"}
    assert not [k for k in unchanged if k.split(".")[0] in moved and "position_ids" not in k]

    saved = load_config(out / "config.yaml")  # the run config: the CLIP's fit
    assert (saved.head.embed_dim, saved.train.init_from) == (16, str(clip_folder))
    reloaded = CLIPModel.load(out / LAST)
    for got, expected in zip(
        embeddings(reloaded, pixels), embeddings(result.model, pixels), strict=True
    ):
        assert torch.equal(got, expected)

    longer = clip_config("clip_finetune", clip_folder, synthetic_root, out, *fast, "train.epochs=3")
    resumed = train(longer, resume=True)  # the saved config is the CLIP's fit, not the YAML's
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]

    argv = ["eval", "--checkpoint", str(out / BEST), "--data", str(synthetic_root)]
    assert main(argv) == 0 and "text -> image" in capsys.readouterr().out


def test_lit_locks_the_image_tower_caches_its_features_and_trains_the_text_tower(
    clip_folder: Path, synthetic_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "lit"  # through the command line, as the user types it
    settings = [f"train.init_from={clip_folder}", f"data.root={synthetic_root}"]
    settings += [f"train.out_dir={out}", "data.num_workers=0", "train.batch_size=32"]
    settings += ["train.epochs=2", "train.warmup_steps=2", "text.lr=1e-4"]
    assert main(["train", "--config", "clip_lit", *(f"--set={s}" for s in settings)]) == 0
    source, trained = CLIPModel.load(clip_folder).state_dict(), CLIPModel.load(out / LAST)
    state = trained.state_dict()
    image = [k for k in source if k.startswith("image_encoder.")]
    text = [k for k in source if k.startswith("text_encoder.") and "position_ids" not in k]
    assert image and all(torch.equal(source[k], state[k]) for k in image)  # locked
    assert all(not torch.equal(source[k], state[k]) for k in text if "weight" in k)
    assert not any(p.requires_grad for p in trained.image_encoder.parameters())
    cache = list((synthetic_root / ".cache").glob("image-features-*.pt"))
    assert cache, "the locked tower's features were not cached"
    losses = [json.loads(line)["train_loss"] for line in (out / "metrics.jsonl").open()]
    assert losses[1] < losses[0], losses


def test_a_clip_run_without_a_clip_to_start_from_is_refused(
    synthetic_root: Path, tmp_path: Path, capsys
) -> None:
    with pytest.raises(ConfigError, match=r"train\.init_from"):
        new_model(load_config("clip_finetune", ["train.init_from=null"]), synthetic_root)
    argv = ["train", "--config", "clip_lit", "--set", "train.init_from=null"]
    argv += ["--set", f"data.root={synthetic_root}", "--set", f"train.out_dir={tmp_path / 'r'}"]
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert "openai/clip-vit-base-patch32" in err and "Traceback" not in err


def test_a_finetune_shared_names_its_base_model_and_no_local_path(
    clip_folder: Path, synthetic_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "shared"
    train(clip_config("clip_finetune", clip_folder, synthetic_root, out, "train.epochs=1"), False)
    staged = tmp_path / "staging"
    staged.mkdir()
    stage_checkpoint(out / BEST, staged)  # what push uploads
    card = write_model_card(staged, "someone/flickr8k-clip").read_text()
    assert "fine-tuned with simpleclip" in card and "CLIP's ViT, trained" in card
    assert "tiny_clip" in card  # the folder's last part: where it started
    everything = "".join(p.read_text(errors="ignore") for p in staged.rglob("*") if p.is_file())
    assert str(tmp_path) not in everything


def test_export_of_a_pretrained_clip_matches_it(clip_folder: Path, tmp_path: Path, pixels) -> None:
    ort = pytest.importorskip(
        "onnxruntime", reason='optional extra: pip install "simpleclip[onnx]"'
    )
    out = tmp_path / "onnx"
    assert main(["export", "--checkpoint", str(clip_folder), "--out", str(out)]) == 0
    model = CLIPModel.load(clip_folder)
    image_embeds, text_embeds = embeddings(model, pixels)
    options = {"providers": ["CPUExecutionProvider"]}
    image_graph = ort.InferenceSession(str(out / "image_encoder.onnx"), **options)
    (got,) = image_graph.run(None, {"images": pixels.numpy()})
    torch.testing.assert_close(torch.from_numpy(got), image_embeds, atol=1e-5, rtol=0)
    batch = {k: v.numpy() for k, v in model.tokenize(CAPTIONS).items()}
    text_graph = ort.InferenceSession(str(out / "text_encoder.onnx"), **options)
    (got,) = text_graph.run(None, batch)
    torch.testing.assert_close(torch.from_numpy(got), text_embeds, atol=1e-5, rtol=0)
    # A consumer's road: the exported tokenizer folder, read by AutoTokenizer as for any export
    # (it pads with the end token, not with 0: the end token is still found first).
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out / "tokenizer")
    feeds = tokenizer(CAPTIONS, padding=True, truncation=True, max_length=77, return_tensors="np")
    assert feeds["input_ids"].tolist() != batch["input_ids"].tolist()  # another padding
    (got,) = text_graph.run(None, {name: feeds[name] for name in batch})
    torch.testing.assert_close(torch.from_numpy(got), text_embeds, atol=1e-5, rtol=0)
    recipe = json.loads((out / "preprocess.json").read_text())
    assert recipe["image"]["interpolation"] == "bicubic" and recipe["scale"] == pytest.approx(100)
