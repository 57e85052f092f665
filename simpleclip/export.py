"""Export a trained model to ONNX: two graphs that embed pictures and captions without PyTorch.

``export_onnx`` writes ``image_encoder.onnx`` (``encode_image``) and ``text_encoder.onnx``
(``encode_text``), each ending in the L2-normalised embedding, with a dynamic batch size (and a
dynamic caption length), plus the tokenizer and ``preprocess.json``: the pixel recipe of
``simpleclip.data.transforms`` written out, so onnxruntime, a browser or a phone can reproduce
the inputs the model was trained on. Every export is checked before it is kept: ``onnx.checker``
on both files, then onnxruntime against PyTorch on a batch of another size than the traced one.
Graphs come from ``torch.onnx.export(dynamo=True)`` (``torch.export``), PyTorch's maintained
exporter; it handles timm CNNs and ViTs as well as Hugging Face BERT-like encoders.
onnx, onnxruntime and onnxscript are an optional extra: ``pip install "simpleclip[onnx]"``.
Command line: ``simpleclip export`` (``simpleclip.cli.export``).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from simpleclip.checkpoint import atomic_directory
from simpleclip.inference import eval_mode, model_device
from simpleclip.model import CLIPModel

IMAGE_ONNX = "image_encoder.onnx"  # images -> image_embeds
TEXT_ONNX = "text_encoder.onnx"  # input_ids, attention_mask -> text_embeds
PREPROCESS = "preprocess.json"  # pixel recipe, tokenizer settings, similarity scale
TOKENIZER = "tokenizer"  # Hugging Face tokenizer folder (tokenizer.json works in any language)
EXPORT_FILES = (IMAGE_ONNX, TEXT_ONNX, PREPROCESS, TOKENIZER)
OPSET = 18  # the dynamo exporter's own opset; onnxruntime 1.16+ runs it
INSTALL_HINT = 'pip install "simpleclip[onnx]"  (or: pip install onnx onnxruntime onnxscript)'
# Traced with 2 of different lengths, so the padding path is in the graph; checked with 3.
SAMPLE_CAPTIONS = ("a photo", "a dog runs across the green grass", "two people on a bench")


class ImageTower(nn.Module):
    """``model.encode_image`` as a module of its own: what the exporter traces.

    Shapes: (B, 3, S, S) -> (B, E), unit length.
    """

    def __init__(self, model: CLIPModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(images, normalize=True)


class TextTower(nn.Module):
    """``model.encode_text`` as a module of its own: what the exporter traces.

    Shapes: (B, L), (B, L) -> (B, E), unit length.
    """

    def __init__(self, model: CLIPModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(input_ids, attention_mask, normalize=True)


def require_onnx() -> tuple[Any, Any]:
    """Import the optional ONNX packages, or say in one line how to install them.

    Returns:
        The ``onnx`` and ``onnxruntime`` modules (``onnxscript`` is only needed by the exporter).

    Raises:
        RuntimeError: one of them is missing; the message names the pip command.
    """
    try:
        import onnx
        import onnxruntime
        import onnxscript  # noqa: F401  (torch.onnx.export(dynamo=True) needs it)
    except ImportError as err:
        raise RuntimeError(
            f"ONNX export needs the optional packages onnx, onnxruntime and onnxscript "
            f"({err.name or err} is missing): {INSTALL_HINT}"
        ) from err
    return onnx, onnxruntime


def check_out_dir(out_dir: str | Path, overwrite: bool = False) -> Path:
    """Refuse a target folder whose files an export would destroy.

    A missing or empty folder is fine. ``overwrite`` replaces an earlier export, and only that:
    a folder that also holds other files (a user's notes, a checkpoint) is refused either way.

    Raises:
        FileExistsError: ``out_dir`` is a file, or holds files the export would replace.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} is a file, not a folder; choose another --out.")
    found = sorted(p.name for p in out_dir.iterdir()) if out_dir.is_dir() else []
    foreign = [name for name in found if name not in EXPORT_FILES]
    if found and not overwrite:
        raise FileExistsError(
            f"{out_dir} is not empty ({', '.join(found[:5])}); not touched. Replace an earlier "
            "export with --overwrite (export_onnx(..., overwrite=True)) or choose another --out."
        )
    if foreign:
        raise FileExistsError(
            f"{out_dir} holds files that are not an export ({', '.join(foreign[:5])}); "
            "--overwrite only replaces an earlier export. Choose another --out."
        )
    return out_dir


