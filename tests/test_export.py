"""ONNX export (``simpleclip.export``, ``simpleclip export``): the graphs equal PyTorch.

The tiny model is saved, exported once through the command line, and the files are then used
the way someone without simpleclip would: onnxruntime for the graphs, ``transformers`` for the
tokenizer, PIL and numpy following ``preprocess.json`` for the pixels.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("onnx", reason='optional extra: pip install "simpleclip[onnx]"')
ort = pytest.importorskip("onnxruntime", reason='optional extra: pip install "simpleclip[onnx]"')
pytest.importorskip("onnxscript", reason='optional extra: pip install "simpleclip[onnx]"')

from simpleclip.cli import main  # noqa: E402
from simpleclip.data.transforms import build_transforms  # noqa: E402
from simpleclip.export import EXPORT_FILES, export_onnx  # noqa: E402
from simpleclip.model import CLIPModel, build_model  # noqa: E402

CAPTIONS = [
    "a red circle",
    "a big blue square on the left of a small green triangle",
    "two yellow stars",
    "a purple",
]


@pytest.fixture(scope="module")
def exported(
    tiny_config, synthetic_root: Path, tiny_tokenizer, tmp_path_factory
) -> tuple[CLIPModel, Path]:
    """The tiny model, saved and exported once through ``simpleclip export``."""
    root = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    config = tiny_config(synthetic_root, root / "run")
    build_model(config, tokenizer=tiny_tokenizer).save(root / "model")
    out = root / "onnx"
    args = ["export", "--checkpoint", str(root / "model"), "--format", "onnx", "--out", str(out)]
    assert main(args) == 0
    return CLIPModel.load(root / "model"), out


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_writes_the_graphs_the_tokenizer_and_the_recipe(exported) -> None:
    _, out = exported
    assert sorted(p.name for p in out.iterdir()) == sorted(EXPORT_FILES)
    assert (out / "tokenizer" / "tokenizer.json").is_file()
    assert not list(out.parent.glob(".onnx.tmp-*")) and not (out.parent / "onnx.old").exists()


@pytest.mark.parametrize("batch_size", [1, 4])  # traced with 2: both prove the dynamic axis
def test_image_graph_equals_encode_image(exported, batch_size: int) -> None:
    model, out = exported
    size = model.preprocessing.input_size
    images = torch.randn(batch_size, 3, size, size, generator=torch.Generator().manual_seed(5))
    (got,) = session(out / "image_encoder.onnx").run(None, {"images": images.numpy()})
    with torch.no_grad():
        expected = model.encode_image(images)
    torch.testing.assert_close(torch.from_numpy(got), expected, atol=1e-4, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("batch_size", [1, 4])
def test_text_graph_with_the_saved_tokenizer_equals_encode_text(exported, batch_size: int) -> None:
    """Tokenized by ``transformers`` alone, as ``preprocess.json`` says: no simpleclip needed."""
    from transformers import AutoTokenizer

    model, out = exported
    text = json.loads((out / "preprocess.json").read_text())["text"]
    tokenizer = AutoTokenizer.from_pretrained(out / text["tokenizer"])
    feeds = tokenizer(
        CAPTIONS[:batch_size],
        padding=text["padding"],
        truncation=True,
        max_length=text["max_length"],
        return_token_type_ids=False,
        return_tensors="np",
    )
    (got,) = session(out / "text_encoder.onnx").run(None, dict(feeds))
    batch = model.tokenize(CAPTIONS[:batch_size])
    assert np.array_equal(feeds["input_ids"], batch["input_ids"].numpy())
    with torch.no_grad():
        expected = model.encode_text(batch["input_ids"], batch["attention_mask"])
    torch.testing.assert_close(torch.from_numpy(got), expected, atol=1e-4, rtol=0)


def test_graph_inputs_have_a_dynamic_batch_and_caption_length(exported) -> None:
    _, out = exported
    image_input = session(out / "image_encoder.onnx").get_inputs()[0]
    assert image_input.name == "images" and isinstance(image_input.shape[0], str)
    for text_input in session(out / "text_encoder.onnx").get_inputs():
        assert text_input.type == "tensor(int64)"
        assert all(isinstance(dim, str) for dim in text_input.shape), text_input.shape


def recipe_pixels(picture: np.ndarray, image: dict) -> np.ndarray:
    """``preprocess.json``'s steps with PIL and numpy only: (H, W, 3) uint8 -> (3, S, S)."""
    height, width = picture.shape[:2]
    short, crop = image["resize_short_side"], image["crop_size"]
    size = (
        (int(short * width / height), short)
        if height <= width
        else (short, int(short * height / width))
    )
    filters = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
    resized = np.asarray(Image.fromarray(picture).resize(size, filters[image["interpolation"]]))
    top, left = round((size[1] - crop) / 2), round((size[0] - crop) / 2)
    pixels = resized[top : top + crop, left : left + crop].astype(np.float32) / 255
    return ((pixels - image["mean"]) / image["std"]).transpose(2, 0, 1)


