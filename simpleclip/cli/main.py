"""The ``simpleclip`` command line (also ``python -m simpleclip``): register the commands, run one.

Each command is a module of this package with the same two functions: ``add_parser(commands)``
declares its options and ``run(args)`` does the work and returns the exit code. Each is a thin
wrapper over a package function, so everything it does can also be done from Python or a
notebook. Heavy imports happen inside ``run``, keeping ``--help`` fast (no torch, no Gradio).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from simpleclip.cli import (
    app,
    demo,
    download,
    export,
    make_synthetic,
    push,
    search,
    shards,
    train,
    validate_clip,
)
from simpleclip.cli import eval as evaluate  # `eval` would hide the builtin here

# In the order `simpleclip --help` lists them: data, training, evaluation, use, sharing.
COMMANDS = (
    make_synthetic,
    download,
    shards,
    demo,
    train,
    evaluate,
    search,
    push,
    export,
    app,
    validate_clip,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``simpleclip`` parser with every command; each sets ``args.run``."""
    parser = argparse.ArgumentParser(
        prog="simpleclip", description="Learn CLIP by building it: data, training, evaluation."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code. Expected errors print one clear line."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        return args.run(args)
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading: not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (keeps Python's exit flush quiet)
        return 0
    except (FileNotFoundError, FileExistsError, ValueError, RuntimeError) as err:
        print(f"simpleclip {args.command}: error: {err}", file=sys.stderr)
        return 1
