"""The contrastive losses: in a batch of B pairs, find each image's caption and vice versa.

Step 5 of the pipeline, taught in ``notebooks/05_contrastive_loss.ipynb``. The B×B matrix of
image-text similarities is read as B classification problems in each direction (which caption
belongs to this image? which image to this caption?), and the two cross-entropies are averaged.
Under torchrun the same ``clip_loss`` contrasts every rank's pairs with all N·B pairs of the
step, gathered by ``collectives.all_gather_with_grad`` (gradients go back to their owners).
``siglip_loss`` (chapter 10) reads the same matrix as B² independent yes/no questions instead,
with a sigmoid, a learned bias and the same positives (``positive_mask``), ids and ranks.

References: Radford et al. 2021 (arXiv:2103.00020), Fig. 3 pseudo-code and Sec. 2.5 (temperature
initialised to 0.07, logits never scaled by more than 100); open_clip ``loss.py`` (``ClipLoss``,
``gather_features``, ``local_loss``). A popular tutorial's "soft target" loss, studied in the
same notebook and never trained with, is ``simpleclip.tutorial_loss``. SigLIP: Zhai et al.
2023, "Sigmoid Loss for Language Image Pre-Training" (arXiv:2303.15343), Algorithm 1 and
Sec. 3.2 (init: scale 10, bias -10).
Tested in ``tests/test_loss.py`` and, on 2 processes, ``tests/test_distributed.py``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from simpleclip.collectives import all_gather, all_gather_with_grad, rank

# logit_scale = log(1 / temperature), so exp(logit_scale) = 1 / temperature multiplies the cosine
# similarities. Learning the log keeps the scale positive and makes its steps multiplicative.
INIT_TEMPERATURE = 0.07
MAX_SCALE = 100.0
MAX_LOGIT_SCALE = math.log(MAX_SCALE)
INIT_BIAS = -10.0  # SigLIP's starting bias (Zhai et al. 2023, Sec. 3.2)


def init_logit_scale(temperature: float = INIT_TEMPERATURE) -> nn.Parameter:
    """A learnable log inverse temperature, ``log(1 / temperature)``; CLIP starts at 0.07.

    Keep it in the optimizer without weight decay: decay would pull the temperature towards 1.

    Shapes:
        returns a 0-d parameter (about 2.659 for 0.07).
    """
    return nn.Parameter(torch.tensor(math.log(1.0 / temperature)))


def logit_scale_to_scale(logit_scale: torch.Tensor) -> torch.Tensor:
    """exp(``logit_scale``) = 1 / temperature, capped at 100 as in CLIP: the one place the cap is
    applied (the loss, ``CLIPModel.scale``, zero-shot classification and the figures use it)."""
    return logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()


def contrastive_logits(
    image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled cosine similarities of every image with every text in the batch.

    The scale is capped at 100 here, in the forward pass, so no caller can forget it. open_clip
    instead clamps the parameter in place after each optimizer step. Both keep the scale ≤ 100;
    the difference is what happens above the cap: here the gradient there is zero, so a parameter
    an optimizer step pushed past log(100) stays above it (the scale used is still exactly 100),
    while the in-place clamp puts it back on the cap where the loss can pull it down again.
    A training loop may do both.

    Args:
        image_embeds: L2-normalised image embeddings.
        text_embeds: L2-normalised text embeddings; row i is the caption of image i.
        logit_scale: log(1 / temperature), a 0-d tensor.

    Returns:
        ``(logits_per_image, logits_per_text)``; the second is the transpose of the first.

    Shapes:
        image_embeds (B, E), text_embeds (B, E) -> two (B, B) tensors.
    """
    scale = logit_scale_to_scale(logit_scale)  # 1 / temperature, at most 100
    logits_per_image = scale * image_embeds @ text_embeds.T  # (B, E) @ (E, B) -> (B, B)
    return logits_per_image, logits_per_image.T