def export_onnx(
    model: CLIPModel,
    out_dir: str | Path,
    opset: int = OPSET,
    overwrite: bool = False,
    atol: float = 1e-4,
) -> dict[str, Path]:
    """Write both encoders as ONNX graphs, the tokenizer and ``preprocess.json``, checked.

    The folder is written under a temporary name and swapped in only once the check passed, so
    a failed export never replaces a good one. The model is exported on the CPU in eval mode and
    handed back on its device and in the mode it came in.

    Args:
        model: a trained model, e.g. ``CLIPModel.load("runs/demo/model")``.
        out_dir: target folder; missing or empty, or an earlier export with ``overwrite``.
        opset: ONNX opset version of both graphs.
        overwrite: replace an earlier export in ``out_dir`` (never other files).
        atol: largest accepted gap between onnxruntime's and PyTorch's embeddings.

    Returns:
        ``{"image_encoder": ..., "text_encoder": ..., "tokenizer": ..., "preprocess": ...}``.

    Raises:
        RuntimeError: onnx/onnxruntime/onnxscript missing, or the graphs disagree with PyTorch.
        FileExistsError: ``out_dir`` holds files the export would destroy.

    Example:
        >>> model = CLIPModel.load("runs/demo/model")  # doctest: +SKIP
        >>> paths = export_onnx(model, "runs/demo/onnx")  # doctest: +SKIP
        >>> import onnxruntime  # doctest: +SKIP
        >>> session = onnxruntime.InferenceSession(paths["image_encoder"])  # doctest: +SKIP
        >>> image_embeds = session.run(None, {"images": pixels})[0]  # (B, E)  # doctest: +SKIP
    """
    require_onnx()
    out_dir = check_out_dir(out_dir, overwrite)
    device = model_device(model)
    try:
        with eval_mode(model.cpu()), atomic_directory(out_dir.resolve()) as tmp:
            images, texts = sample_inputs(model, batch_size=2)
            image_axes = {"images": {0: "batch"}}
            text_axes = {name: {0: "batch", 1: "sequence"} for name in texts}
            _export_graph(ImageTower(model), (images,), image_axes, tmp / IMAGE_ONNX, opset)
            _export_graph(
                TextTower(model), tuple(texts.values()), text_axes, tmp / TEXT_ONNX, opset
            )
            model.tokenizer.save_pretrained(tmp / TOKENIZER)
            preprocess = json.dumps(preprocess_config(model), indent=2)
            (tmp / PREPROCESS).write_text(preprocess + "\n")
            verify_onnx(model, tmp, atol)
    finally:
        model.to(device)
    names = ("image_encoder", "text_encoder", "preprocess", "tokenizer")
    return {name: out_dir / file for name, file in zip(names, EXPORT_FILES, strict=True)}


def _export_graph(
    tower: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    axes: dict[str, dict[int, str]],
    path: Path,
    opset: int,
) -> None:
    """Trace one tower into one self-contained ``.onnx`` file (weights inside, under 2 GB)."""
    with warnings.catch_warnings():
        # The exporter notes that input_ids and attention_mask share their axes: intended.
        warnings.filterwarnings("ignore", message=".*axis name.*will not be used")
        program = torch.onnx.export(
            tower.eval(),
            inputs,
            input_names=list(axes),
            output_names=["image_embeds" if isinstance(tower, ImageTower) else "text_embeds"],
            opset_version=opset,
            dynamo=True,
            dynamic_shapes=axes,
            verbose=False,
        )
    program.save(path, external_data=False)


def sample_inputs(
    model: CLIPModel, batch_size: int, seed: int = 0
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """A batch of random pictures and of captions of different lengths, as the model takes them.

    Shapes: -> images (B, 3, S, S); input_ids and attention_mask (B, L), int64.
    """
    size = model.preprocessing.input_size
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch_size, 3, size, size, generator=generator)
    captions = [SAMPLE_CAPTIONS[i % len(SAMPLE_CAPTIONS)] for i in range(batch_size)]
    return images, model.tokenize(captions)


