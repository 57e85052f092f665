"""Tests for simpleclip.loss: the CLIP loss against a double-loop reference, and its invariants."""

from __future__ import annotations

import doctest
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from simpleclip.loss import (
    MAX_LOGIT_SCALE,
    clip_loss,
    contrastive_logits,
    init_logit_bias,
    init_logit_scale,
    multi_positive_targets,
    positive_mask,
    siglip_loss,
)
from simpleclip.tutorial_loss import soft_target_loss


def unit_rows(batch_size: int, embed_dim: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(batch_size, embed_dim, generator=generator, dtype=dtype), dim=-1)


def reference_loss(image, text, logit_scale, image_ids=None, text_ids=None) -> torch.Tensor:
    """Fig. 3 of the CLIP paper one number at a time: explicit dot products and log-sum-exps."""
    batch_size = len(image)
    scale = torch.exp(logit_scale)

    def positive(i: int, j: int) -> bool:
        same_image = image_ids is not None and image_ids[i] == image_ids[j]
        same_text = text_ids is not None and text_ids[i] == text_ids[j]
        return i == j or bool(same_image) or bool(same_text)

    rows, dims = range(batch_size), range(image.shape[1])
    logit = [[scale * sum(image[i][k] * text[j][k] for k in dims) for j in rows] for i in rows]
    total = 0.0
    for i in range(batch_size):
        positives = [j for j in range(batch_size) if positive(i, j)]
        log_z_image = torch.log(sum(torch.exp(logit[i][j]) for j in range(batch_size)))
        log_z_text = torch.log(sum(torch.exp(logit[j][i]) for j in range(batch_size)))
        for j in positives:  # uniform target 1/len(positives) over row i's positives
            total = total - (logit[i][j] - log_z_image) / len(positives)  # image i -> text j
            total = total - (logit[j][i] - log_z_text) / len(positives)  # text i -> image j
    return total / (2 * batch_size)


@pytest.mark.parametrize(
    "image_ids, text_ids",
    [
        (None, None),
        ([0, 1, 0, 2, 3], None),
        (None, [4, 4, 5, 6, 7]),
        ([0, 1, 0, 2, 3], [5, 6, 7, 6, 8]),
    ],
    ids=["plain", "image_ids", "text_ids", "both"],
)
def test_clip_loss_matches_double_loop_reference(image_ids, text_ids) -> None:
    image_ids = None if image_ids is None else torch.tensor(image_ids)
    text_ids = None if text_ids is None else torch.tensor(text_ids)
    inputs = [
        unit_rows(5, 3, seed=0),
        unit_rows(5, 3, seed=1),
        torch.tensor(1.3, dtype=torch.float64),
    ]
    ours_inputs = [x.clone().requires_grad_() for x in inputs]
    ref_inputs = [x.clone().requires_grad_() for x in inputs]

    ours = clip_loss(*ours_inputs, image_ids=image_ids, text_ids=text_ids)
    ref = reference_loss(*ref_inputs, image_ids=image_ids, text_ids=text_ids)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)

    ours.backward()
    ref.backward()
    names = ["image_embeds", "text_embeds", "logit_scale"]
    for name, a, b in zip(names, ours_inputs, ref_inputs, strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=1e-6, msg=f"gradient of {name}")


@pytest.mark.parametrize("case", ["identical embeddings", "random at a tiny scale"])
def test_equal_logits_give_log_batch_size(case: str) -> None:
    """Chance level: when every logit of a row is the same, each row is a uniform guess."""
    if case == "identical embeddings":
        embeds = unit_rows(1, 16, seed=0).expand(8, 16)  # every image equals every text
        loss = clip_loss(embeds, embeds, torch.tensor(math.log(1 / 0.07), dtype=torch.float64))
        torch.testing.assert_close(loss, torch.tensor(math.log(8), dtype=torch.float64))
    else:
        image, text = unit_rows(64, 32, seed=0), unit_rows(64, 32, seed=1)
        loss = clip_loss(image, text, torch.tensor(-8.0, dtype=torch.float64))  # logits ≈ 0
        assert abs(loss.item() - math.log(64)) < 1e-3


