"""Zero-shot accuracy on the synthetic shapes: which shape, which colour, which colour-shape pair.

The questions are asked of single-shape pictures, whose answer is unambiguous (``scenes.csv``
says what each picture shows). The pair held out of training (purple triangle) is asked twice:
on the pictures of it in a split (a handful) and on freshly drawn ones (same renderer, new
seed, as many as wanted), next to fresh pictures of the pairs the model did see. The template
ablation compares the bare class name, one template and the ensembles of ``simpleclip.zeroshot``.
Re-run it with ``python benchmarks/zeroshot_synthetic.py``; taught in
``notebooks/08_zero_shot_and_search.ipynb``; CLIP paper, Section 3.1.4 and Table 1.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from simpleclip.data import find_images_dir
from simpleclip.data.synthetic import (
    COLORS,
    HELD_OUT,
    POSITIONS,
    SHAPES,
    SIZES,
    SPEC_FILE,
    Shape,
    draw_scene,
)
from simpleclip.zeroshot.classifier import TEMPLATE_SETS, Picture, build_classifier, encode_pictures

PAIRS = [f"{color} {kind}" for color in COLORS for kind in SHAPES]  # the 30 colour-shape names
HELD_OUT_NAME = " ".join(HELD_OUT)  # "purple triangle"


@dataclass
class ZeroShotTask:
    """One question asked of many pictures."""

    name: str
    classes: list[str]  # the candidate answers
    pictures: list[Picture]  # files or PIL images
    labels: list[str]  # the right answer for each picture, one of ``classes``


def synthetic_tasks(root: str | Path, split: str = "test", fresh: int = 200) -> list[ZeroShotTask]:
    """The zero-shot questions on a synthetic set's single-shape pictures of one split.

    Args:
        root: a folder written by ``make_synthetic`` (it has ``scenes.csv``).
        split: which pictures to ask about: ``train``, ``dev`` or ``test``.
        fresh: how many new pictures to draw of the held-out pair, and of the seen pairs
            (0: none).

    Returns:
        Tasks "shape" (5-way), "colour" (6-way), "colour + shape" (30-way), the held-out pair
        in the split (30-way), and, when ``fresh``, the held-out pair and the seen pairs on
        freshly drawn pictures (30-way each).
    """
    root = Path(root)
    scenes = pd.read_csv(root / "scenes.csv")
    single = scenes[(scenes["split"] == split) & (scenes["n_shapes"] == 1)]
    files = [find_images_dir(root) / name for name in single["image"]]
    pairs = (single["color1"] + " " + single["kind1"]).tolist()
    held = [i for i, pair in enumerate(pairs) if pair == HELD_OUT_NAME]
    held_files, held_labels = [files[i] for i in held], [pairs[i] for i in held]
    tasks = [
        ZeroShotTask("shape", list(SHAPES), files, single["kind1"].tolist()),
        ZeroShotTask("colour", list(COLORS), files, single["color1"].tolist()),
        ZeroShotTask("colour + shape", PAIRS, files, pairs),
        ZeroShotTask(f"{HELD_OUT_NAME}, {split} split", PAIRS, held_files, held_labels),
    ]
    if fresh:
        size = json.loads((root / SPEC_FILE).read_text())["image_size"]
        seen = [p for p in PAIRS if p != HELD_OUT_NAME]
        for name, choices, seed in [(HELD_OUT_NAME, [HELD_OUT_NAME], 1), ("seen pairs", seen, 2)]:
            pictures, labels = draw_pairs(choices, fresh, size, seed)
            tasks.append(ZeroShotTask(f"{name}, fresh pictures", PAIRS, pictures, labels))
    return tasks


def draw_pairs(
    pairs: Sequence[str], n: int, image_size: int = 64, seed: int = 1
) -> tuple[list[Picture], list[str]]:
    """Draw ``n`` new single-shape pictures of the given colour-shape pairs, any size and place."""
    rng = np.random.default_rng([seed, 2**20])  # far from the seeds the dataset pictures used
    pictures, labels = [], []
    for _ in range(n):
        pair = str(rng.choice(list(pairs)))
        color, kind = pair.split(" ")
        shape = Shape(kind, color, str(rng.choice(SIZES)), str(rng.choice(POSITIONS)))
        pictures.append(draw_scene([shape], image_size, rng))
        labels.append(pair)
    return pictures, labels


@torch.no_grad()
def task_accuracies(
    model: torch.nn.Module, task: ZeroShotTask, template_sets: Mapping[str, Sequence[str]]
) -> dict[str, float]:
    """Top-1 accuracy of one task for each template set (the pictures are encoded once)."""
    if not task.pictures:
        return {name: float("nan") for name in template_sets}
    image_embeds = encode_pictures(model, task.pictures)  # (N, E)
    truth = torch.tensor([task.classes.index(label) for label in task.labels])
    accuracies = {}
    for name, templates in template_sets.items():
        classifier = build_classifier(model, task.classes, templates)
        guess = classifier.probabilities(image_embeds).argmax(dim=-1)
        accuracies[name] = (guess == truth).float().mean().item()
    return accuracies


def template_ablation(
    model: torch.nn.Module,
    tasks: Sequence[ZeroShotTask],
    template_sets: Mapping[str, Sequence[str]] = TEMPLATE_SETS,
) -> pd.DataFrame:
    """Zero-shot accuracy of every task with every template set.

    Returns:
        One row per task: ``n`` pictures, ``chance`` (1 / classes), then one accuracy column per
        template set.
    """
    rows = []
    for task in tasks:
        row = {"task": task.name, "n": len(task.pictures), "chance": 1 / len(task.classes)}
        rows.append(row | task_accuracies(model, task, template_sets))
    return pd.DataFrame(rows).set_index("task")


def format_table(table: pd.DataFrame) -> str:
    """The ablation as a Markdown table, accuracies with two decimals."""
    header = ["task", *table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for task, row in table.iterrows():
        cells = [f"{int(v)}" if col == "n" else f"{v:.2f}" for col, v in row.items()]
        lines.append("| " + " | ".join([str(task), *cells]) + " |")
    return "\n".join(lines)
