"""Check our CLIP against ``transformers`` on the real pretrained weights (needs the internet).

Loads a hub CLIP (``openai/clip-vit-base-patch32`` by default) both as
``transformers.CLIPModel`` and, through ``clip_arch.from_hf``, as our model; compares the
tokenizers, the image preprocessing, the features and the logits; and runs the classic check
that the COCO photo of two cats (val2017 000000039769) is closer to "a photo of a cat" than to
"a photo of a dog". Run it with ``simpleclip validate-clip``
(options: ``simpleclip.cli.validate_clip``). Offline it stops at once with a message. Taught in
``notebooks/09_clip_from_scratch.ipynb``.
"""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from simpleclip.clip_arch.convert import from_hf
from simpleclip.clip_arch.preprocess import image_transform, load_image
from simpleclip.clip_arch.tokenizer import BPETokenizer

PROMPTS = ["a photo of a cat", "a photo of a dog"]


def load_references(args: argparse.Namespace) -> dict[str, Any]:
    """Download (or read from the cache) the hub model, its tokenizer and processor, the image."""
    from transformers import CLIPModel, CLIPProcessor

    hf_model = CLIPModel.from_pretrained(
        args.model, cache_dir=args.cache_dir, trust_remote_code=False
    ).eval()
    processor = CLIPProcessor.from_pretrained(
        args.model, cache_dir=args.cache_dir, trust_remote_code=False
    )
    # transformers pads with the end token; so do we here, to compare ids one for one.
    tokenizer = BPETokenizer.from_pretrained(args.model, cache_dir=args.cache_dir)
    tokenizer.pad_id = tokenizer.eot_id
    return dict(hf=hf_model, processor=processor, tokenizer=tokenizer, image=load_image(args.image))


@torch.no_grad()
def compare(refs: dict[str, Any], atol: float) -> list[tuple[str, float, bool]]:
    """Measure the differences between the two implementations: (check, value, passed) rows."""
    hf, tokenizer, image = refs["hf"], refs["tokenizer"], refs["image"]
    ours = from_hf(hf)
    inputs = refs["processor"](text=PROMPTS, images=image, return_tensors="pt", padding=True)
    ids, pixels = inputs["input_ids"], inputs["pixel_values"]  # (2, L), (1, 3, 224, 224)
    text = max_diff(hf.get_text_features(input_ids=ids), ours.encode_text(ids, normalize=False))
    image_features = hf.get_image_features(pixel_values=pixels)
    image_diff = max_diff(image_features, ours.encode_image(pixels, normalize=False))
    logits = max_diff(hf(**inputs).logits_per_image, ours(pixels, ids)[0])
    # Our whole pipeline on its own: our tokenizer, our preprocessing, our model.
    our_ids = tokenizer(PROMPTS, context_length=ids.shape[1])
    our_pixels = image_transform(pixels.shape[-1])(image)[None]
    p_cat, p_dog = ours(our_pixels, our_ids)[0].softmax(dim=-1)[0].tolist()
    scale = hf.logit_scale.exp().item()  # logits are cosines times this (100 when pretrained)
    return [
        ("token ids that differ", float((our_ids != ids).sum()), bool((our_ids == ids).all())),
        ("pixels, ours vs CLIPProcessor (info)", max_diff(our_pixels, pixels), True),
        ("text features max |diff|", text, text <= atol),
        ("image features max |diff|", image_diff, image_diff <= atol),
        ("logits_per_image max |diff|", logits, logits <= atol * scale),
        ("P(a photo of a cat) > P(... dog)", p_cat, p_cat > p_dog),
    ]


def max_diff(reference: Any, ours: torch.Tensor) -> float:
    """Largest absolute difference; ``reference`` may be a transformers output object.

    ``get_*_features`` return a tensor in transformers 4 and, in 5, an output whose
    ``pooler_output`` holds the projected features.
    """
    if not isinstance(reference, torch.Tensor):
        reference = reference.pooler_output
    return (reference - ours).abs().max().item()


def hub_available(model: str, cache_dir: str | None, timeout: float = 5.0) -> bool:
    """True if ``model`` is a local folder, is cached, or the hub answers within ``timeout`` s.

    Checked first because ``from_pretrained`` retries a dead network for half a minute.
    """
    from huggingface_hub import constants, try_to_load_from_cache

    if Path(model).is_dir():
        return True
    if isinstance(try_to_load_from_cache(model, "config.json", cache_dir=cache_dir), str):
        return True
    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        port = url.port or (443 if url.scheme == "https" else 80)
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def run(args: argparse.Namespace) -> int:
    """Run the comparison; 0 if everything matches, 1 if not, 2 if the inputs cannot be loaded."""
    if not hub_available(args.model, args.cache_dir):
        print(
            f"validate-clip: {args.model!r} is not in the Hugging Face cache and the hub cannot\n"
            "  be reached (offline, or HF_HUB_OFFLINE=1). This check downloads the pretrained\n"
            "  model once (about 600 MB for ViT-B/32): run it with internet access.",
            file=sys.stderr,
        )
        return 2
    try:
        refs = load_references(args)
    except Exception as err:  # unknown model id, unreadable image, network dropped...
        reason = (str(err).strip().splitlines() or [""])[0]
        print(
            f"validate-clip: could not load the model {args.model!r} or the image "
            f"{args.image!r}.\n  {type(err).__name__}: {reason}\n"
            "  Offline with a cached model? Pass --image with a local photo of cats.",
            file=sys.stderr,
        )
        return 2
    rows = compare(refs, args.atol)
    for check, value, passed in rows:
        print(f"{'ok  ' if passed else 'FAIL'} {check:36s} {value:.3g}")
    return 0 if all(passed for _, _, passed in rows) else 1
