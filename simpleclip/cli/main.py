"""The ``simpleclip`` command line (also ``python -m simpleclip``).

Each sub-command is a thin wrapper over a package function, so everything it does can also be
done from Python or a notebook. Heavy imports happen inside the commands, keeping ``--help`` fast.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="simpleclip", description="Learn CLIP by building it: data, training, evaluation."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    synth = commands.add_parser(
        "make-synthetic", help="write the built-in synthetic shapes set (Flickr8k layout)"
    )
    synth.add_argument("--out", type=Path, default=Path("data/synthetic"), help="target folder")
    synth.add_argument("--images", type=int, default=2500, help="number of pictures")
    synth.add_argument("--size", type=int, default=64, help="picture side in pixels")
    synth.add_argument("--seed", type=int, default=0, help="same seed, same bytes")
    synth.set_defaults(run=run_make_synthetic)

    download = commands.add_parser("download", help="download a real dataset")
    download.add_argument("dataset", choices=["flickr8k"], help="which dataset")
    download.add_argument("--root", type=Path, default=Path("data/flickr8k"), help="target folder")
    download.set_defaults(run=run_download)

    demo = commands.add_parser("demo", help="train a tiny CLIP on synthetic shapes (CPU, ~1 min)")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder")
    demo.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override, e.g. train.epochs=5",
    )
    demo.set_defaults(run=run_demo)

    train = commands.add_parser("train", help="train a CLIP model from a config")
    train.add_argument(
        "--config",
        default="synthetic_tiny",
        help="a YAML file, or a name in simpleclip/configs/ (default: synthetic_tiny)",
    )
    train.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override, e.g. --set train.epochs=3 (repeatable)",
    )
    train.add_argument(
        "--frozen",
        action="store_true",
        help="freeze both encoders: train only the heads and the temperature",
    )
    train.add_argument(
        "--cache-features",
        action="store_true",
        help="implies --frozen: encode the data once, then train only the heads",
    )
    train.add_argument(
        "--resume", action="store_true", help="continue from OUT_DIR/last exactly where it stopped"
    )
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run already in OUT_DIR (without it, or --resume, it is refused)",
    )
    train.set_defaults(run=run_train)

    evaluate = commands.add_parser("eval", help="Recall@K of a checkpoint on a split")
    which = evaluate.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", type=Path, help="a saved model folder")
    which.add_argument(
        "--baseline",
        metavar="NAME",
        help="instead, pretrained CLIP zero-shot: a hub id such as "
        "openai/clip-vit-base-patch32 (online once) or a local folder",
    )
    evaluate.add_argument("--data", type=Path, required=True, help="dataset folder")
    evaluate.add_argument("--split", default="test", help="train, dev (val), test, or all")
    evaluate.add_argument(
        "--out",
        type=Path,
        default=None,
        help="metrics.json path (default: CHECKPOINT/metrics_SPLIT.json, "
        "or ./metrics_baseline_SPLIT.json)",
    )
    evaluate.set_defaults(run=run_eval)

    from simpleclip.cli import search as search_cli

    search = commands.add_parser("search", help="find pictures in a folder with a sentence")
    search_cli.add_arguments(search)
    search.set_defaults(run=search_cli.run)

    from simpleclip.cli.push import add_push_parser

    add_push_parser(commands)

    from simpleclip.cli.export import add_export_parser

    add_export_parser(commands)

    app = commands.add_parser(
        "app", help="a web app: search pictures with words, label a picture (127.0.0.1)"
    )
    app.add_argument(
        "--checkpoint",
        type=Path,
        action="append",
        help="model folder to start with and allow (repeatable; default: the first in --runs-dir)",
    )
    app.add_argument(
        "--images",
        type=Path,
        action="append",
        help="picture folder to start with and allow (repeatable; default: the first */Images)",
    )
    app.add_argument(
        "--runs-dir",
        "--runs",
        type=Path,
        default=Path("runs"),
        help="checkpoints offered and allowed in the app: every model folder under it",
    )
    app.add_argument(
        "--data-dir",
        "--data",
        type=Path,
        default=Path("data"),
        help="picture folders offered in the app (each DATA_DIR/*/Images); all under it allowed",
    )
    app.add_argument(
        "--host", default="127.0.0.1", help="address to listen on; 0.0.0.0 opens it to your network"
    )
    app.add_argument("--port", type=int, default=7860, help="port to listen on")
    app.add_argument(
        "--allow-any-path",
        action="store_true",
        help="let the page open any folder or checkpoint this process can read (see docs/app.md)",
    )
    app.add_argument(
        "--i-know-this-exposes-files",
        action="store_true",
        help="needed with --allow-any-path on a --host other than 127.0.0.1",
    )
    app.set_defaults(run=run_app)

    # Listed here; its options live next to the check and are parsed there (see main), so
    # that `simpleclip --help` does not import torch.
    commands.add_parser(
        "validate-clip", help="compare our CLIP with transformers' on real weights (online)"
    )
    return parser


def run_make_synthetic(args: argparse.Namespace) -> int:
    from simpleclip.data import make_synthetic
    from simpleclip.data.summary import describe_dataset

    existed = args.out.exists()
    start = time.perf_counter()
    root = make_synthetic(args.out, n_images=args.images, image_size=args.size, seed=args.seed)
    seconds = time.perf_counter() - start
    if existed:
        print(f"Reusing the synthetic set already in {root} (same parameters).")
    else:
        print(
            f"Wrote {args.images} images to {root} in {seconds:.1f} s "
            f"({args.images / seconds:.0f} images/s)."
        )
    print(describe_dataset(root))
    return 0


def run_download(args: argparse.Namespace) -> int:
    from simpleclip.data.download import download_flickr8k
    from simpleclip.data.summary import describe_dataset

    root = download_flickr8k(args.root)
    print(describe_dataset(root))
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from simpleclip.demo import run_demo as demo

    demo(args.out, args.overrides)
    return 0


def run_train(args: argparse.Namespace) -> int:
    from simpleclip.config import load_config
    from simpleclip.evaluate import format_recall_table
    from simpleclip.train import train

    frozen = ["image.trainable=false", "text.trainable=false"]
    frozen = frozen if args.frozen or args.cache_features else []
    frozen += ["train.cache_features=true"] if args.cache_features else []
    config = load_config(args.config, [*frozen, *args.overrides])
    result = train(config, resume=args.resume, overwrite=args.overwrite)
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 reports for everyone
        return 0
    if result.history and result.history[-1]["val"] is not None:
        print(format_recall_table(result.history[-1]["val"]))
    kept = [name for name in ("best", "last", "metrics.jsonl") if (result.out_dir / name).exists()]
    print(f"Done in {result.seconds:.0f} s: {result.out_dir}/{', '.join(kept)}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from simpleclip.allocator import keep_freed_memory
    from simpleclip.device import select_device
    from simpleclip.evaluate import eval_split, evaluate, format_recall_table, save_metrics

    if select_device("auto").type == "cpu":
        keep_freed_memory()  # as training does: each batch reuses the last one's memory
    if args.baseline:
        from simpleclip.evaluate.baseline import load_baseline

        model = load_baseline(args.baseline)
        out = args.out or Path(f"metrics_baseline_{args.split}.json")
    else:
        from simpleclip.model import CLIPModel

        model = CLIPModel.load(args.checkpoint)
        out = args.out or args.checkpoint / f"metrics_{args.split}.json"
    dataset = eval_split(model, args.data, args.split)
    model.to(select_device("auto"))  # encoding a split is the slow part: use the GPU if any
    start = time.perf_counter()
    metrics = evaluate(model, dataset)
    metrics["eval_seconds"] = round(time.perf_counter() - start, 2)
    if args.baseline:
        metrics["baseline"] = args.baseline
        print(f"Zero-shot baseline: {args.baseline} (pretrained CLIP, not trained on this data)")
    print(format_recall_table(metrics))
    print(f"Wrote {save_metrics(metrics, out)}")
    return 0


def run_app(args: argparse.Namespace) -> int:
    from simpleclip.app import ClipApp, check_exposure, exposure_line, launch

    exposed = args.i_know_this_exposes_files
    check_exposure(args.host, args.allow_any_path, exposed)
    app = ClipApp(
        args.runs_dir,
        args.data_dir,
        checkpoint=args.checkpoint,
        images=args.images,
        allow_any_path=args.allow_any_path,
    )
    print(exposure_line(args.host, args.port, app.access))
    print(f"Checkpoints offered: {len(app.checkpoints)}, picture folders: {len(app.folders)}.")
    launch(app, host=args.host, port=args.port, i_know_this_exposes_files=exposed)
    return 0


def run_validate_clip(argv: list[str]) -> int:
    from simpleclip.clip_arch import validate

    parser = argparse.ArgumentParser(
        prog="simpleclip validate-clip", description=validate.__doc__.splitlines()[0]
    )
    validate.add_arguments(parser)
    return validate.run(parser.parse_args(argv))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code. Expected errors print one clear line."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["validate-clip"]:
        return run_validate_clip(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading: not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (keeps Python's exit flush quiet)
        return 0
    except (FileNotFoundError, FileExistsError, ValueError, RuntimeError) as err:
        print(f"simpleclip {args.command}: error: {err}", file=sys.stderr)
        return 1