def test_loss_is_symmetric_in_images_and_texts() -> None:
    image, text, logit_scale = unit_rows(6, 4, seed=0), unit_rows(6, 4, seed=1), torch.tensor(2.0)
    forward = clip_loss(image, text, logit_scale)
    swapped = clip_loss(text, image, logit_scale)
    torch.testing.assert_close(forward, swapped, rtol=0, atol=1e-12)
    # The directions differ on their own, so the average is what makes it symmetric.
    logits_per_image, logits_per_text = contrastive_logits(image, text, logit_scale)
    labels = torch.arange(6)
    one_way = F.cross_entropy(logits_per_image, labels)
    assert abs(one_way.item() - F.cross_entropy(logits_per_text, labels).item()) > 1e-3


def test_aligned_one_hot_embeddings_drive_the_loss_to_zero_as_scale_grows() -> None:
    embeds = torch.eye(8, dtype=torch.float64)  # orthogonal, each image equal to its caption
    scales = (1, 2, 5, 10, 20, 100)
    losses = [clip_loss(embeds, embeds, torch.tensor(math.log(s))).item() for s in scales]
    assert all(a > b for a, b in itertools.pairwise(losses)), losses
    assert losses[0] > 1.0 and losses[-1] < 1e-12  # ≈ 7 e^-100 at the cap


def test_scale_is_capped_at_100() -> None:
    image, text = unit_rows(6, 4, seed=0), unit_rows(6, 4, seed=1)
    at_cap = clip_loss(image, text, torch.tensor(math.log(100), dtype=torch.float64))
    above = clip_loss(image, text, torch.tensor(10.0, dtype=torch.float64))  # e^10 ≈ 22026
    torch.testing.assert_close(above, at_cap, rtol=0, atol=1e-12)
    logits_per_image, _ = contrastive_logits(image, image, torch.tensor(10.0, dtype=torch.float64))
    torch.testing.assert_close(logits_per_image.diagonal().max().item(), 100.0)


def test_init_logit_scale_is_a_learnable_log_inverse_temperature_with_a_gradient() -> None:
    logit_scale = init_logit_scale()
    assert isinstance(logit_scale, torch.nn.Parameter) and logit_scale.dim() == 0
    torch.testing.assert_close(logit_scale.exp().item(), 1 / 0.07)
    assert logit_scale.item() < MAX_LOGIT_SCALE
    image, text = unit_rows(6, 4, 0, torch.float32), unit_rows(6, 4, 1, torch.float32)
    clip_loss(image, text, logit_scale).backward()
    assert logit_scale.grad is not None and logit_scale.grad.abs().item() > 0


