"""OpenAI's CLIP from scratch: parity with ``transformers.CLIPModel``, weight-loading checks,
the causal mask, EOT pooling, the ResNet tower and the offline behaviour of ``validate``.

Every Hugging Face model here is tiny and randomly initialised: nothing is downloaded.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from simpleclip.cli import main
from simpleclip.clip_arch import (
    CLIP,
    BPETokenizer,
    SelfAttention,
    StateDictMismatch,
    build_clip,
    causal_mask,
    config_from_hf,
    eot_positions,
    from_hf,
    from_hf_state_dict,
    from_openai_state_dict,
    get_config,
    learn_merges,
)
from simpleclip.encoders import AttentionPool2d

CORPUS = [
    "a photo of a cat",
    "a photo of a dog",
    "two dogs are playing in the snow",
    "a black cat sleeping on a red sofa",
]
TEXTS = ["a cat", "two black dogs are sleeping on a red sofa in the snow", "sofa", "a photo"]
# Two tiny configurations that differ in every size, the activation and the pooling rule.
HF_CONFIGS = {
    "quick_gelu-argmax-patch8": dict(
        text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4),
        vision=dict(
            hidden_size=32,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
        ),
        projection_dim=16,
        legacy_eos=True,  # eos_token_id=2: transformers pools at argmax(ids), like OpenAI
    ),
    "gelu-eos_id-patch16": dict(
        text=dict(
            hidden_size=48,
            intermediate_size=96,
            num_hidden_layers=3,
            num_attention_heads=3,
            hidden_act="gelu",
        ),
        vision=dict(
            hidden_size=64,
            intermediate_size=256,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=48,
            patch_size=16,
            hidden_act="gelu",
        ),
        projection_dim=24,
        legacy_eos=False,  # pools at the first eos_token_id; ids above it exist in the vocab
    ),
}


@pytest.fixture(scope="module")
def tok() -> BPETokenizer:
    return BPETokenizer(learn_merges(CORPUS, 60))


def make_hf_model(tok: BPETokenizer, spec: dict, seed: int = 0):
    """A random ``transformers.CLIPModel`` whose every parameter differs from its init."""
    from transformers import CLIPConfig, CLIPModel

    text = dict(spec["text"], bos_token_id=tok.sot_id, pad_token_id=0)
    # The second config has two "added tokens" after the end token, so argmax != first EOT.
    text["vocab_size"] = tok.vocab_size + (0 if spec["legacy_eos"] else 2)
    text["eos_token_id"] = 2 if spec["legacy_eos"] else tok.eot_id
    config = CLIPConfig(
        text_config=text, vision_config=spec["vision"], projection_dim=spec["projection_dim"]
    )
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    with torch.no_grad():  # zero biases and unit LayerNorms would hide a swapped mapping
        for param in model.parameters():
            param.add_(0.02 * torch.randn_like(param))
        model.logit_scale.fill_(math.log(1 / 0.07) + 0.3)
    return model


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@pytest.mark.parametrize("name", HF_CONFIGS)
def test_parity_with_transformers(tok: BPETokenizer, name: str) -> None:
    spec = HF_CONFIGS[name]
    hf = make_hf_model(tok, spec)
    ours = from_hf(hf)
    ids = tok(TEXTS)  # (4, 77), padded with 0
    if not spec["legacy_eos"]:
        ids = tok(TEXTS, context_length=20)  # padded to 20 only: L < 77 works too
        ids[1, 3] = tok.vocab_size + 1  # an added token above <|endoftext|>
    mask = (torch.arange(ids.shape[1]) <= eot_positions(ids, tok.eot_id)[:, None]).long()
    size = spec["vision"]["image_size"]
    pixels = torch.randn(3, 3, size, size)
    with torch.no_grad():
        out = hf(input_ids=ids, pixel_values=pixels, attention_mask=mask)
        # transformers 5 returns an output object whose pooler_output is projected; 4 a tensor
        text_ref = features(hf.get_text_features(input_ids=ids, attention_mask=mask))
        image_ref = features(hf.get_image_features(pixel_values=pixels))
        text_features = ours.encode_text(ids, normalize=False)
        image_features = ours.encode_image(pixels, normalize=False)
        logits_per_image, logits_per_text = ours(pixels, ids)
    diffs = {
        "text": max_abs(text_features, text_ref),
        "image": max_abs(image_features, image_ref),
        "logits": max_abs(logits_per_image, out.logits_per_image),
    }
    print(f"\nparity {name}: max |diff| " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    exact = dict(atol=1e-5, rtol=0)
    torch.testing.assert_close(text_features, text_ref, **exact)
    torch.testing.assert_close(image_features, image_ref, **exact)
    torch.testing.assert_close(ours.encode_text(ids), out.text_embeds, **exact)
    torch.testing.assert_close(ours.encode_image(pixels), out.image_embeds, **exact)
    torch.testing.assert_close(logits_per_image, out.logits_per_image, **exact)
    torch.testing.assert_close(logits_per_text, out.logits_per_text, **exact)
    assert text_features.abs().max() > 0.1 and logits_per_image.std() > 0.01  # not trivially 0


def features(output: object) -> torch.Tensor:
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def test_config_from_hf_reads_every_size(tok: BPETokenizer) -> None:
    config = config_from_hf(make_hf_model(tok, HF_CONFIGS["gelu-eos_id-patch16"]).config)
    text, vision = config.text, config.vision
    assert (config.embed_dim, text.width, text.layers, text.heads, text.mlp_ratio) == (
        24,
        48,
        3,
        3,
        2,
    )
    assert (text.activation, text.eot_token_id, text.vocab_size) == (
        "gelu",
        tok.eot_id,
        tok.vocab_size + 2,
    )
    assert (vision.image_size, vision.patch_size, vision.width, vision.layers) == (48, 16, 64, 1)
    legacy = config_from_hf(make_hf_model(tok, HF_CONFIGS["quick_gelu-argmax-patch8"]).config)
    assert legacy.text.eot_token_id is None and legacy.text.activation == "quick_gelu"


def test_bad_state_dicts_are_refused_with_a_list(tok: BPETokenizer) -> None:
    hf = make_hf_model(tok, HF_CONFIGS["quick_gelu-argmax-patch8"])
    config = config_from_hf(hf.config)
    state = hf.state_dict()
    from_hf_state_dict(state, config)  # the intact one loads

    broken = dict(state)
    del broken["text_model.final_layer_norm.weight"]
    broken["vision_model.embeddings.position_embedding.weight"] = torch.zeros(5, 32)
    with pytest.raises(StateDictMismatch) as err:
        from_hf_state_dict(broken, config)
    message = str(err.value)
    assert "missing (1): text.ln_final.weight" in message
    assert "visual.positional_embedding: checkpoint (5, 32) vs model (17, 32)" in message

    # An unknown name and an incomplete q/k/v triple, reported in one message.
    broken = dict(state, **{"text_model.pooler.weight": torch.zeros(3)})
    del broken["text_model.encoder.layers.1.self_attn.k_proj.bias"]
    with pytest.raises(StateDictMismatch) as err:
        from_hf_state_dict(broken, config)
    message = str(err.value)
    assert "missing (1): text.transformer.resblocks.1.attn.in_proj_bias" in message
    assert "unexpected (3): " in message and "text_model.pooler.weight" in message
    assert "text_model.encoder.layers.1.self_attn.q_proj.bias" in message


def test_eot_pooling_rules() -> None:
    ids = torch.tensor([[8, 5, 9, 0, 0], [8, 11, 5, 9, 9]])  # 9 = end token, 11 = added token
    assert eot_positions(ids).tolist() == [2, 1]  # OpenAI: the largest id
    assert eot_positions(ids, eot_token_id=9).tolist() == [2, 3]  # first end token


def test_causal_mask_hides_the_future() -> None:
    inf = float("-inf")
    expected = torch.tensor([[0, inf, inf], [0, 0, inf], [0, 0, 0]])
    assert torch.equal(causal_mask(3), expected)

    torch.manual_seed(0)
    text = build_clip("tiny-vit").text.eval()
    ids = torch.randint(1, 500, (2, 12))
    changed = ids.clone()
    changed[:, 7] = (ids[:, 7] + 1) % 500  # only position 7 differs
    with torch.no_grad():
        before, after = text.forward_features(ids), text.forward_features(changed)
    torch.testing.assert_close(before[:, :7], after[:, :7], atol=0, rtol=0)  # the past: same
    assert (before[:, 7:] - after[:, 7:]).abs().amax(dim=-1).min() > 1e-4  # the rest: moved


def test_self_attention_matches_torch_multihead_attention() -> None:
    torch.manual_seed(0)
    ours, reference = SelfAttention(16, 4), nn.MultiheadAttention(16, 4, batch_first=True)
    with torch.no_grad():
        nn.init.normal_(ours.in_proj_bias)
    reference.load_state_dict(ours.state_dict())  # same parameter names, same layout
    x = torch.randn(2, 6, 16)
    for mask in (None, causal_mask(6)):
        expected, _ = reference(x, x, x, attn_mask=mask, need_weights=False)
        torch.testing.assert_close(ours(x, mask), expected, atol=1e-6, rtol=1e-5)


def test_encoders_normalise_and_logit_scale_starts_at_temperature_0_07() -> None:
    model = build_clip("tiny-vit").eval()
    assert model.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    ids = torch.tensor([[598, 40, 41, 599, 0], [598, 42, 599, 0, 0]])
    with torch.no_grad():
        image_embeds = model.encode_image(torch.randn(3, 3, 32, 32))
        text_embeds = model.encode_text(ids)
        logits_per_image, logits_per_text = model(torch.randn(3, 3, 32, 32), ids)
    assert image_embeds.shape == (3, 16) and text_embeds.shape == (2, 16)
    torch.testing.assert_close(image_embeds.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(text_embeds.norm(dim=-1), torch.ones(2))
    assert logits_per_image.shape == (3, 2) and torch.equal(logits_per_text, logits_per_image.T)
    with pytest.raises(ValueError, match="32x32"):
        model.encode_image(torch.randn(1, 3, 64, 64))


def test_resnet_tower_shapes_and_anti_aliasing() -> None:
    model = build_clip("tiny-rn").eval()  # stem width 8, one bottleneck per stage, 64 px
    visual = model.visual
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert visual.stem(x).shape == (2, 8, 16, 16)
        assert visual.layer1(visual.stem(x)).shape == (2, 32, 16, 16)
        assert visual.forward_features(x).shape == (2, 256, 2, 2)  # 32 * width, 64 / 32
        assert model.encode_image(x).shape == (2, 16)
    strided = [
        n for n, m in visual.named_modules() if isinstance(m, nn.Conv2d) and m.stride != (1, 1)
    ]
    assert strided == ["conv1"]  # only the stem's first conv strides; blocks average-pool
    assert isinstance(visual.layer2[0].avgpool, nn.AvgPool2d)
    assert isinstance(visual.layer2[0].downsample[0], nn.AvgPool2d)


def test_resnet_pools_with_the_encoders_attention_pool_under_openai_names() -> None:
    # One attention pool for both towers; its oracle is in test_image_encoders.py.
    pool = build_clip("tiny-rn").visual.attnpool
    assert isinstance(pool, AttentionPool2d)
    assert set(pool.state_dict()) == {
        "positional_embedding",
        *(
            f"{proj}.{p}"
            for proj in ("q_proj", "k_proj", "v_proj", "c_proj")
            for p in ("weight", "bias")
        ),
    }
    assert pool.positional_embedding.shape == (2 * 2 + 1, 256)  # 64 px / 32 = 2, 32 * width
    assert pool.c_proj.out_features == 16  # the pool projects straight into the shared space


def test_gradients_reach_every_parameter_of_the_resnet_clip() -> None:
    torch.manual_seed(0)
    model = build_clip("tiny-rn").train()
    with torch.no_grad():  # OpenAI zero-inits bn3 so blocks start as identities; undo that
        for name, param in model.named_parameters():
            if name.endswith("bn3.weight"):
                param.fill_(1.0)
    ids = torch.tensor([[598, 40, 41, 599], [598, 42, 599, 0], [598, 7, 8, 599]])
    logits_per_image, logits_per_text = model(torch.randn(3, 3, 64, 64), ids)
    labels = torch.arange(3)
    loss = (
        F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)
    ) / 2
    loss.backward()
    unused = {"text.token_embedding.weight"}  # only 9 of 600 rows are used; checked below
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        if name not in unused:
            assert param.grad.abs().sum() > 0, f"no gradient reaches {name}"
    assert model.text.token_embedding.weight.grad[40].abs().sum() > 0


@pytest.mark.parametrize("tower", ["vit", "resnet"])
def test_openai_checkpoint_layout_round_trips(tower: str) -> None:
    config = get_config("tiny-vit" if tower == "vit" else "tiny-rn")
    config.text.width, config.text.heads = 64, 1  # OpenAI's rule: 64 dimensions per head
    config.vision.width, config.vision.heads = (64, 1) if tower == "vit" else (8, 4)
    torch.manual_seed(0)
    model = CLIP(config).eval()
    # OpenAI's names: the text tower at the top level, plus the JIT archive's three scalars.
    state = {k.removeprefix("text."): v for k, v in model.state_dict().items()}
    state.update(input_resolution=torch.tensor(224), context_length=torch.tensor(77))
    loaded = from_openai_state_dict(state)
    assert loaded.config == config
    x, ids = (
        torch.randn(2, 3, config.vision.image_size, config.vision.image_size),
        torch.tensor([[598, 3, 599]]),
    )
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, ids), model(x, ids), atol=0, rtol=0)


def test_validate_fails_fast_and_clearly_offline(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = ["--cache-dir", str(tmp_path), "--model", "openai/clip-vit-base-patch32"]
    assert main(["validate-clip", *args]) == 2
    err = capsys.readouterr().err
    assert "not in the Hugging Face cache" in err and "Traceback" not in err


def test_validate_runs_end_to_end_on_a_local_tiny_model(
    tok: BPETokenizer, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from PIL import Image
    from transformers import CLIPImageProcessor, CLIPProcessor, CLIPTokenizer

    # A local folder laid out like the hub repo: model, processor, vocab.json + merges.txt.
    folder = tmp_path / "tiny-clip"
    vocab_file, merges_file = tok.save(folder)
    make_hf_model(tok, HF_CONFIGS["quick_gelu-argmax-patch8"]).save_pretrained(folder)
    CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size=32),
        tokenizer=CLIPTokenizer(vocab=str(vocab_file), merges=str(merges_file)),
    ).save_pretrained(folder)
    image = tmp_path / "cats.png"
    Image.fromarray((torch.rand(40, 52, 3) * 255).byte().numpy()).save(image)

    code = main(["validate-clip", "--model", str(folder), "--image", str(image), "--atol", "1e-5"])
    lines = capsys.readouterr().out.splitlines()
    assert code in (0, 1)  # 1 when the random model prefers "dog"
    for check in ("token ids that differ", "text features", "image features", "logits_per_image"):
        assert any(line.startswith("ok") and check in line for line in lines), (check, lines)
    pixels = next(line for line in lines if "pixels" in line)
    assert float(pixels.split()[-1]) < 0.1  # same recipe as CLIPProcessor, another resizer
