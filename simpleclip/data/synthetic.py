"""A built-in synthetic dataset of coloured shapes, in exactly the Flickr8k layout.

Each picture holds one or two shapes (5 kinds, 6 colours, 2 sizes, several positions) on a
lightly textured background, with 5 differently worded, truthful captions. It is small enough
for a tiny CLIP to learn on a CPU in a minute or two, yet rich enough to show retrieval and
zero-shot *composition*: one colour-shape pair (purple triangle) never appears in training.

Output: ``Images/*.jpg``, ``captions.txt`` (Kaggle CSV), the three official-style split files,
``scenes.csv`` (what each image shows, for probes and zero-shot labels) and ``synthetic.json``
(the parameters). Same seed, same bytes. Taught in ``notebooks/01_flickr8k_dataset.ipynb``.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from simpleclip.data.splits import SPLIT_FILES

COLORS = {
    "red": (215, 40, 40),
    "green": (40, 165, 60),
    "blue": (40, 80, 215),
    "yellow": (235, 205, 35),
    "purple": (135, 55, 175),
    "orange": (245, 135, 25),
}
SHAPES = ["circle", "square", "triangle", "diamond", "star"]
SIZES = ["small", "big"]
POSITIONS = ["left", "right", "top", "bottom", "center"]
HELD_OUT = ("purple", "triangle")  # never in the train split: zero-shot composition probe
FORMAT_VERSION = 1
SPEC_FILE = "synthetic.json"  # the set's recipe; its presence marks a folder as this set

SHAPE_WORDS = {
    "circle": ["circle", "disc", "round shape"],
    "square": ["square", "block"],
    "triangle": ["triangle"],
    "diamond": ["diamond", "rhombus"],
    "star": ["star"],
}
SIZE_WORDS = {"small": ["small", "little", "tiny"], "big": ["big", "large"]}
POSITION_WORDS = {
    "left": ["on the left", "at the left side", "in the left half"],
    "right": ["on the right", "at the right side", "in the right half"],
    "top": ["at the top", "near the top", "in the upper part"],
    "bottom": ["at the bottom", "near the bottom", "in the lower part"],
    "center": ["in the middle", "in the centre", "in the center"],
}


@dataclass(frozen=True)
class Shape:
    kind: str  # one of SHAPES
    color: str  # one of COLORS
    size: str  # small | big
    position: str  # one of POSITIONS


@dataclass(frozen=True)
class SyntheticSpec:
    n_images: int = 2500
    image_size: int = 64
    seed: int = 0
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    version: int = FORMAT_VERSION


def make_synthetic(
    out: str | Path, n_images: int = 2500, image_size: int = 64, seed: int = 0
) -> Path:
    """Write the synthetic set to ``out`` (or reuse it if an identical one is already there).

    Args:
        out: target folder; must not exist, or hold a synthetic set made with the same arguments.
        n_images: number of pictures (split 80/10/10 into train/dev/test by image).
        image_size: side of the square pictures in pixels.
        seed: same seed, same bytes.

    Returns:
        ``out``, ready for ``read_captions(out / "captions.txt", out / "Images")``.

    Example:
        >>> root = make_synthetic("data/synthetic", n_images=200)  # doctest: +SKIP
    """
    out = Path(out)
    spec = SyntheticSpec(n_images=n_images, image_size=image_size, seed=seed)
    if n_images < 10 or image_size < 32:
        raise ValueError("make_synthetic needs at least 10 images of at least 32 px.")
    if out.exists():
        _check_reusable(out, spec)
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    _write_set(tmp, spec)
    try:
        tmp.rename(out)  # atomic: a reader never sees a half-written set
    except OSError:  # another process finished the same set first
        shutil.rmtree(tmp, ignore_errors=True)
        _check_reusable(out, spec)
    return out


def _check_reusable(out: Path, spec: SyntheticSpec) -> None:
    meta = out / SPEC_FILE
    if not meta.is_file():
        raise FileExistsError(
            f"{out} exists and is not a synthetic set; choose another --out folder. "
            "Nothing was overwritten."
        )
    found = json.loads(meta.read_text())
    wanted = json.loads(json.dumps(asdict(spec)))
    if found != wanted:
        raise FileExistsError(
            f"{out} holds a synthetic set made with {found}, not {wanted}. Delete the folder "
            "or choose another --out. Nothing was overwritten."
        )


def _write_set(root: Path, spec: SyntheticSpec) -> None:
    (root / "Images").mkdir(parents=True)
    splits = _assign_splits(spec)
    rows, scenes = [], []
    for index, split in enumerate(splits):
        rng = np.random.default_rng([spec.seed, index])
        scene = sample_scene(rng, allow_held_out=split != "train")
        name = f"synth_{index:05d}.jpg"
        draw_scene(scene, spec.image_size, rng).save(root / "Images" / name, quality=92)
        rows += [(name, caption) for caption in describe_scene(scene, rng)]
        scenes.append((name, split, scene))
    _write_captions(root / "captions.txt", rows)
    _write_scenes(root / "scenes.csv", scenes)
    for split, filename in SPLIT_FILES.items():
        names = [name for name, s, _ in scenes if s == split]
        (root / filename).write_text("".join(f"{n}\n" for n in names))
    (root / SPEC_FILE).write_text(json.dumps(asdict(spec), indent=2) + "\n")


def _assign_splits(spec: SyntheticSpec) -> list[str]:
    n_train = round(spec.fractions[0] * spec.n_images)
    n_dev = round(spec.fractions[1] * spec.n_images)
    n_test = spec.n_images - n_train - n_dev
    labels = np.array(["train"] * n_train + ["dev"] * n_dev + ["test"] * n_test)
    return list(np.random.default_rng(spec.seed).permutation(labels))


def sample_scene(rng: np.random.Generator, allow_held_out: bool = True) -> list[Shape]:
    """One shape at one of five places, or two shapes side by side or one above the other."""

    def pick(position: str) -> Shape:
        while True:
            kind, color = rng.choice(SHAPES), rng.choice(list(COLORS))
            if allow_held_out or (color, kind) != HELD_OUT:
                return Shape(str(kind), str(color), str(rng.choice(SIZES)), position)

    if rng.random() < 0.5:
        return [pick(str(rng.choice(POSITIONS)))]
    first, second = ("left", "right") if rng.random() < 0.5 else ("top", "bottom")
    return [pick(first), pick(second)]


def draw_scene(scene: list[Shape], size: int, rng: np.random.Generator) -> Image.Image:
    """Render a scene on a pale, noisy, gently shaded background."""
    base = rng.uniform(200, 240, size=3)
    shade = np.linspace(-12, 12, size)[:, None, None] * rng.choice([-1, 1])
    noise = rng.normal(0, 6, size=(size, size, 3))
    pixels = np.clip(base + shade + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    for shape in scene:
        _draw_shape(draw, shape, _place(shape, len(scene), size, rng), rng)
    return image


def _place(
    shape: Shape, n_shapes: int, size: int, rng: np.random.Generator
) -> tuple[float, float, float]:
    """Centre (x, y) and radius in pixels, kept inside the picture."""
    low, high = (0.10, 0.13) if shape.size == "small" else (0.18, 0.22)
    radius = rng.uniform(low, high) * size
    offset = 0.27 if n_shapes == 2 else 0.25
    anchors = {
        "left": (offset, 0.5),
        "right": (1 - offset, 0.5),
        "top": (0.5, offset),
        "bottom": (0.5, 1 - offset),
        "center": (0.5, 0.5),
    }
    ax, ay = anchors[shape.position]
    free = 0.15 if n_shapes == 2 else 0.05  # jitter along the axis the words don't pin down
    jx = free if shape.position in ("top", "bottom") else 0.04
    jy = free if shape.position in ("left", "right") else 0.04
    x = (ax + rng.uniform(-jx, jx)) * size
    y = (ay + rng.uniform(-jy, jy)) * size
    return (
        float(np.clip(x, radius + 1, size - radius - 1)),
        float(np.clip(y, radius + 1, size - radius - 1)),
        radius,
    )


def _draw_shape(
    draw: ImageDraw.ImageDraw,
    shape: Shape,
    place: tuple[float, float, float],
    rng: np.random.Generator,
) -> None:
    x, y, r = place
    color = tuple(int(np.clip(c + rng.integers(-15, 16), 0, 255)) for c in COLORS[shape.color])
    if shape.kind == "circle":
        draw.ellipse([x - r, y - r, x + r, y + r], fill=color)
    elif shape.kind == "square":
        s = 0.85 * r
        draw.rectangle([x - s, y - s, x + s, y + s], fill=color)
    elif shape.kind == "triangle":
        draw.polygon([(x, y - r), (x + 0.95 * r, y + 0.8 * r), (x - 0.95 * r, y + 0.8 * r)], color)
    elif shape.kind == "diamond":
        draw.polygon([(x, y - r), (x + 0.75 * r, y), (x, y + r), (x - 0.75 * r, y)], color)
    else:  # star: ten vertices alternating between the outer and the inner radius
        angles = -np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
        points = zip(x + radii * np.cos(angles), y + radii * np.sin(angles), strict=True)
        draw.polygon(list(points), color)


def describe_scene(scene: list[Shape], rng: np.random.Generator) -> list[str]:
    """Five truthful captions, each with its own sentence structure and word choices."""

    def noun(s: Shape) -> str:
        words = SHAPE_WORDS[s.kind] + (["dot"] if s.kind == "circle" and s.size == "small" else [])
        return str(rng.choice(words))

    def size(s: Shape) -> str:
        return str(rng.choice(SIZE_WORDS[s.size]))

    def where(s: Shape) -> str:
        return str(rng.choice(POSITION_WORDS[s.position]))

    if len(scene) == 1:
        (a,) = scene
        return [
            _article(f"{size(a)} {a.color} {noun(a)} {where(a)}"),
            _article(f"{a.color} {noun(a)} {where(a)} of the picture"),
            f"there is one {size(a)} {noun(a)} and it is {a.color}",
            f"{where(a)}, " + _article(f"{size(a)} {a.color} {noun(a)}"),
            f"a single {a.color} {noun(a)} on a plain background",
        ]
    a, b = scene
    horizontal = a.position == "left"
    first, second = (a, b) if rng.random() < 0.5 else (b, a)
    return [
        _article(f"{size(a)} {a.color} {noun(a)} {where(a)} and ")
        + _article(f"{size(b)} {b.color} {noun(b)} {where(b)}"),
        _article(f"{a.color} {noun(a)} ")
        + ("next to " if horizontal else "above ")
        + _article(f"{size(b)} {b.color} {noun(b)}"),
        "two shapes: "
        + _article(f"{first.color} {noun(first)} and ")
        + _article(f"{second.color} {noun(second)}"),
        _article(f"{b.color} {noun(b)} ")
        + ("to the right of " if horizontal else "below ")
        + _article(f"{a.color} {noun(a)}"),
        _article(f"{size(b)} {b.color} {noun(b)} with ")
        + _article(f"{size(a)} {a.color} {noun(a)} ")
        + ("to its left" if horizontal else "above it"),
    ]


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _write_captions(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "caption"])
        writer.writerows(rows)


def _write_scenes(path: Path, scenes: list[tuple[str, str, list[Shape]]]) -> None:
    fields = ["kind", "color", "size", "position"]
    header = ["image", "split", "n_shapes"] + [f"{f}{i}" for i in (1, 2) for f in fields]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for name, split, scene in scenes:
            cells = [getattr(s, f) for s in scene for f in fields]
            writer.writerow([name, split, len(scene), *cells, *[""] * (8 - len(cells))])


def is_synthetic(folder: str | Path) -> bool:
    """True for the shapes set, given its folder or its ``Images/`` (``SPEC_FILE`` is there)."""
    folder = Path(folder)
    return (folder / SPEC_FILE).is_file() or (folder.parent / SPEC_FILE).is_file()
