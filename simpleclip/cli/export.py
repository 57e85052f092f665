"""``simpleclip export``: turn a checkpoint into files that run without simpleclip or PyTorch.

A thin wrapper over ``simpleclip.export.export_onnx``: check the target folder and the optional
packages first (a mistake costs no model load), load the checkpoint, export, print what was
written. onnx, onnxruntime and onnxscript are an optional extra: ``pip install
"simpleclip[onnx]"``.

Example:
    simpleclip export --checkpoint runs/demo/model --format onnx --out runs/demo/onnx
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from simpleclip.cli.options import add_checkpoint


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the ``export`` command to ``commands`` (what ``add_subparsers`` returned)."""
    parser = commands.add_parser(
        "export", help="export a checkpoint to ONNX (image + text encoders, tokenizer, recipe)"
    )
    add_checkpoint(parser)
    parser.add_argument(
        "--format", choices=["onnx"], default="onnx", help="target format (default: onnx)"
    )
    parser.add_argument("--out", type=Path, required=True, help="target folder, new or empty")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset version (default: 18)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier export in OUT (other files there are never removed)",
    )
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Export ``args.checkpoint`` to ``args.out``; errors are raised for ``main`` to print."""
    from simpleclip.export import check_out_dir, export_onnx, require_onnx
    from simpleclip.model import CLIPModel

    require_onnx()
    check_out_dir(args.out, args.overwrite)
    model = CLIPModel.from_pretrained(args.checkpoint)
    start = time.perf_counter()
    paths = export_onnx(model, args.out, opset=args.opset, overwrite=args.overwrite)
    seconds = time.perf_counter() - start
    for path in paths.values():
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        size = sum(p.stat().st_size for p in files)
        print(
            f"  {path}  ({size / 1e6:.1f} MB)"
            if size >= 1e5
            else f"  {path}  ({size / 1e3:.0f} kB)"
        )
    print(
        f"Exported {args.checkpoint} to {args.out} in {seconds:.0f} s; checked: onnx.checker "
        "passed and onnxruntime matches PyTorch (batch size 3, not the traced 2)."
    )
    return 0
