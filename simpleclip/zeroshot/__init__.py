"""Step 8 of the course: zero-shot classification, taught in
``notebooks/08_zero_shot_and_search.ipynb``; CLIP paper, Sections 3.1.2–3.1.4.

- ``classifier``: class names and prompt templates turned into a classifier, no training;
- ``synthetic``: controlled probes on the synthetic shapes (which shape, which colour, the
  held-out purple triangle), run with the demo model.
"""

from simpleclip.zeroshot.classifier import (
    BARE,
    CLIP_ENSEMBLE,
    SHAPES_ENSEMBLE,
    SINGLE,
    TEMPLATE_SETS,
    Picture,
    Prediction,
    ZeroShotClassifier,
    build_classifier,
    classify,
    encode_pictures,
    ensemble_embeddings,
    fill_template,
    template_similarity,
)

__all__ = [
    "BARE",
    "CLIP_ENSEMBLE",
    "SHAPES_ENSEMBLE",
    "SINGLE",
    "TEMPLATE_SETS",
    "Picture",
    "Prediction",
    "ZeroShotClassifier",
    "build_classifier",
    "classify",
    "encode_pictures",
    "ensemble_embeddings",
    "fill_template",
    "template_similarity",
]
