"""Zero-shot classification: prompt ensembling, probabilities, a trained model beating chance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from simpleclip.data import ImageLoadError, load_split
from simpleclip.inference import embed_texts
from simpleclip.model import CLIPModel, build_model
from simpleclip.train import train
from simpleclip.zeroshot import (
    SHAPES_ENSEMBLE,
    SINGLE,
    build_classifier,
    classify,
    encode_pictures,
    ensemble_embeddings,
    fill_template,
    template_similarity,
)
from simpleclip.zeroshot.caption_labels import (
    caption_labels,
    top1_accuracy,
    zero_shot_on_captions,
)
from simpleclip.zeroshot.synthetic import (
    HELD_OUT_NAME,
    PAIRS,
    format_table,
    synthetic_tasks,
    template_ablation,
)


@pytest.fixture
def tiny_model(tiny_config, synthetic_root: Path, tiny_tokenizer) -> CLIPModel:
    torch.manual_seed(0)
    model = build_model(
        tiny_config(synthetic_root, Path("unused"), "train.threads=1"), tokenizer=tiny_tokenizer
    )
    with torch.no_grad():
        model.logit_scale.fill_(np.log(20.0))  # sharper than the initial 1/0.07 would not matter
    return model.eval()


def test_ensemble_normalises_each_template_before_averaging() -> None:
    # Class 0: one template gives a long vector along x, the other a short one along y.
    text_embeds = torch.tensor([[[10.0, 0.0], [0.0, 1.0]], [[0.0, 3.0], [0.0, 0.5]]])  # (C, T, E)
    reference = []
    for templates in text_embeds:  # a double loop, written out
        votes = [vector / vector.norm() for vector in templates]
        mean = sum(votes) / len(votes)
        reference.append(mean / mean.norm())
    ensembled = ensemble_embeddings(text_embeds)
    torch.testing.assert_close(ensembled, torch.stack(reference))
    torch.testing.assert_close(ensembled[0], torch.tensor([0.5**0.5, 0.5**0.5]))  # equal votes
    raw_mean_first = F.normalize(text_embeds.mean(dim=1), dim=-1)  # the long vector dominates
    assert raw_mean_first[0, 0] > 0.99 and not torch.allclose(ensembled, raw_mean_first)
    torch.testing.assert_close(ensembled.norm(dim=-1), torch.ones(2))


def test_fill_template_uses_the_right_article() -> None:
    assert fill_template("a photo of a {}.", "orange star") == "a photo of an orange star."
    assert fill_template("a photo of a {}.", "red star") == "a photo of a red star."
    assert fill_template("{}", "orange star") == "orange star"


def test_classifier_averages_the_model_embeddings_of_its_templates(tiny_model: CLIPModel) -> None:
    classes, templates = ["red circle", "orange star"], ["a {}", "a big {} on the left"]
    classifier = build_classifier(tiny_model, classes, templates)
    texts = [
        "a red circle",
        "a big red circle on the left",
        "an orange star",
        "a big orange star on the left",
    ]
    batch = tiny_model.tokenize(texts)
    with torch.no_grad():
        embeds = tiny_model.encode_text(**batch).view(2, 2, -1)
    torch.testing.assert_close(classifier.class_embeds, ensemble_embeddings(embeds))
    assert classifier.logit_scale == pytest.approx(20.0)


def test_classify_gives_sorted_probabilities_that_sum_to_one(
    tiny_model: CLIPModel, synthetic_root: Path
) -> None:
    files = sorted((synthetic_root / "Images").iterdir())[:5]
    classes = PAIRS[:7]
    everything = classify(tiny_model, files, classes, SHAPES_ENSEMBLE, top_k=len(classes))
    top3 = classify(tiny_model, files, classes, SHAPES_ENSEMBLE, top_k=3)
    assert len(everything) == len(top3) == 5
    for full, short in zip(everything, top3, strict=True):
        probabilities = [p.probability for p in full]
        assert sorted(probabilities, reverse=True) == probabilities
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)
        assert {p.label for p in full} == set(classes)
        assert short == full[:3]
    # the probabilities are the softmax of the scaled cosine similarities
    image_embeds = encode_pictures(tiny_model, files)
    classifier = build_classifier(tiny_model, classes, SHAPES_ENSEMBLE)
    expected = (20.0 * image_embeds @ classifier.class_embeds.T).softmax(dim=-1)
    got = {p.label: p.probability for p in everything[0]}
    assert [got[c] for c in classes] == pytest.approx(expected[0].tolist(), abs=1e-5)
    assert len(classify(tiny_model, files[:1], ["a", "b"], top_k=5)[0]) == 2  # k <= classes


def test_files_pictures_arrays_and_tensors_give_the_same_answer(
    tiny_model: CLIPModel, synthetic_root: Path
) -> None:
    path = sorted((synthetic_root / "Images").iterdir())[0]
    picture = Image.open(path).convert("RGB")
    embeds = [
        encode_pictures(tiny_model, [x]) for x in (path, str(path), picture, np.asarray(picture))
    ]
    for other in embeds[1:]:
        torch.testing.assert_close(other, embeds[0])
    many = encode_pictures(tiny_model, [path] * 5, batch_size=2)  # batches of 2, 2, 1
    torch.testing.assert_close(many, embeds[0].expand(5, -1))


def test_encode_pictures_refuses_a_list_with_unreadable_pictures_and_names_them(
    tiny_model: CLIPModel, synthetic_root: Path, tmp_path: Path
) -> None:
    good = sorted((synthetic_root / "Images").iterdir())[0]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a picture")
    with pytest.raises(ImageLoadError, match=r"1 of 3 pictures cannot be read: .*broken\.jpg"):
        encode_pictures(tiny_model, [good, broken, good])


@pytest.mark.parametrize(
    ("classes", "templates"),
    [([], SINGLE), (["cat", "cat"], SINGLE), (["cat", " "], SINGLE), (["cat"], ["no slot"])],
)
def test_bad_classes_or_templates_are_refused(tiny_model, classes, templates) -> None:
    with pytest.raises(ValueError, match="class name"):
        build_classifier(tiny_model, classes, templates)


def test_template_similarity_is_the_mean_cosine_of_each_class_template_pairs(
    tiny_model: CLIPModel,
) -> None:
    classes, templates = ["red circle", "orange star"], ["a {}", "a big {}", "{} on the left"]
    for features in (False, True):
        got = template_similarity(tiny_model, classes, templates, features=features)
        reference = []
        for name in classes:  # every ordered pair of different templates, written out
            embeds = [
                embed_texts(tiny_model, [fill_template(t, name)], features=features)[0]
                for t in templates
            ]
            cosines = [
                F.cosine_similarity(a, b, dim=0)
                for i, a in enumerate(embeds)
                for j, b in enumerate(embeds)
                if i != j
            ]
            reference.append(sum(cosines) / len(cosines))
        torch.testing.assert_close(got, torch.stack(reference), atol=1e-5, rtol=1e-5)
    same = template_similarity(tiny_model, classes, ["{}", "{}"])  # one sentence twice
    torch.testing.assert_close(same, torch.ones(2))
    with pytest.raises(ValueError, match="two templates"):
        template_similarity(tiny_model, classes, ["a {}"])


def test_caption_words_used_as_verbs_do_not_make_labels() -> None:
    captions = pd.DataFrame(
        {
            "image": ["flag.jpg", "surf.jpg", "hiker.jpg"],
            "caption": [
                "A baby wearing a white gown waves a flag .",  # a verb, not water
                "A surfer rides a wave in the ocean .",
                "A hiker waves to the camera in the snow .",
            ],
        }
    )
    assert caption_labels(captions) == {
        "flag.jpg": {"child"},
        "surf.jpg": {"water"},
        "hiker.jpg": {"snow"},
    }


def test_zero_shot_on_captions_returns_the_predictions_behind_each_accuracy(
    tiny_model: CLIPModel, synthetic_root: Path
) -> None:
    labels = {"circle": ("circle", "circles"), "star": ("star", "stars"), "square": ("square",)}
    sets = {"bare": ("{}",), "a photo of": ("a photo of a {}.",)}
    result = zero_shot_on_captions(tiny_model, synthetic_root, "test", labels, None, sets)
    truth = caption_labels(load_split(synthetic_root, "test"), labels)
    truths = [truth[name] for name in result["photos"]]
    assert all(truths) and len(truths) == result["n_photos"]  # only labelled photos
    files = [synthetic_root / "Images" / name for name in result["photos"]]
    for name, templates in sets.items():
        predicted = result["predictions"][name]
        assert result["accuracy"][name] == top1_accuracy(predicted, truths)
        direct = classify(tiny_model, files, list(labels), templates, top_k=1)
        assert predicted == [top[0].label for top in direct]


def test_a_briefly_trained_model_beats_chance_zero_shot(
    tiny_config, synthetic_root: Path, tmp_path: Path
):
    config = tiny_config(
        synthetic_root, tmp_path / "run", "train.epochs=4", "data.pairs=all", "train.threads=1"
    )
    threads = torch.get_num_threads()
    try:  # one thread is as fast for this tiny model, and kinder to a shared CPU
        model = train(config, progress=False).model.eval()
    finally:
        torch.set_num_threads(threads)  # train() sets it for the whole process
    # Labels from prompts, not from captions, on its own training pictures and on new ones:
    # 4 epochs on 96 pictures learn colour well and shape a little.
    tasks = {t.name: t for t in synthetic_tasks(synthetic_root, "train", fresh=60)}
    held_out = [f"{HELD_OUT_NAME}, train split", f"{HELD_OUT_NAME}, fresh pictures"]
    seen = ["shape", "colour", "colour + shape", "seen pairs, fresh pictures"]
    assert set(tasks) == {*seen, *held_out}
    assert not tasks.pop(held_out[0]).pictures  # the held-out pair is never in training
    table = template_ablation(model, list(tasks.values()), {"ensemble": SHAPES_ENSEMBLE})
    print(format_table(table))
    assert (table["ensemble"] > 2 * table["chance"]).all(), table
