"""Zero-shot classification measured on real photos, with labels read from their captions.

Flickr8k has no class labels, but its five captions per photo say what is in it. A photo's
true labels are the classes any of its captions mentions (``dog`` for "a brown dog runs",
``water`` for "... jumps into a lake"); a prediction is right when it names one of them. The
honest yardstick is the majority baseline: always answering the most common label (often
"child", "man" or "dog") is already right for that label's share of the photos.

Class names are written the way captions say them ("a dog", but "water": CLIP paper, Section
3.1.4, tuned class names the same way), and the templates take no article of their own.
Used by ``notebooks/08_zero_shot_and_search.ipynb``; CLIP paper, Section 3.1.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import torch

# Class name -> the caption words that count as mentioning it (whole words, any case). Words
# that captions also use as verbs are left out: "waves" would make "a baby waves a flag" water.
FLICKR_LABELS: dict[str, tuple[str, ...]] = {
    "dog": ("dog", "dogs", "puppy", "puppies"),
    "child": ("child", "children", "kid", "kids", "toddler", "baby"),
    "man": ("man", "men"),
    "woman": ("woman", "women", "lady"),
    "bicycle": ("bicycle", "bicycles", "bike", "bikes", "biker", "bicyclist", "cyclist"),
    "water": ("water", "lake", "river", "pool", "ocean", "sea", "stream"),
    "snow": ("snow", "snowy"),
    "grass": ("grass", "grassy", "lawn"),
    "ball": ("ball", "balls"),
    "beach": ("beach", "sand", "sandy"),
}


# How each class is said in a sentence: countable things take an article, stuff does not.
FLICKR_PROMPTS: dict[str, str] = {
    "dog": "a dog",
    "child": "a child",
    "man": "a man",
    "woman": "a woman",
    "bicycle": "a bicycle",
    "water": "water",
    "snow": "snow",
    "grass": "grass",
    "ball": "a ball",
    "beach": "a beach",
}

# Templates for class phrases that bring their own article ("a photo of {}." + "a dog").
PHRASE_TEMPLATES: dict[str, tuple[str, ...]] = {
    "bare": ("{}",),  # the phrase alone, as a caption would start
    "a photo of": ("a photo of {}.",),  # the CLIP paper's default prompt
    "ensemble": ("{}", "a photo of {}.", "a picture of {}.", "{} in the picture."),
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


def zero_shot_on_captions(
    model: torch.nn.Module,
    root: str | Path,
    split: str = "test",
    labels: Mapping[str, Sequence[str]] = FLICKR_LABELS,
    prompts: Mapping[str, str] | None = None,
    template_sets: Mapping[str, Sequence[str]] = PHRASE_TEMPLATES,
) -> dict:
    """Zero-shot top-1 accuracy on a split's photos, against the labels their captions mention.

    Args:
        model: a ``CLIPModel``.
        root: the dataset folder (Flickr8k layout).
        split: which photos to classify; those whose captions mention no class are left out.
        labels: class name -> caption words that mention it.
        prompts: class name -> how a sentence says it (default: the class name itself).
        template_sets: name -> templates, each with one ``{}`` for the class phrase.

    Returns:
        ``{"n_photos", "majority_label", "majority_accuracy", "accuracy": {set name: float},
        "photos": [file name], "predictions": {set name: [class name per photo]}}``.
    """
    from simpleclip.data import find_images_dir, load_split
    from simpleclip.zeroshot.classifier import build_classifier, encode_pictures

    truth = caption_labels(load_split(root, split), labels)
    photos = [name for name, found in truth.items() if found]
    truths = [truth[name] for name in photos]
    label, share = majority_baseline(truths)
    image_embeds = encode_pictures(model, [find_images_dir(root) / name for name in photos])
    phrases = {name: (prompts or {}).get(name, name) for name in labels}
    class_of = {phrase: name for name, phrase in phrases.items()}
    accuracy, predictions = {}, {}
    for set_name, templates in template_sets.items():
        classifier = build_classifier(model, list(phrases.values()), templates)
        best = [class_of[top[0].label] for top in classifier.predict(image_embeds, top_k=1)]
        accuracy[set_name], predictions[set_name] = top1_accuracy(best, truths), best
    return {
        "n_photos": len(photos),
        "majority_label": label,
        "majority_accuracy": share,
        "accuracy": accuracy,
        "photos": photos,
        "predictions": predictions,
    }
