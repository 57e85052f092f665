"""``simpleclip push``: share a checkpoint on the Hugging Face Hub, with a model card.

A thin wrapper over ``simpleclip.hub.push_checkpoint``: the checkpoint's files, its
``metrics_*.json`` (from ``simpleclip eval``) and a generated ``README.md`` go to one repo,
which anyone can then load with ``CLIPModel.from_pretrained("user/name")``.

Example:
    hf auth login   # once, with a token that can write
    simpleclip eval --checkpoint runs/demo/model --data data/synthetic
    simpleclip push --checkpoint runs/demo/model --repo your-name/simpleclip-demo
"""

from __future__ import annotations

import argparse
from typing import Any

from simpleclip.cli.options import add_checkpoint


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the ``push`` command to ``commands`` (what ``add_subparsers`` returned)."""
    push = commands.add_parser(
        "push", help="share a checkpoint on the Hugging Face Hub, with a model card (online)"
    )
    add_checkpoint(push)
    push.add_argument(
        "--repo", required=True, metavar="USER/NAME", help="Hub repo, created if missing"
    )
    push.add_argument(
        "--private", action="store_true", help="create the repo private (an existing one keeps its)"
    )
    push.add_argument(
        "--token",
        default=None,
        help="a write token (default: HF_TOKEN, or the one `hf auth login` saved)",
    )
    push.set_defaults(run=run)
    return push


def run(args: argparse.Namespace) -> int:
    """Upload the checkpoint and say how to load it back."""
    from simpleclip.hub import push_checkpoint

    url = push_checkpoint(args.checkpoint, args.repo, private=args.private, token=args.token)
    print(f"Pushed {args.checkpoint} to {url}")
    print(f'Load it with: CLIPModel.from_pretrained("{args.repo}")')
    return 0