def positive_mask(
    rows: torch.Tensor,
    size: int,
    image_ids: torch.Tensor | None = None,
    text_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Which pairs are true matches: the one definition both losses read.

    Pair (i, j) is positive when i == j, when image i and image j are the same picture
    (``image_ids``), or when caption i and caption j are the same string (``text_ids``).
    The mask is symmetric, so the same matrix serves both directions.

    Args:
        rows: which pairs' rows to return (a rank's slice of the gathered batch, or all).
        size: N, the number of pairs (columns).
        image_ids: one id per pair naming its image, or None.
        text_ids: one id per pair naming its caption text, or None.

    Shapes:
        rows (R,), ids (N,) -> (R, N) booleans.
    """
    columns = torch.arange(size, device=rows.device)
    positives = rows[:, None] == columns[None, :]  # (R, 1) == (1, N) -> (R, N), the diagonal
    for ids in (image_ids, text_ids):
        if ids is not None:
            positives |= ids[rows, None] == ids[None, :]
    return positives


def multi_positive_targets(
    image_ids: torch.Tensor | None = None,
    text_ids: torch.Tensor | None = None,
    *,
    rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """Target distributions that share each row's probability among all its true matches.

    The positives are those of ``positive_mask``: the pair itself, the same picture, the same
    caption string.

    Args:
        image_ids: one id per pair naming its image, or None.
        text_ids: one id per pair naming its caption text, or None (not both).
        rows: which rows to return (all by default); ``clip_loss(local=True)`` needs only
            this process's rows of the gathered batch.

    Returns:
        Row-stochastic targets: row i is uniform over the positives of pair ``rows[i]``.

    Shapes:
        image_ids (N,), text_ids (N,), rows (R,) -> (R, N); (N, N) without ``rows``.
    """
    given = [ids for ids in (image_ids, text_ids) if ids is not None]
    if not given:
        raise ValueError("pass image_ids, text_ids or both")
    size = len(given[0])
    rows = torch.arange(size, device=given[0].device) if rows is None else rows
    positives = positive_mask(rows, size, image_ids, text_ids).float()
    return positives / positives.sum(dim=1, keepdim=True)


def clip_loss(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    logit_scale: torch.Tensor,
    *,
    image_ids: torch.Tensor | None = None,
    text_ids: torch.Tensor | None = None,
    gather: bool = False,
    local: bool = False,
) -> torch.Tensor:
    """Symmetric cross-entropy over the batch similarity matrix (CLIP paper, Fig. 3).

    With ``z = exp(logit_scale) * image_embeds @ text_embeds.T`` (``logits_per_image``; the
    temperature is ``1 / exp(logit_scale)``), the loss is ``(CE(z, targets) + CE(z.T, targets))
    / 2``: a cross-entropy over the rows (which caption is image i's?) and one over the columns
    (which image is caption j's?), as written out in notebook 05.

    Without ids the targets are the diagonal: pair i matches only itself. With ``image_ids`` or
    ``text_ids``, duplicates in the batch (the same image twice, the same caption string twice)
    count as matches too, with soft targets from ``multi_positive_targets``, so the loss stops
    pushing them apart. This matters when the copies' embeddings differ (two augmentations,
    dropout); for bit-identical copies, and for all-distinct ids, it equals the plain loss.

    The same function serves one process and N (torchrun). With ``gather``, each rank passes
    its own B pairs; the embeddings of all ranks are all-gathered (``all_gather_with_grad``),
    and the ids too, so a picture on rank 0 and its duplicate on rank 1 are positives. Every
    rank then computes the loss of all N·B pairs, the same value everywhere. ``local``
    (open_clip's ``local_loss``) computes only this rank's B rows, in both directions, against
    all N·B columns: N times less loss compute and memory; the ranks' losses differ, but their
    mean is the full loss, and DDP's gradient average gives the full loss's gradient. In one
    process (no ``torch.distributed`` group) both flags change nothing.

    Args:
        image_embeds: L2-normalised image embeddings.
        text_embeds: L2-normalised text embeddings; row i is the caption of image i.
        logit_scale: log(1 / temperature), a 0-d tensor; the scale is capped at 100.
        image_ids: optional id of each pair's image.
        text_ids: optional id of each pair's caption text.
        gather: contrast with every rank's pairs; a collective, so every rank must call it.
        local: with ``gather``, compute only this rank's rows of the gathered loss.

    Returns:
        The mean of the image->text and text->image cross-entropies, a 0-d tensor.

    Shapes:
        image_embeds (B, E), text_embeds (B, E), ids (B,) -> ().

    Example:
        >>> image_embeds = torch.eye(4, 8)  # 4 orthogonal unit vectors, E = 8
        >>> logit_scale = init_logit_scale()  # scale 1 / 0.07 ≈ 14.3
        >>> round(clip_loss(image_embeds, image_embeds, logit_scale).item(), 4)  # all matched
        0.0
        >>> round(clip_loss(image_embeds, image_embeds.roll(1, 0), logit_scale).item(), 2)  # wrong
        14.29
    """
    if local and not gather:
        raise ValueError("local=True computes this rank's rows of the gathered loss: add gather")
    all_images, all_texts = image_embeds, text_embeds  # (N·B, E) each once gathered
    if gather:
        all_images = all_gather_with_grad(image_embeds)  # (B, E) on N ranks -> (N·B, E)
        all_texts = all_gather_with_grad(text_embeds)
        image_ids, text_ids = (None if x is None else all_gather(x) for x in (image_ids, text_ids))
    if local:  # this rank's rows: (B, E) @ (E, N·B) -> (B, N·B), in each direction
        offset = rank() * len(image_embeds)  # where this rank's pairs sit in the gathered batch
        logits_per_image = contrastive_logits(image_embeds, all_texts, logit_scale)[0]
        logits_per_text = contrastive_logits(text_embeds, all_images, logit_scale)[0]
    else:  # every row: two (N·B, N·B) matrices, one the transpose of the other
        offset = 0
        logits_per_image, logits_per_text = contrastive_logits(all_images, all_texts, logit_scale)
    rows = torch.arange(offset, offset + len(logits_per_image), device=logits_per_image.device)
    if image_ids is None and text_ids is None:
        targets = rows  # class indices: pair i matches column i, its own caption (image)
    else:
        targets = multi_positive_targets(image_ids, text_ids, rows=rows)  # like the logits
        # At least float32: a bf16 1/3 is not 1/3 (autocast computes this loss in float32).
        targets = targets.to(torch.promote_types(logits_per_image.dtype, torch.float32))
    # F.cross_entropy takes class indices or, for soft targets, one distribution per row.
    return (
        F.cross_entropy(logits_per_image, targets) + F.cross_entropy(logits_per_text, targets)
    ) / 2


def init_logit_bias(bias: float = INIT_BIAS) -> nn.Parameter:
    """SigLIP's learnable bias, added to every scaled similarity; the paper starts at -10.

    Nearly every pair of a batch is a negative: starting at -10 makes every sigmoid say "no
    match" (about 5e-5), so the first steps are not spent unlearning a wrong prior. Keep it out
    of weight decay, like ``logit_scale``.

    Shapes:
        returns a 0-d parameter.
    """
    return nn.Parameter(torch.tensor(float(bias)))


def siglip_loss(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    logit_scale: torch.Tensor,
    logit_bias: torch.Tensor,
    *,
    image_ids: torch.Tensor | None = None,
    text_ids: torch.Tensor | None = None,
    gather: bool = False,
    local: bool = False,
) -> torch.Tensor:
    """The sigmoid loss of SigLIP (Zhai et al. 2023, Algorithm 1): every pair is its own
    yes/no question, "is image i the picture of caption j?".

    Each of the B×B logits ``scale * cosine + bias`` gets label +1 on the positives (those of
    ``positive_mask``: the diagonal, and with ids the duplicates of a picture or a caption) and
    -1 elsewhere; the loss is ``-log sigmoid(label * logit)`` summed over the matrix and divided
    by the number of rows, B: ``-(1/B) sum_jk log sigmoid(y_jk * (exp(logit_scale) * cos_jk +
    logit_bias))``, as written out in notebook 10. No softmax: no row has to be normalised
    against the others.

    Ranks work as in ``clip_loss``. With ``gather``, the embeddings and ids of all ranks are
    gathered and every rank computes the whole (N·B, N·B) matrix, divided by N·B. With
    ``local``, a rank computes only its B image rows against all N·B texts, divided by B (the
    rows it owns): the N ranks' row blocks tile the matrix once, so their losses sum to N times
    the full loss, their mean is the full loss, and DDP's gradient average (with the gathered
    texts' gradients summed back to their owners) is the full loss's gradient, exactly as for
    ``clip_loss``. In one process both flags change nothing.

    Args:
        image_embeds: L2-normalised image embeddings.
        text_embeds: L2-normalised text embeddings; row i is the caption of image i.
        logit_scale: log(1 / temperature), a 0-d tensor; the scale is capped at 100. The
            paper starts at log(10): ``loss.init_temperature=0.1``.
        logit_bias: the learned bias, a 0-d tensor (``init_logit_bias``: -10).
        image_ids: optional id of each pair's image.
        text_ids: optional id of each pair's caption text.
        gather: contrast with every rank's pairs; a collective, so every rank must call it.
        local: with ``gather``, compute only this rank's rows of the gathered loss.

    Returns:
        The summed binary losses divided by the number of rows, a 0-d tensor.

    Shapes:
        image_embeds (B, E), text_embeds (B, E), ids (B,) -> ().

    Example:
        >>> embeds = torch.eye(4, 8)  # 4 orthogonal unit vectors: matched pairs only
        >>> logit_scale, logit_bias = init_logit_scale(0.1), init_logit_bias()  # scale 10
        >>> # At the start a matched pair sits on the fence: 10 - 10 = 0, -log sigmoid(0) = log 2
        >>> round(siglip_loss(embeds, embeds, logit_scale, logit_bias).item(), 4)
        0.6933
        >>> wrong = embeds.roll(1, 0)  # every caption moved to the next image
        >>> round(siglip_loss(embeds, wrong, logit_scale, logit_bias).item(), 2)
        10.69
    """
    if local and not gather:
        raise ValueError("local=True computes this rank's rows of the gathered loss: add gather")
    all_images, all_texts = image_embeds, text_embeds  # (N·B, E) each once gathered
    if gather:
        all_texts = all_gather_with_grad(text_embeds)
        if not local:  # local rows need only this rank's images
            all_images = all_gather_with_grad(image_embeds)
        image_ids, text_ids = (None if x is None else all_gather(x) for x in (image_ids, text_ids))
    offset = rank() * len(image_embeds) if local else 0  # this rank's rows in the gathered batch
    # At least float32: autocast's bf16 logits would round the bias and the log-sigmoid.
    logits = contrastive_logits(all_images, all_texts, logit_scale)[0]  # (R, N·B); R = B or N·B
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32)) + logit_bias
    rows = torch.arange(offset, offset + len(logits), device=logits.device)
    labels = 2 * positive_mask(rows, len(all_texts), image_ids, text_ids).to(logits.dtype) - 1
    return -F.logsigmoid(labels * logits).sum() / len(logits)  # (R, N·B) -> (), per row
