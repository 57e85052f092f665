"""A pretrained CLIP is a model like any other: loaded from transformers' layout as a
``CLIPModel`` with the course's own CLIP towers, equal to ``transformers.CLIPModel``, saved and
reloaded bit for bit, and taken by ``eval`` and ``search`` as any checkpoint.

``clip_folder`` (conftest) is a tiny randomly initialised ``transformers.CLIPModel`` and a tiny
BPE vocabulary saved like a hub repo: nothing is downloaded.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from simpleclip.checkpoint import resolve_checkpoint
from simpleclip.cli import main
from simpleclip.clip_arch import BPETokenizer, load_pretrained
from simpleclip.config import CLIP_TOWERS, apply_overrides
from simpleclip.evaluate import compute_embeddings, eval_split, retrieval_metrics
from simpleclip.inference import embed_pictures, embed_texts
from simpleclip.model import CLIPModel, build_model

CAPTIONS = [
    "a red circle",
    "Two  BLUE squares on a white background",
    "a",
    " ".join(["a small green triangle next to a big yellow star"] * 10),  # > 77 tokens
]


@pytest.fixture(scope="module")
def model(clip_folder: Path) -> CLIPModel:
    return CLIPModel.load(clip_folder)


def features(output: object) -> torch.Tensor:
    """transformers 5 returns an output object whose ``pooler_output`` is projected; 4 a tensor."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def test_tokenizer_matches_clip_arch(model: CLIPModel, clip_folder: Path) -> None:
    bpe = BPETokenizer.from_pretrained(str(clip_folder))
    rows = bpe(CAPTIONS)  # (4, 77), padded with 0
    ids = model.tokenizer(CAPTIONS, truncation=True, max_length=model.max_length)
    assert model.max_length == 77 and model.tokenizer.pad_token_id == 0
    for row, seq in zip(rows, ids["input_ids"], strict=True):
        assert seq[0] == bpe.sot_id and seq[-1] == bpe.eot_id and len(seq) <= 77
        assert row[: len(seq)].tolist() == seq and (row[len(seq) :] == 0).all()
    assert len(ids["input_ids"][3]) == 77  # truncated, end token kept
    with pytest.raises(ValueError, match="over 77"):
        model.tokenizer(CAPTIONS, truncation=False)
    batch = model.tokenize(CAPTIONS)  # padded to the longest, as CaptionDataset pads
    assert batch["input_ids"].shape == (4, 77) and batch["attention_mask"][2].sum() == 3


def test_preprocessing_is_clips_own(model: CLIPModel) -> None:
    pre = model.preprocessing
    assert (pre.input_size, pre.interpolation, pre.crop_pct) == (32, "bicubic", 1.0)
    assert pre.mean[0] == pytest.approx(0.48145466) and pre.std[0] == pytest.approx(0.26862954)


def test_config_says_what_it_is_and_the_heads_are_clips_projections(
    model: CLIPModel, clip_folder: Path
) -> None:
    hf = load_file(clip_folder / "model.safetensors")
    config = model.config
    assert (config.image.name, config.text.name) == (CLIP_TOWERS, CLIP_TOWERS)
    assert (config.head.kind, config.head.embed_dim, config.data.max_length) == ("linear", 16, 77)
    assert torch.equal(model.image_head.weight, hf["visual_projection.weight"])
    assert torch.equal(model.text_head.weight, hf["text_projection.weight"])
    assert torch.equal(model.logit_scale, hf["logit_scale"])
    assert model.image_encoder.out_dim == model.text_encoder.out_dim == 32  # widths, not E
    # No copy of the projections is left inside the towers.
    assert model.image_encoder.visual.proj is None
    assert model.text_encoder.text.text_projection is None


@torch.no_grad()
def test_embeddings_equal_clip_arch_and_transformers(model: CLIPModel, clip_folder: Path) -> None:
    from transformers import CLIPModel as HFCLIPModel

    hf = HFCLIPModel.from_pretrained(clip_folder).eval()
    clip, bpe = load_pretrained(str(clip_folder))  # clip_arch's own CLIP, projections inside
    batch = model.tokenize(CAPTIONS)  # right-padded with 0 to the longest caption
    ids, mask = batch["input_ids"], batch["attention_mask"]
    text_embeds = model.encode_text(ids, mask)
    torch.testing.assert_close(text_embeds, clip.encode_text(bpe(CAPTIONS)))
    reference = features(hf.get_text_features(input_ids=ids, attention_mask=mask))
    torch.testing.assert_close(text_embeds, F.normalize(reference, dim=-1), atol=1e-5, rtol=0)

    pixels = torch.randn(3, 3, 32, 32)
    image_embeds = model.encode_image(pixels)
    reference = features(hf.get_image_features(pixel_values=pixels))
    torch.testing.assert_close(image_embeds, F.normalize(reference, dim=-1), atol=1e-5, rtol=0)
    assert torch.allclose(image_embeds.norm(dim=-1), torch.ones(3))
    assert (image_embeds @ text_embeds.T).std() > 0.01  # not trivially equal


def test_save_then_load_is_bit_exact_and_offline(model: CLIPModel, tmp_path: Path) -> None:
    folder = model.save(tmp_path / "saved")
    arch = json.loads((folder / "text_model" / "config.json").read_text())
    assert arch["model_type"] == "clip"  # both towers' sizes, read back offline
    assert {"vocab.json", "merges.txt"} <= {p.name for p in (folder / "tokenizer").iterdir()}
    loaded = CLIPModel.load(folder)
    before, after = model.state_dict(), loaded.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert loaded.config == model.config
    texts, pixels = ["a red circle", "two blue squares"], torch.randn(2, 3, 32, 32)
    assert torch.equal(embed_texts(loaded, texts), embed_texts(model, texts))
    with torch.no_grad():
        assert torch.equal(loaded.encode_image(pixels), model.encode_image(pixels))


