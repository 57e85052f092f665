"""Zero-shot classification: turn a list of class names into a classifier, no training needed.

Each class name is written into prompt templates ("a photo of a {}."), the text tower encodes
every sentence, and a picture gets the class whose embedding is closest, with probabilities from
the same softmax at the learned temperature as in training. Prompt ensembling averages the unit
embeddings of several templates per class and normalises the mean again. The measurements on
the synthetic shapes set (including the held-out purple triangle) are in ``zeroshot.synthetic``.
Taught in ``notebooks/08_zero_shot_and_search.ipynb``; CLIP paper, Sections 3.1.2–3.1.4.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from simpleclip.data import ImageLoadError, Picture
from simpleclip.inference import embed_images, embed_pictures, embed_texts

BARE = ("{}",)  # the class name alone
SINGLE = ("a photo of a {}.",)  # the CLIP paper's default prompt
# The 7 templates the CLIP authors found best on ImageNet (CLIP repository, Prompt_Engineering
# notebook): a small generic ensemble.
CLIP_ENSEMBLE = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)
# Curated for the synthetic shapes: the words its captions use, over every size and position,
# so that the ensemble averages out what the class name does not say.
SHAPES_ENSEMBLE = (
    "a {}",
    "a {} on a plain background",
    "a picture of a {}",
    "a small {}",
    "a big {}",
    "a {} on the left",
    "a {} on the right",
    "a {} at the top",
    "a {} at the bottom",
    "a {} in the middle",
)
TEMPLATE_SETS = {
    "bare": BARE,
    "single": SINGLE,
    "clip ensemble": CLIP_ENSEMBLE,
    "shapes ensemble": SHAPES_ENSEMBLE,
}


@dataclass(frozen=True)
class Prediction:
    label: str
    probability: float  # softmax over all classes at the model's temperature, in [0, 1]


def fill_template(template: str, name: str) -> str:
    """Put a class name into a template, fixing the article: ``a {}`` + orange -> an orange."""
    if name[:1].lower() in "aeiou":
        template = template.replace("a {}", "an {}")
    return template.format(name)


def ensemble_embeddings(text_embeds: torch.Tensor) -> torch.Tensor:
    """One unit vector per class: normalise each template's embedding, average, normalise again.

    Normalising first gives every template the same vote; a raw embedding with a large norm
    would otherwise dominate the mean.

    Shapes: (C, T, E) -> (C, E).
    """
    return F.normalize(F.normalize(text_embeds, dim=-1).mean(dim=1), dim=-1)


@dataclass
class ZeroShotClassifier:
    """Class names and their text embeddings: a linear classifier written by the text tower.

    Args:
        classes: the C class names.
        class_embeds: one unit vector per class, (C, E).
        logit_scale: 1 / temperature, the model's learned value (capped at 100 as in training).
    """

    classes: list[str]
    class_embeds: torch.Tensor
    logit_scale: float

    def probabilities(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """Shapes: (N, E) unit image embeddings -> (N, C), each row sums to one."""
        logits = self.logit_scale * image_embeds @ self.class_embeds.T  # (N, E) @ (E, C)
        return logits.softmax(dim=-1)

    def predict(self, image_embeds: torch.Tensor, top_k: int = 5) -> list[list[Prediction]]:
        """The ``top_k`` most likely classes of each picture, most likely first."""
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}.")
        best = self.probabilities(image_embeds).topk(min(top_k, len(self.classes)), dim=-1)
        return [
            [Prediction(self.classes[i], p) for p, i in zip(probs, ids, strict=True)]
            for probs, ids in zip(best.values.tolist(), best.indices.tolist(), strict=True)
        ]


def build_classifier(
    model: torch.nn.Module, classes: Sequence[str], templates: Sequence[str] = SINGLE
) -> ZeroShotClassifier:
    """Encode every (class, template) sentence and ensemble the templates of each class.

    Args:
        model: a ``CLIPModel``.
        classes: class names, e.g. ``["dog", "cat"]``; each must be non-empty and unique.
        templates: sentences with one ``{}`` for the class name (see ``TEMPLATE_SETS``).

    Shapes: C classes, T templates -> class_embeds (C, E).

    Example:
        >>> classifier = build_classifier(model, ["circle", "star"])  # doctest: +SKIP
        >>> classifier.predict(encode_pictures(model, ["a.png"]), top_k=1)  # doctest: +SKIP
    """
    classes = [c.strip() for c in classes]
    if not classes or not all(classes) or len(set(classes)) < len(classes):
        raise ValueError(f"Give at least one class name, each non-empty and unique: {classes}.")
    if not templates or any(t.count("{}") != 1 for t in templates):
        raise ValueError(f"Every template needs exactly one {{}} for the class name: {templates}.")
    texts = [fill_template(t, c) for c in classes for t in templates]
    embeds = embed_texts(model, texts).view(len(classes), len(templates), -1)  # (C, T, E)
    return ZeroShotClassifier(classes, ensemble_embeddings(embeds), model.scale.item())


def template_similarity(
    model: torch.nn.Module, classes: Sequence[str], templates: Sequence[str], features: bool = False
) -> torch.Tensor:
    """How much the templates move each class: the mean cosine between the embeddings of a
    class's templates, over every pair of different templates.

    Near 1, the text tower says the same thing whatever the template, and no template can
    change a prediction; lower, the templates pull the class vector apart.

    Args:
        model: a ``CLIPModel`` (the embeddings are those the classifier uses: after the head).
        classes: the C class names.
        templates: at least two templates, each with one ``{}``.
        features: compare the text encoder's outputs (before the head) instead.

    Shapes: C classes, T templates -> (C,).
    """
    if len(templates) < 2:
        raise ValueError(f"Need at least two templates to compare, got {len(templates)}.")
    texts = [fill_template(t, c) for c in classes for t in templates]
    embeds = embed_texts(model, texts, features=features).view(len(classes), len(templates), -1)
    embeds = F.normalize(embeds, dim=-1)  # (C, T, E); features are not unit length
    cosines = embeds @ embeds.transpose(1, 2)  # (C, T, T)
    pairs = len(templates) * (len(templates) - 1)
    return (cosines.sum(dim=(1, 2)) - cosines.diagonal(dim1=1, dim2=2).sum(dim=1)) / pairs


def encode_pictures(
    model: torch.nn.Module, pictures: Sequence[Picture] | torch.Tensor, batch_size: int = 64
) -> torch.Tensor:
    """Unit image embeddings of all the pictures (``inference.embed_pictures``), or an error.

    A classification must answer for every picture it was given, so one that cannot be read
    fails the whole list, each such picture named with its reason.

    Args:
        model: a ``CLIPModel``.
        pictures: files, PIL images or HWC uint8 arrays; or a tensor already preprocessed.
        batch_size: pictures per forward pass.

    Raises:
        ImageLoadError: some pictures cannot be read (the message lists them).

    Shapes: N pictures or (N, 3, S, S) -> (N, E) float32 on the CPU.
    """
    if not len(pictures):
        raise ValueError("No pictures to encode.")
    if isinstance(pictures, torch.Tensor):
        return embed_images(model, pictures, batch_size)
    embeds, reasons = embed_pictures(model, pictures, batch_size)
    unreadable = [
        f"{picture if isinstance(picture, str | Path) else f'picture {i}'}: {reason}"
        for i, (picture, reason) in enumerate(zip(pictures, reasons, strict=True))
        if reason
    ]
    if unreadable:
        raise ImageLoadError(
            f"{len(unreadable)} of {len(pictures)} pictures cannot be read: "
            + "; ".join(unreadable)
        )
    return embeds


def classify(
    model: torch.nn.Module,
    images: Sequence[Picture] | torch.Tensor,
    classes: Sequence[str],
    templates: Sequence[str] = SINGLE,
    top_k: int = 5,
    batch_size: int = 64,
) -> list[list[Prediction]]:
    """Zero-shot classify pictures: the ``top_k`` labels of each, with probabilities.

    Args:
        model: a ``CLIPModel``; its learned temperature sharpens the softmax.
        images: files, PIL images, HWC uint8 arrays, or a preprocessed (N, 3, S, S) tensor.
        classes: the candidate labels.
        templates: prompt templates; several are ensembled (see ``ensemble_embeddings``).
        top_k: labels per picture (at most the number of classes).
        batch_size: pictures per forward pass.

    Returns:
        One list per picture of ``Prediction(label, probability)``, most likely first.

    Example:
        >>> classify(model, ["cat.jpg"], ["cat", "dog"], CLIP_ENSEMBLE)  # doctest: +SKIP
        [[Prediction(label='cat', probability=0.93), Prediction(label='dog', probability=0.07)]]
    """
    classifier = build_classifier(model, classes, templates)
    return classifier.predict(encode_pictures(model, images, batch_size), top_k)
