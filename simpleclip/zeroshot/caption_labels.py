"""Zero-shot classification measured on real photos, with labels read from their captions.

Flickr8k has no class labels, but its five captions per photo say what is in it. A photo's
true labels are the classes any of its captions mentions (``dog`` for "a brown dog runs",
``water`` for "... jumps into a lake"); a prediction is right when it names one of them. The
honest yardstick is the majority baseline: always answering the most common label (often "man"
or "dog") is already right for that label's share of the photos. Used by
``notebooks/08_zero_shot_and_search.ipynb``; CLIP paper, Section 3.1.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence

import pandas as pd

# Class name -> the caption words that count as mentioning it (whole words, any case).
FLICKR_LABELS: dict[str, tuple[str, ...]] = {
    "dog": ("dog", "dogs", "puppy", "puppies"),
    "child": ("child", "children", "kid", "kids", "toddler", "baby"),
    "man": ("man", "men"),
    "woman": ("woman", "women", "lady"),
    "bicycle": ("bicycle", "bicycles", "bike", "bikes", "biker", "bicyclist", "cyclist"),
    "water": ("water", "lake", "river", "pool", "ocean", "sea", "waves", "stream"),
    "snow": ("snow", "snowy"),
    "grass": ("grass", "grassy", "lawn"),
    "ball": ("ball", "balls"),
    "beach": ("beach", "sand", "sandy"),
}


def caption_labels(
    captions: pd.DataFrame, labels: Mapping[str, Sequence[str]] = FLICKR_LABELS
) -> dict[str, set[str]]:
    """The labels each photo's captions mention.

    Args:
        captions: one row per caption with ``image`` and ``caption`` columns (``load_split``).
        labels: class name -> words that mention it.

    Returns:
        Photo file name -> the set of class names (empty when no caption mentions any).
    """
    patterns = {
        name: re.compile(r"\b(" + "|".join(map(re.escape, words)) + r")\b", re.IGNORECASE)
        for name, words in labels.items()
    }
    found: dict[str, set[str]] = {}
    for image, caption in zip(captions["image"], captions["caption"], strict=True):
        mentioned = found.setdefault(image, set())
        mentioned.update(name for name, pattern in patterns.items() if pattern.search(caption))
    return found


def top1_accuracy(predicted: Sequence[str], truths: Sequence[set[str]]) -> float:
    """Share of photos whose predicted label is among their true labels."""
    if len(predicted) != len(truths) or not truths:
        raise ValueError(f"Need one prediction per photo: {len(predicted)} for {len(truths)}.")
    return sum(p in t for p, t in zip(predicted, truths, strict=True)) / len(truths)


def majority_baseline(truths: Sequence[set[str]]) -> tuple[str, float]:
    """The label found in most photos, and the accuracy of always answering it."""
    counts = Counter(label for labels in truths for label in labels)
    if not counts:
        raise ValueError("No photo has a label: nothing to measure.")
    label, count = counts.most_common(1)[0]
    return label, count / len(truths)
