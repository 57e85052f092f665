"""The zero-shot pretrained-CLIP baseline: its tokenizer, its embeddings and ``eval --baseline``.

A tiny randomly initialised ``transformers.CLIPModel`` and a tiny BPE vocabulary are saved to a
folder, which ``load_baseline`` reads like a downloaded hub model: nothing is downloaded.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from simpleclip.cli import main
from simpleclip.clip_arch import BPETokenizer, learn_merges
from simpleclip.data import CaptionDataset, build_transforms, load_split, read_captions
from simpleclip.data.dataset import find_images_dir
from simpleclip.evaluate import compute_embeddings, retrieval_metrics
from simpleclip.evaluate.baseline import PretrainedCLIPBaseline, load_baseline

CAPTIONS = [
    "a red circle",
    "Two  BLUE squares on a white background",
    "a",
    " ".join(["a small green triangle next to a big yellow star"] * 10),  # > 77 tokens
]


@pytest.fixture(scope="module")
def folder(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CLIP in the hub layout: config, weights, ``vocab.json``, ``merges.txt``."""
    from transformers import CLIPConfig, CLIPModel

    corpus = read_captions(synthetic_root / "captions.txt")["caption"]
    tok = BPETokenizer(learn_merges(corpus, 80))
    text = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        vocab_size=tok.vocab_size,
        bos_token_id=tok.sot_id,
        pad_token_id=0,
        eos_token_id=2,
    )  # the old value of the openai/* hub configs: argmax pooling
    vision = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
    )
    torch.manual_seed(0)
    hf = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).eval()
    with torch.no_grad():
        for param in hf.parameters():
            param.add_(0.02 * torch.randn_like(param))
        hf.logit_scale.fill_(math.log(1 / 0.07))
    out = tmp_path_factory.mktemp("tiny_clip")
    hf.save_pretrained(out)
    tok.save(out)
    return out


@pytest.fixture(scope="module")
def baseline(folder: Path) -> PretrainedCLIPBaseline:
    return load_baseline(folder)


def test_tokenizer_matches_clip_arch(baseline: PretrainedCLIPBaseline, folder: Path) -> None:
    bpe = BPETokenizer.from_pretrained(str(folder))
    rows = bpe(CAPTIONS)  # (4, 77), padded with 0
    ids = baseline.tokenizer(CAPTIONS, truncation=True, max_length=baseline.max_length)
    assert baseline.max_length == 77 and baseline.tokenizer.pad_token_id == 0
    for row, seq in zip(rows, ids["input_ids"], strict=True):
        assert seq[0] == bpe.sot_id and seq[-1] == bpe.eot_id and len(seq) <= 77
        assert row[: len(seq)].tolist() == seq and (row[len(seq) :] == 0).all()
    assert len(ids["input_ids"][3]) == 77  # truncated, end token kept
    with pytest.raises(ValueError, match="over 77"):
        baseline.tokenizer(CAPTIONS, truncation=False)


def test_preprocessing_is_clips_own(baseline: PretrainedCLIPBaseline) -> None:
    pre = baseline.preprocessing
    assert (pre.input_size, pre.interpolation, pre.crop_pct) == (32, "bicubic", 1.0)
    assert pre.mean[0] == pytest.approx(0.48145466) and pre.std[0] == pytest.approx(0.26862954)


@torch.no_grad()
def test_embeddings_equal_clip_arch_and_transformers(
    baseline: PretrainedCLIPBaseline, folder: Path
) -> None:
    from transformers import CLIPModel

    hf = CLIPModel.from_pretrained(folder).eval()
    bpe = BPETokenizer.from_pretrained(str(folder))
    # Right-padded to the longest caption, as CaptionDataset.collate_text does.
    seqs = baseline.tokenizer(CAPTIONS)["input_ids"]
    ids = torch.zeros(len(seqs), max(map(len, seqs)), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)], mask[row, : len(seq)] = torch.tensor(seq), 1
    text_embeds = baseline.encode_text(ids, mask)
    torch.testing.assert_close(text_embeds, baseline.clip.encode_text(bpe(CAPTIONS)))
    reference = hf.get_text_features(input_ids=ids, attention_mask=mask)
    reference = getattr(reference, "pooler_output", reference)  # transformers 5: an output object
    torch.testing.assert_close(text_embeds, F.normalize(reference, dim=-1), atol=1e-5, rtol=0)

    pixels = torch.randn(3, 3, 32, 32)
    image_embeds = baseline.encode_image(pixels)
    reference = hf.get_image_features(pixel_values=pixels)
    reference = getattr(reference, "pooler_output", reference)
    torch.testing.assert_close(image_embeds, F.normalize(reference, dim=-1), atol=1e-5, rtol=0)
    assert torch.allclose(image_embeds.norm(dim=-1), torch.ones(3))


def test_eval_baseline_prints_table_and_writes_metrics(
    baseline: PretrainedCLIPBaseline,
    folder: Path,
    synthetic_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["eval", "--baseline", str(folder), "--data", str(synthetic_root), "--split", "test"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"Zero-shot baseline: {folder}" in out and "text -> image" in out
    metrics = json.loads((tmp_path / "metrics_baseline_test.json").read_text())
    assert {"t2i", "i2t", "n_images", "n_captions"} <= set(metrics)

    dataset = CaptionDataset(
        load_split(synthetic_root, "test"),
        find_images_dir(synthetic_root),
        baseline.tokenizer,
        build_transforms(baseline.preprocessing, train=False),
        max_length=baseline.max_length,
    )
    direct = retrieval_metrics(compute_embeddings(baseline, dataset))
    assert {k: metrics[k] for k in direct} == direct


def test_uncached_hub_id_offline_fails_with_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, synthetic_root: Path, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    argv = ["eval", "--baseline", "simpleclip-tests/no-such-clip", "--data", str(synthetic_root)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("simpleclip eval: error:") and "internet" in err
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
