"""The "soft target" loss of a popular CLIP tutorial, kept for study: it is never trained with.

From moein-shariatnia/OpenAI-CLIP (and keras.io "Natural language image search with a Dual
Encoder"). Notebook 05 shows why it fails (the model can lower it by moving its own targets, and it
prefers a collapsed batch to a perfect one); ``simpleclip.loss`` holds only the losses that
train. Checked against the tutorial's own code in ``tests/test_loss.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_target_loss(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    temperature: float = 1.0,
    *,
    detach_targets: bool = False,
) -> torch.Tensor:
    """The "soft target" loss of a popular tutorial; kept for study, do not train with it.

    Targets are a softmax of the batch's own image-image and text-text similarities, and by
    default (as in the tutorial) gradients flow into them: the model can lower the loss by
    moving its targets, not only its predictions. Notebook 05 measures what that does.
    Embeddings may be unnormalised: the tutorial feeds LayerNorm outputs, not unit vectors.
    This follows moein-shariatnia/OpenAI-CLIP (targets scaled by ``* temperature``, trained at
    1.0); the Keras example divides them by ``2 * temperature`` and trains at 0.05 instead.

    Args:
        image_embeds: image embeddings.
        text_embeds: text embeddings; row i is the caption of image i.
        temperature: a fixed temperature (not learned in the tutorial).
        detach_targets: stop the gradient through the targets (not in the tutorial).

    Returns:
        The mean of both directions' soft cross-entropies, a 0-d tensor.

    Shapes:
        image_embeds (B, E), text_embeds (B, E) -> ().
    """
    logits = text_embeds @ image_embeds.T / temperature  # (B, E) @ (E, B) -> (B, B), per text
    images_similarity = image_embeds @ image_embeds.T  # (B, B)
    texts_similarity = text_embeds @ text_embeds.T  # (B, B)
    targets = F.softmax((images_similarity + texts_similarity) / 2 * temperature, dim=-1)
    if detach_targets:
        targets = targets.detach()
    texts_loss = -(targets * F.log_softmax(logits, dim=-1)).sum(dim=1)  # (B,)
    images_loss = -(targets.T * F.log_softmax(logits.T, dim=-1)).sum(dim=1)  # (B,)
    return ((texts_loss + images_loss) / 2).mean()