def verify_onnx(model: CLIPModel, directory: str | Path, atol: float = 1e-4) -> dict[str, float]:
    """Check both graphs, then compare onnxruntime with PyTorch on a batch of 3 (not 2: the
    traced size), so a graph that froze the batch size or drifted fails here, not in production.

    Returns:
        The largest absolute difference per graph: ``{"image_encoder": ..., "text_encoder": ...}``.

    Raises:
        RuntimeError: a difference exceeds ``atol``.
    """
    onnx, onnxruntime = require_onnx()
    directory = Path(directory)
    images, texts = sample_inputs(model, batch_size=3, seed=1)
    device = model_device(model)
    with torch.no_grad(), eval_mode(model):
        image_embeds = model.encode_image(images.to(device))
        text_embeds = model.encode_text(*(t.to(device) for t in texts.values()))
    expected = {
        IMAGE_ONNX: (image_embeds, {"images": images}),
        TEXT_ONNX: (text_embeds, texts),
    }
    gaps = {}
    for file, (reference, feeds) in expected.items():
        onnx.checker.check_model(str(directory / file), full_check=True)
        session = onnxruntime.InferenceSession(
            str(directory / file), providers=["CPUExecutionProvider"]
        )
        (got,) = session.run(None, {k: v.numpy() for k, v in feeds.items()})
        gap = float(np.abs(got - reference.cpu().numpy()).max())
        if not gap <= atol:  # also catches NaN
            raise RuntimeError(
                f"{file} differs from PyTorch by {gap:.2e} (> {atol:g}) on a batch of 3: the "
                "export is wrong, nothing was written. Please report it with the model's config."
            )
        gaps[file.removesuffix(".onnx")] = gap
    return gaps


def preprocess_config(model: CLIPModel) -> dict[str, Any]:
    """Everything needed to feed the graphs and score their output, as plain JSON values.

    The image recipe is ``resize_and_crop`` then ``Normalize`` (``simpleclip.data.transforms``):
    short side to ``resize_short_side`` (longer side truncated, PIL filter ``interpolation``,
    which antialiases when shrinking), centre crop ``input_size``, RGB / 255, ``(x - mean) / std``,
    channels first.
    """
    pre = model.preprocessing
    with torch.no_grad(), eval_mode(model):  # the head decides the width ("none": the encoder's)
        pixels = torch.zeros(1, 3, pre.input_size, pre.input_size, device=model_device(model))
        embed_dim = model.encode_image(pixels).shape[-1]
    image = {**asdict(pre), "mean": list(pre.mean), "std": list(pre.std)}
    image["resize_short_side"] = pre.resize_short_side
    image["crop_size"] = pre.input_size
    image["steps"] = [  # what resize_and_crop and Normalize do, in words any language can follow
        "decode as RGB uint8",
        "resize the short side to resize_short_side, keeping the aspect ratio (long side "
        "truncated to an int, as torchvision's Resize) with PIL's `interpolation` filter",
        "centre crop crop_size x crop_size (offsets round((H - S) / 2), torchvision's CenterCrop)",
        "float32, divide by 255, subtract mean, divide by std, channels first: (3, S, S)",
    ]
    image["input"] = {"name": "images", "shape": ["batch", 3, pre.input_size, pre.input_size]}
    image["input"]["dtype"] = "float32"
    text = {
        "tokenizer": TOKENIZER,
        "max_length": model.max_length,  # truncate to this; longer breaks position embeddings
        "padding": "longest",
        "inputs": {"input_ids": ["batch", "sequence"], "attention_mask": ["batch", "sequence"]},
        "dtype": "int64",
    }
    bias = model.logit_bias
    return {
        "format": "simpleclip-onnx/1",
        "image": image,
        "text": text,
        "outputs": {"image_embeds": ["batch", "embed_dim"], "text_embeds": ["batch", "embed_dim"]},
        "embed_dim": embed_dim,
        "normalized": True,  # both outputs are unit vectors: a dot product is the cosine
        "logit_scale": float(model.logit_scale.detach()),  # log(1 / temperature)
        "scale": float(
            model.scale.detach()
        ),  # logits = scale * image_embeds @ text_embeds.T (+ bias)
        "logit_bias": None if bias is None else float(bias.detach()),  # SigLIP only
    }