def _loss_and_grads(device: str, dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """Plain and multi-positive losses and the three gradients, under autocast to ``dtype``."""
    image = unit_rows(32, 16, 0, torch.float32).to(device).requires_grad_()
    text = unit_rows(32, 16, 1, torch.float32).to(device).requires_grad_()
    logit_scale = init_logit_scale().to(device)
    logit_scale.retain_grad()  # .to() made a copy (a non-leaf on CUDA)
    image_ids = torch.arange(32, device=device) % 16  # every image twice
    with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
        plain = clip_loss(image, text, logit_scale)
        multi = clip_loss(image, text, logit_scale, image_ids=image_ids)
    (plain + multi).backward()
    found = {"plain": plain, "multi": multi, "image": image.grad, "text": text.grad}
    return {**found, "logit_scale": logit_scale.grad}


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_autocast_matches_float32(device: str, dtype: torch.dtype) -> None:
    """Mixed precision only rounds: the loss and every gradient stay close to float32's.

    Tolerance, relative, from the dtype's machine epsilon (bf16 7.8e-3, fp16 9.8e-4): the
    loss within eps, each gradient within 2·eps in norm. Measured on the CPU: bf16 4e-4 (loss)
    and 5e-3 (embedding gradients); fp16 3e-5 and 6e-4.
    """
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    reference, mixed = _loss_and_grads(device, None), _loss_and_grads(device, dtype)
    eps = torch.finfo(dtype).eps
    for name, tensor in mixed.items():
        assert tensor.dtype == torch.float32, name  # the loss and the leaves stay float32
        assert torch.isfinite(tensor).all(), name
        error = ((tensor - reference[name]).norm() / reference[name].norm()).item()
        tolerance = eps if name in ("plain", "multi") else 2 * eps
        assert error < tolerance, f"{name}: relative error {error:.1e} >= {tolerance:.1e}"


def test_multi_positive_targets_on_a_hand_built_batch() -> None:
    image_ids, text_ids = torch.tensor([7, 7, 8]), torch.tensor([0, 1, 1])
    targets = multi_positive_targets(image_ids, text_ids)
    # Pairs 0 and 1 share an image, pairs 1 and 2 share a caption string.
    expected = torch.tensor([[1 / 2, 1 / 2, 0], [1 / 3, 1 / 3, 1 / 3], [0, 1 / 2, 1 / 2]])
    torch.testing.assert_close(targets, expected)


def test_multi_positive_with_distinct_ids_equals_the_plain_loss() -> None:
    image, text, logit_scale = unit_rows(10, 4, seed=0), unit_rows(10, 4, seed=1), torch.tensor(2.5)
    plain = clip_loss(image, text, logit_scale)
    distinct = torch.randperm(10, generator=torch.Generator().manual_seed(0)) + 100
    multi = clip_loss(image, text, logit_scale, image_ids=distinct, text_ids=distinct.flip(0))
    torch.testing.assert_close(multi, plain, rtol=0, atol=1e-12)


def test_multi_positive_matters_only_when_duplicate_copies_differ() -> None:
    # Bit-identical copies make rows 0 and 1 of the logits equal, and the plain loss's
    # "-log p(0) in row 0, -log p(1) in row 1" then sums to the multi-positive "half of each".
    image, text, logit_scale = unit_rows(6, 4, seed=0), unit_rows(6, 4, seed=1), torch.tensor(2.5)
    image_ids = torch.tensor([0, 0, 1, 2, 3, 4])
    image[1] = image[0]
    exact = [clip_loss(image, text, logit_scale, image_ids=ids) for ids in (None, image_ids)]
    torch.testing.assert_close(exact[0], exact[1], rtol=0, atol=1e-12)
    image[1] = F.normalize(image[0] + 0.3 * unit_rows(1, 4, seed=2)[0], dim=0)  # another view
    augmented = [clip_loss(image, text, logit_scale, image_ids=ids) for ids in (None, image_ids)]
    assert abs(augmented[0].item() - augmented[1].item()) > 1e-3


@pytest.mark.parametrize("duplicated", ["image", "text"])
def test_multi_positive_stops_pushing_a_duplicate_pair_apart(duplicated: str) -> None:
    # Pairs 0 and 1 show the same image (or the same caption string) with different partners.
    # Their rows are free to move apart, like two augmented views. Partners are one-hot, so
    # d loss / d duplicate[0, 1] is d loss / d similarity(copy 0, partner of copy 1).
    partners = torch.eye(6, dtype=torch.float64)
    duplicate = torch.eye(6, dtype=torch.float64)
    duplicate[0] = duplicate[1] = F.normalize(partners[0] + partners[1], dim=0)
    ids = torch.tensor([0, 0, 1, 2, 3, 4])
    grads = {}
    for use_ids in (False, True):
        x = duplicate.clone().requires_grad_()
        image, text = (x, partners) if duplicated == "image" else (partners, x)
        id_kwargs = {f"{duplicated}_ids": ids} if use_ids else {}
        clip_loss(image, text, torch.tensor(math.log(1 / 0.07)), **id_kwargs).backward()
        grads[use_ids] = x.grad[0, 1].item()
    assert grads[False] > 0  # plain loss: gradient descent lowers the similarity (push apart)
    assert grads[True] <= 0  # multi-positive: never pushes them apart (here it pulls them in)


def test_multi_positive_target_rows_are_rows_of_the_full_matrix() -> None:
    image_ids, text_ids = torch.tensor([7, 7, 8, 9, 9, 1]), torch.tensor([0, 1, 1, 2, 3, 4])
    full = multi_positive_targets(image_ids, text_ids)
    rows = torch.tensor([3, 4, 5])  # what clip_loss(local=True) asks for on rank 1 of 2
    torch.testing.assert_close(multi_positive_targets(image_ids, text_ids, rows=rows), full[3:])


IDS = {
    "plain": {},
    "image_ids": {"image_ids": torch.tensor([0, 1, 2, 0, 4, 5, 6, 1])},  # across halves
    "both": {"image_ids": torch.tensor([0, 1, 2, 0, 4, 5, 6, 7]), "text_ids": torch.arange(8) % 5},
}


@pytest.mark.parametrize("ids", IDS.values(), ids=IDS.keys())
@pytest.mark.parametrize("local", [False, True], ids=["gather", "local"])
@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_gather_and_local_change_nothing_in_one_process(ids: dict, local: bool, kind: str) -> None:
    """The trainer always passes ``gather=True``; without torchrun that is the plain loss."""
    inputs = [unit_rows(8, 4, seed=0), unit_rows(8, 4, seed=1), torch.tensor(2.0).double()]
    loss = clip_loss
    if kind == "siglip":  # and its learned bias
        inputs, loss = [*inputs, torch.tensor(-3.0).double()], siglip_loss
    plain_inputs = [x.clone().requires_grad_() for x in inputs]
    gathered_inputs = [x.clone().requires_grad_() for x in inputs]
    plain = loss(*plain_inputs, **ids)
    gathered = loss(*gathered_inputs, gather=True, local=local, **ids)
    torch.testing.assert_close(gathered, plain, rtol=0, atol=1e-12)
    plain.backward()
    gathered.backward()
    for a, b in zip(gathered_inputs, plain_inputs, strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=1e-12)


@pytest.mark.parametrize("ids", IDS.values(), ids=IDS.keys())
@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_local_rows_of_all_ranks_average_to_the_full_loss(
    ids: dict, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two ranks played in one process: each computes its 4 rows of the gathered 8-pair loss.

    The gathers are stand-ins that return the whole batch (with its graph); the ranks' mean
    must be the full loss, with its gradients (scale, and SigLIP's bias too), for the ids and
    targets offset by rank·B. SigLIP divides each rank's row sum by its 4 rows, so the mean is
    the full sum / 8. ``tests/test_distributed.py`` checks the same with real processes and DDP.
    """
    import simpleclip.loss as loss_module

    image, text = unit_rows(8, 4, seed=0), unit_rows(8, 4, seed=1)
    leaves = [image.requires_grad_(), text.requires_grad_(), torch.tensor(2.0).double()]
    loss = clip_loss
    if kind == "siglip":  # and its learned bias
        leaves, loss = [*leaves, torch.tensor(-3.0).double()], siglip_loss
    for leaf in leaves[2:]:
        leaf.requires_grad_()
    full = loss(*leaves, **ids)
    losses = []
    for rank in range(2):
        part = slice(4 * rank, 4 * rank + 4)
        own = {"image": image[part], "text": text[part], **{n: v[part] for n, v in ids.items()}}
        whole = {id(own["image"]): image, id(own["text"]): text}  # what the gathers return
        whole.update({id(own[name]): ids[name] for name in ids})
        monkeypatch.setattr(loss_module, "rank", lambda rank=rank: rank)
        monkeypatch.setattr(loss_module, "all_gather_with_grad", lambda x, w=whole: w[id(x)])
        monkeypatch.setattr(loss_module, "all_gather", lambda x, w=whole: w[id(x)])
        own_ids = {name: own[name] for name in ids}
        losses.append(
            loss(own["image"], own["text"], *leaves[2:], gather=True, local=True, **own_ids)
        )
    mean = (losses[0] + losses[1]) / 2
    torch.testing.assert_close(mean, full, rtol=0, atol=1e-12)
    assert abs(losses[0].item() - losses[1].item()) > 1e-3  # the ranks really differ
    expected = torch.autograd.grad(full, leaves)
    for got, want in zip(torch.autograd.grad(mean, leaves), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_local_without_gather_is_refused() -> None:
    image = unit_rows(4, 3, seed=0)
    with pytest.raises(ValueError, match="add gather"):
        clip_loss(image, image, torch.tensor(1.0), local=True)


def test_the_docstring_examples_hold() -> None:
    import simpleclip.loss as loss_module

    result = doctest.testmod(loss_module)
    assert result.attempted >= 3 and result.failed == 0


def reference_soft_target_loss(image, text, temperature: float) -> torch.Tensor:
    """The tutorial's loss, one row at a time (moein-shariatnia/OpenAI-CLIP, ``CLIP.py``)."""
    batch_size, total = len(image), 0.0
    rows = range(batch_size)
    logits = [[text[i] @ image[j] / temperature for j in rows] for i in rows]  # text i, image j
    sims = [
        [(image[i] @ image[j] + text[i] @ text[j]) / 2 * temperature for j in rows] for i in rows
    ]
    for i in range(batch_size):
        target_z = sum(torch.exp(sims[i][k]) for k in range(batch_size))
        text_z = sum(torch.exp(logits[i][k]) for k in range(batch_size))  # row i of logits
        for j in range(batch_size):
            target = torch.exp(sims[i][j]) / target_z
            total = total - target * (logits[i][j] - torch.log(text_z)) / 2
            # images_loss uses targets.T and logits.T: row j, column i.
            image_z = sum(torch.exp(logits[k][j]) for k in range(batch_size))
            total = total - target * (logits[i][j] - torch.log(image_z)) / 2
    return total / batch_size


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_soft_target_loss_matches_the_tutorial_reference(temperature: float) -> None:
    # Unnormalised on purpose: the tutorial feeds LayerNorm outputs.
    image, text = 3 * unit_rows(5, 3, seed=0), 2 * unit_rows(5, 3, seed=1)
    ours = [image.clone().requires_grad_(), text.clone().requires_grad_()]
    ref = [image.clone().requires_grad_(), text.clone().requires_grad_()]
    loss = soft_target_loss(*ours, temperature)
    expected = reference_soft_target_loss(*ref, temperature)
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-6)
    loss.backward()
    expected.backward()
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=1e-6)


def test_detached_soft_targets_change_the_gradient_not_the_value() -> None:
    image, text = unit_rows(6, 4, seed=0).requires_grad_(), unit_rows(6, 4, seed=1)
    value = soft_target_loss(image, text)
    value.backward()
    through_targets = image.grad.clone()
    image.grad = None
    detached = soft_target_loss(image, text, detach_targets=True)
    detached.backward()
    torch.testing.assert_close(detached, value)
    assert (image.grad - through_targets).abs().max() > 1e-3


def test_soft_target_loss_prefers_a_collapsed_batch_to_a_perfect_one() -> None:
    # Unit vectors, as in CLIP: perfect pairs (orthogonal, each text equal to its image) versus
    # a collapse onto one line, half the batch at +v and half at -v (useless for retrieval).
    perfect = torch.eye(16, dtype=torch.float64)
    collapsed = torch.zeros(16, 16, dtype=torch.float64)
    collapsed[:8, 0], collapsed[8:, 0] = 1.0, -1.0
    assert soft_target_loss(collapsed, collapsed) < soft_target_loss(perfect, perfect)
    logit_scale = torch.tensor(0.0)  # same temperature (1) for a fair comparison
    assert clip_loss(collapsed, collapsed, logit_scale) > clip_loss(perfect, perfect, logit_scale)


def reference_siglip_loss(image, text, logit_scale, logit_bias, image_ids=None, text_ids=None):
    """Algorithm 1 of the SigLIP paper one pair at a time: label ±1, -log sigmoid(label·logit)."""
    batch_size, dims = len(image), range(image.shape[1])
    scale = torch.exp(logit_scale)
    total = 0.0
    for i in range(batch_size):
        for j in range(batch_size):
            same_image = image_ids is not None and bool(image_ids[i] == image_ids[j])
            same_text = text_ids is not None and bool(text_ids[i] == text_ids[j])
            label = 1.0 if i == j or same_image or same_text else -1.0
            logit = scale * sum(image[i][k] * text[j][k] for k in dims) + logit_bias
            total = total + torch.log(1 + torch.exp(-label * logit))  # -log sigmoid(label·logit)
    return total / batch_size


SIGLIP_IDS = {
    "plain": (None, None),
    "image_ids": ([0, 1, 0, 2, 3], None),
    "text_ids": (None, [4, 4, 5, 6, 7]),
    "both": ([0, 1, 0, 2, 3], [5, 6, 7, 6, 8]),
}


@pytest.mark.parametrize(("image_ids", "text_ids"), SIGLIP_IDS.values(), ids=SIGLIP_IDS.keys())
@pytest.mark.parametrize("bias", [-10.0, 0.7])
def test_siglip_loss_matches_double_loop_reference(image_ids, text_ids, bias: float) -> None:
    """Forward and every gradient: embeddings, ``logit_scale`` and ``logit_bias``."""
    image_ids = None if image_ids is None else torch.tensor(image_ids)
    text_ids = None if text_ids is None else torch.tensor(text_ids)
    inputs = [
        unit_rows(5, 3, seed=0),
        unit_rows(5, 3, seed=1),
        torch.tensor(math.log(10), dtype=torch.float64),
        torch.tensor(bias, dtype=torch.float64),
    ]
    ours_inputs = [x.clone().requires_grad_() for x in inputs]
    ref_inputs = [x.clone().requires_grad_() for x in inputs]
    ours = siglip_loss(*ours_inputs, image_ids=image_ids, text_ids=text_ids)
    ref = reference_siglip_loss(*ref_inputs, image_ids=image_ids, text_ids=text_ids)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-9)
    ours.backward()
    ref.backward()
    names = ["image_embeds", "text_embeds", "logit_scale", "logit_bias"]
    for name, a, b in zip(names, ours_inputs, ref_inputs, strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=1e-9, msg=f"gradient of {name}")
    for name, leaf in zip(names[2:], ours_inputs[2:], strict=True):
        assert leaf.grad.abs().item() > 1e-3, f"{name} gets no gradient"  # both really learn