def check_recipe(model: CLIPModel, recipe: dict) -> None:
    """The recipe equals ``model.preprocessing`` and gives the pixels evaluation feeds."""
    assert {k: recipe["image"][k] for k in asdict(model.preprocessing)} == json.loads(
        json.dumps(asdict(model.preprocessing))
    )
    picture = np.random.default_rng(0).integers(0, 256, (150, 201, 3), dtype=np.uint8)
    expected = build_transforms(model.preprocessing, train=False)(image=picture)["image"]
    got = recipe_pixels(picture, recipe["image"])
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-5)


def test_preprocess_json_is_the_models_preprocessing_and_scale(exported) -> None:
    model, out = exported
    recipe = json.loads((out / "preprocess.json").read_text())
    check_recipe(model, recipe)
    assert recipe["embed_dim"] == model.config.head.embed_dim
    assert recipe["scale"] == pytest.approx(model.scale.item())
    assert recipe["text"]["max_length"] == model.max_length


def test_refuses_a_non_empty_out_even_with_overwrite(exported, tmp_path: Path, capsys) -> None:
    _, out = exported
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    args = ["export", "--checkpoint", "unused", "--out", str(target)]
    assert main(args) == 1
    assert "not empty" in capsys.readouterr().err
    shutil.copytree(out, target, dirs_exist_ok=True)  # an earlier export next to the notes
    assert main([*args, "--overwrite"]) == 1
    assert "not an export" in capsys.readouterr().err
    assert (target / "notes.txt").read_text() == "keep me"


def test_a_missing_checkpoint_is_one_line_and_writes_nothing(tmp_path: Path, capsys) -> None:
    out = tmp_path / "onnx"
    assert main(["export", "--checkpoint", str(tmp_path / "nothing"), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("simpleclip export: error: No checkpoint") and "\n" not in err
    assert not out.exists()


def test_a_missing_extra_names_the_pip_command(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what an absent package looks like
    assert main(["export", "--checkpoint", "unused", "--out", str(tmp_path / "onnx")]) == 1
    assert 'pip install "simpleclip[onnx]"' in capsys.readouterr().err


def test_overwrite_replaces_an_earlier_export_and_restores_the_mode(
    exported, tmp_path: Path, monkeypatch
) -> None:
    """In Python: a training model comes back training, a frozen part still in eval mode.

    Tracing is replaced by a copy of the graphs exported above (it is what costs seconds);
    the swap, the tokenizer, the recipe and the check against PyTorch all run.
    """
    import simpleclip.export

    model, out = exported
    target = tmp_path / "onnx"
    shutil.copytree(out, target)
    (target / "image_encoder.onnx").write_bytes(b"stale")
    monkeypatch.setattr(
        simpleclip.export,
        "_export_graph",
        lambda tower, inputs, axes, path, opset: shutil.copy(out / path.name, path),
    )
    model.train()
    model.image_encoder.eval()  # e.g. a frozen tower inside a training model
    modes = [m.training for m in model.modules()]
    paths = export_onnx(model, target, overwrite=True)
    assert [m.training for m in model.modules()] == modes
    assert paths["image_encoder"].read_bytes() == (out / "image_encoder.onnx").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["onnx"]  # no temporaries left
    model.eval()


@pytest.mark.slow
def test_real_size_cnn_and_distilbert_export(tiny_tokenizer, tmp_path: Path) -> None:
    """efficientnet_lite0 (224 px, crop 0.875) and a 6-layer DistilBERT, random weights."""
    from transformers import DistilBertConfig

    from simpleclip.config import load_config

    config = load_config(
        "synthetic_tiny",
        ["image.name=efficientnet_lite0", "text.name=distilbert-base-uncased", "text.pooling=cls"],
    )
    hf_config = DistilBertConfig(vocab_size=len(tiny_tokenizer))
    model = build_model(config, tokenizer=tiny_tokenizer, hf_config=hf_config, pretrained=False)
    paths = export_onnx(model.eval(), tmp_path / "onnx")  # checks against PyTorch itself
    images = torch.randn(5, 3, 224, 224)
    (got,) = session(paths["image_encoder"]).run(None, {"images": images.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(
            torch.from_numpy(got), model.encode_image(images), atol=1e-4, rtol=0
        )
    check_recipe(model, json.loads(paths["preprocess"].read_text()))