def test_from_pretrained_and_resolve_checkpoint_take_the_folder(
    model: CLIPModel, clip_folder: Path
) -> None:
    assert resolve_checkpoint(str(clip_folder)) == clip_folder  # a folder: nothing downloaded
    loaded = CLIPModel.from_pretrained(str(clip_folder))
    assert torch.equal(embed_texts(loaded, CAPTIONS), embed_texts(model, CAPTIONS))


@pytest.mark.parametrize("weights", ["safetensors with position ids", "pickle"])
def test_weights_of_older_checkpoints_load(
    model: CLIPModel, clip_folder: Path, tmp_path: Path, weights: str
) -> None:
    folder = tmp_path / "clip"
    shutil.copytree(
        clip_folder, folder, ignore=shutil.ignore_patterns("metrics_*", "*.safetensors")
    )
    state = load_file(clip_folder / "model.safetensors")
    state["text_model.embeddings.position_ids"] = torch.arange(77)[None]  # not a weight
    if weights == "pickle":
        torch.save(state, folder / "pytorch_model.bin")  # read with weights_only=True
    else:
        save_file(state, folder / "model.safetensors")
    loaded = CLIPModel.load(folder)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in loaded.state_dict().items())


def test_other_models_and_half_clip_configs_are_refused(clip_folder: Path, tmp_path: Path) -> None:
    folder = tmp_path / "bert"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="'bert' model, not a CLIP"):
        CLIPModel.load(folder)
    config = apply_overrides(CLIPModel.load(clip_folder).config, ["text.name=tiny"])
    with pytest.raises(ValueError, match="must both be 'clip'"):
        build_model(config)


def test_eval_takes_a_pretrained_clip_as_a_checkpoint(
    model: CLIPModel, clip_folder: Path, synthetic_root: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = ["eval", "--checkpoint", str(clip_folder), "--data", str(synthetic_root)]
    assert main(argv) == 0
    assert "text -> image" in capsys.readouterr().out
    metrics = json.loads((clip_folder / "metrics_test.json").read_text())
    direct = retrieval_metrics(compute_embeddings(model, eval_split(model, synthetic_root)))
    assert {k: metrics[k] for k in direct} == direct


def test_eval_baseline_is_an_alias_that_says_so(
    clip_folder: Path, synthetic_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    outs = [tmp_path / "baseline.json", tmp_path / "checkpoint.json"]
    for flag, out in zip(("--baseline", "--checkpoint"), outs, strict=True):
        argv = ["eval", flag, str(clip_folder), "--data", str(synthetic_root), "--out", str(out)]
        assert main(argv) == 0
    assert f"--baseline is --checkpoint now: evaluating --checkpoint {clip_folder}" in (
        capsys.readouterr().err
    )
    baseline, checkpoint = (json.loads(out.read_text()) for out in outs)
    assert {k: v for k, v in baseline.items() if k != "eval_seconds"} == {
        k: v for k, v in checkpoint.items() if k != "eval_seconds"
    }


def test_search_takes_a_pretrained_clip_as_a_checkpoint(
    model: CLIPModel, clip_folder: Path, synthetic_root: Path, tmp_path: Path, capsys
) -> None:
    images = synthetic_root / "Images"
    query = "a big red circle"
    argv = ["search", query, "--checkpoint", str(clip_folder), "--images", str(images)]
    assert main([*argv, "--top-k", "3", "--cache-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"Best matches for {query!r}:"
    shown = [line.split()[-1] for line in lines[1:4]]
    files = sorted(images.glob("*.jpg"))
    image_embeds, _ = embed_pictures(model, files)
    scores = image_embeds @ embed_texts(model, [query])[0]
    assert shown == [files[i].name for i in scores.topk(3).indices]


def test_uncached_hub_id_offline_fails_with_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, synthetic_root: Path, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    name = "simpleclip-tests/no-such-clip"
    assert main(["eval", "--checkpoint", name, "--data", str(synthetic_root)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("simpleclip eval: error:") and "internet" in err
    assert repr(name) in err and "HF_HUB_OFFLINE" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("models", "message"),
    [
        ([], "one of the arguments --checkpoint --baseline is required"),
        (["--checkpoint", "runs/x", "--baseline", "y"], "not allowed with argument"),
    ],
)
def test_exactly_one_of_checkpoint_and_baseline(
    models: list[str], message: str, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--data", "data/synthetic", *models])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_zero_shot_with_a_pretrained_clip_equals_transformers(
    model: CLIPModel, clip_folder: Path
) -> None:
    """The zero-shot road (prompts, CLIP's tokenizer, its temperature of 1/100) gives the
    probabilities ``transformers.CLIPModel``'s ``logits_per_image`` give."""
    from transformers import CLIPModel as TransformersCLIP

    from simpleclip.zeroshot import classify

    hf = TransformersCLIP.from_pretrained(clip_folder).eval()
    size = model.preprocessing.input_size
    pixels = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(7))
    classes = ["red circle", "blue square", "green triangle", "yellow star"]
    predictions = classify(model, pixels, classes, ["a photo of a {}."], top_k=len(classes))
    got = torch.tensor(
        [[{p.label: p.probability for p in top}[c] for c in classes] for top in predictions]
    )
    ids = model.tokenize([f"a photo of a {c}." for c in classes])
    with torch.no_grad():
        expected = hf(**ids, pixel_values=pixels).logits_per_image.softmax(dim=-1)  # (3, 4)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert model.scale.item() == pytest.approx(100)