def test_siglip_ids_change_the_loss_and_the_labels_are_those_of_clip() -> None:
    """Duplicates marked by ids flip their labels to +1: one positive mask for both losses."""
    image_ids, text_ids = torch.tensor([7, 7, 8]), torch.tensor([0, 1, 1])
    mask = positive_mask(torch.arange(3), 3, image_ids, text_ids)
    torch.testing.assert_close(mask, multi_positive_targets(image_ids, text_ids) > 0)
    expected = torch.tensor([[1, 1, 0], [1, 1, 1], [0, 1, 1]], dtype=torch.bool)
    torch.testing.assert_close(mask, expected)
    image, text = unit_rows(3, 4, seed=0), unit_rows(3, 4, seed=1)
    scale, bias = torch.tensor(math.log(10)).double(), torch.tensor(-1.0).double()
    plain = siglip_loss(image, text, scale, bias)
    multi = siglip_loss(image, text, scale, bias, image_ids=image_ids, text_ids=text_ids)
    assert abs(plain.item() - multi.item()) > 1e-3


def test_siglip_starts_at_the_papers_values_and_learns_scale_and_bias() -> None:
    logit_scale, logit_bias = init_logit_scale(0.1), init_logit_bias()
    torch.testing.assert_close(logit_scale.exp().item(), 10.0)
    assert isinstance(logit_bias, torch.nn.Parameter) and logit_bias.dim() == 0
    assert logit_bias.item() == -10.0
    image, text = unit_rows(6, 4, 0, torch.float32), unit_rows(6, 4, 1, torch.float32)
    siglip_loss(image, text, logit_scale, logit_bias).backward()
    assert logit_scale.grad.abs().item() > 0 and logit_bias.grad.abs().item() > 0
    # Perfect pairs at a huge scale and a bias between the two clusters: loss ≈ 0.
    embeds = torch.eye(8, dtype=torch.float64)
    perfect = siglip_loss(embeds, embeds, torch.tensor(math.log(100.0)), torch.tensor(-50.0))
    assert perfect.item() < 1e-15


def test_siglip_local_without_gather_is_refused() -> None:
    image = unit_rows(4, 3, seed=0)
    with pytest.raises(ValueError, match="add gather"):
        siglip_loss(image, image, torch.tensor(1.0), torch.tensor(-10.0), local=True)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_siglip_under_autocast_stays_float32_and_close(dtype: torch.dtype) -> None:
    def run(enabled: bool) -> list[torch.Tensor]:
        leaves = [unit_rows(32, 16, 0, torch.float32), unit_rows(32, 16, 1, torch.float32)]
        leaves += [init_logit_scale(0.1), init_logit_bias()]
        leaves = [x.detach().requires_grad_() for x in leaves]
        with torch.autocast("cpu", dtype=dtype, enabled=enabled):
            loss = siglip_loss(*leaves, image_ids=torch.arange(32) % 16)
        return [loss, *torch.autograd.grad(loss, leaves)]

    eps = torch.finfo(dtype).eps
    names = ["loss", "image", "text", "logit_scale", "logit_bias"]
    for name, got, want in zip(names, run(True), run(False), strict=True):
        assert got.dtype == torch.float32, name
        error = ((got - want).norm() / want.norm()).item()
        assert error < 2 * eps, f"{name}: relative error {error:.1e}"


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_loss_kind_is_checked_with_the_valid_values_named(kind: str) -> None:
    from simpleclip.config import ConfigError, load_config

    assert load_config(None, [f"loss.kind={kind}"]).loss.kind == kind
    assert load_config(None).loss.kind == "clip"  # the default: today's loss
    with pytest.raises(ConfigError, match=r"loss\.kind must be 'clip' or 'siglip', got 'sigmoid'"):
        load_config(None, ["loss.kind=sigmoid"])
