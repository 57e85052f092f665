"""One image pipeline: training, evaluation and pretrained CLIP see the same pixels.

Run on real-sized photos (500x375, as Flickr8k's): the real slice when it is beside the
repository, and generated photo-like JPEGs everywhere. The 64-px pictures of the other data
tests are never resized, so they cannot see a difference between two resizers.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from simpleclip.cache import data_cache_dir
from simpleclip.clip_arch import CLIP_MEAN, CLIP_STD, image_transform
from simpleclip.data import ImagePreprocessing, build_transforms, denormalize, load_rgb
from simpleclip.data.image_cache import build_image_cache
from simpleclip.data.transforms import after_eval_view, resize_and_crop

PREPROCESSINGS = {
    "imagenet": ImagePreprocessing(),  # 224 px, short side 256, bicubic
    "clip": ImagePreprocessing(input_size=224, mean=CLIP_MEAN, std=CLIP_STD, crop_pct=1.0),
    "timm-0.95-bilinear": ImagePreprocessing(
        input_size=160, interpolation="bilinear", crop_pct=0.95
    ),
}


def write_photos(folder: Path, n: int = 6) -> list[str]:
    """Photo-like JPEGs: smooth gradients, fine stripes (which alias if shrunk naively), noise."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    names = []
    for i in range(n):
        width, height = (500, 375) if i % 3 else (375, 500)  # one in three is a portrait
        y, x = np.mgrid[0:height, 0:width] / max(width, height)
        phase = rng.uniform(0, 2 * np.pi, 3)
        pixels = np.stack([np.sin(6 * x + 4 * y + p) for p in phase], -1) * 80 + 128
        stripes = np.sin(x * width * rng.uniform(1.5, 2.8))[..., None] * 60  # 2-4 px period
        pixels[height // 3 :, : width // 2] += stripes[height // 3 :, : width // 2]
        pixels += rng.normal(0, 8, pixels.shape)
        names.append(f"photo_{i}.jpg")
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / names[-1], quality=90)
    return names


@pytest.fixture(params=["generated", "flickr8k"])
def photos(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch) -> tuple[Path, list]:
    """(images folder, names): 6 generated photos, or 6 of the real slice (read-only)."""
    monkeypatch.setenv("SIMPLECLIP_CACHE", str(tmp_path / "user-cache"))
    if request.param == "generated":
        return tmp_path / "Images", write_photos(tmp_path / "Images")
    images = request.getfixturevalue("shared_flickr") / "Images"
    return images, sorted(p.name for p in images.glob("*.jpg"))[:6]


def eval_view(path: Path, pre: ImagePreprocessing) -> np.ndarray:
    """What evaluation, search and zero-shot feed the model, back in uint8: (S, S, 3)."""
    tensor = build_transforms(pre, train=False)(image=np.asarray(load_rgb(path)))["image"]
    return denormalize(tensor, pre).astype(int)


@pytest.mark.parametrize("name", PREPROCESSINGS)
def test_eval_view_equals_the_cached_training_view(photos, name: str, tmp_path: Path) -> None:
    """The image cache + the training steps after the resize, augmentation off, give the eval
    view's pixels."""
    images, names = photos
    pre = PREPROCESSINGS[name]
    cache = build_image_cache(images, names, pre, data_cache_dir(images.parent))
    assert Path(cache.filename).is_relative_to(tmp_path)  # read-only data: the user cache
    no_augment = build_transforms(pre, train=True, crop_scale=(1.0, 1.0), color_jitter=0.0)
    finish, _ = after_eval_view(no_augment)
    for row, image in enumerate(names):
        training = denormalize(finish(image=np.array(cache[row]))["image"], pre).astype(int)
        evaluation = eval_view(images / image, pre)
        assert evaluation.shape == training.shape == (pre.input_size, pre.input_size, 3)
        assert np.abs(evaluation - training).max() <= 1, (name, image)


@pytest.mark.parametrize("name", PREPROCESSINGS)
def test_eval_view_equals_the_decoded_training_view(photos, name: str) -> None:
    """Training without a cache, augmentation off, also gives the eval view's pixels."""
    images, names = photos
    pre = PREPROCESSINGS[name]
    no_augment = build_transforms(pre, train=True, crop_scale=(1.0, 1.0), color_jitter=0.0)
    for image in names[:3]:
        tensor = no_augment(image=np.asarray(load_rgb(images / image)))["image"]
        training = denormalize(tensor, pre).astype(int)
        assert np.abs(eval_view(images / image, pre) - training).max() <= 1, (name, image)


@pytest.mark.parametrize("name", PREPROCESSINGS)
def test_the_one_resize_is_torchvisions_resize_and_centre_crop(photos, name: str) -> None:
    """Pixel for pixel what timm's eval transform and OpenAI's CLIP were trained on."""
    images, names = photos
    pre = PREPROCESSINGS[name]
    reference = T.Compose(
        [
            T.Resize(
                math.floor(pre.input_size / pre.crop_pct), T.InterpolationMode(pre.interpolation)
            ),
            T.CenterCrop(pre.input_size),
        ]
    )
    for image in names[:3]:
        picture = load_rgb(images / image)
        assert np.array_equal(
            resize_and_crop(np.asarray(picture), pre), np.asarray(reference(picture))
        )


def test_clip_image_transform_is_openais_recipe(photos) -> None:
    """``clip_arch.image_transform`` = OpenAI's ``_transform`` (written here in torchvision)."""
    images, names = photos
    openai = T.Compose(
        [
            T.Resize(224, interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(224),
            T.ToTensor(),
            T.Normalize(CLIP_MEAN, CLIP_STD),
        ]
    )
    ours = image_transform(224)
    for image in names[:3]:
        picture = load_rgb(images / image)
        torch.testing.assert_close(ours(picture), openai(picture), atol=1e-5, rtol=0)


def test_shrinking_antialiases_fine_stripes() -> None:
    """One-pixel stripes shrunk 3.3x turn grey; an unfiltered resize would show moire.

    The stripes' own standard deviation is 127.5; OpenCV's cubic or linear resize, which does
    not filter before shrinking, keeps 75-90 of it.
    """
    stripes = np.zeros((375, 500, 3), dtype=np.uint8)
    stripes[:, ::2] = 255  # 1 px white, 1 px black
    for interpolation, most in (("bicubic", 5), ("bilinear", 10), ("area", 40)):
        pre = ImagePreprocessing(input_size=112, interpolation=interpolation, crop_pct=1.0)
        out = resize_and_crop(stripes, pre)
        assert out.shape == (112, 112, 3)
        assert out.std() < most, interpolation


def test_a_picture_declaring_too_many_pixels_is_refused_before_decoding(tmp_path: Path) -> None:
    import resource

    from simpleclip.data import ImageLoadError
    from simpleclip.data.images import MAX_PIXELS

    bomb = tmp_path / "bomb.png"
    Image.new("1", (13_000, 13_000)).save(bomb)  # ~20 KB on disk, 169 Mpx declared
    assert bomb.stat().st_size < 100_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ImageLoadError, match=r"bomb\.png is 13000 x 13000 pixels, over 64"):
        load_rgb(bomb)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 100  # not decoded (decoding it takes ~500 MB as RGB)
    fine = tmp_path / "fine.png"
    Image.new("RGB", (MAX_PIXELS // 8_000, 8_000 // 1000)).save(fine)  # under the cap: decodes
    assert load_rgb(fine).mode == "RGB"


def transparent_picture() -> Image.Image:
    """RGBA, 80x60: a red square on a transparent background whose hidden colour is green."""
    picture = Image.new("RGBA", (80, 60), (0, 200, 0, 0))
    picture.paste((220, 20, 20, 255), (30, 20, 50, 40))
    return picture


def test_a_transparent_picture_is_one_tensor_and_one_embedding_on_every_path(
    tmp_path: Path, synthetic_root: Path, tiny_tokenizer
) -> None:
    """File or image in memory; dataset, search, zero-shot or CLIP's transform: the
    transparent background is white, and every path gives the same tensor and embedding."""
    import pandas as pd

    from simpleclip.clip_arch.preprocess import clip_preprocessing
    from simpleclip.config import load_config
    from simpleclip.data import CaptionDataset, eval_tensor
    from simpleclip.inference import embed_images, embed_pictures
    from simpleclip.model import build_model
    from simpleclip.search import ImageIndex
    from simpleclip.zeroshot import encode_pictures

    folder = tmp_path / "pictures"
    folder.mkdir()
    picture = transparent_picture()
    picture.save(folder / "square.png")

    def dataset_tensor(pre: ImagePreprocessing) -> torch.Tensor:
        table = pd.DataFrame({"image": ["square.png"], "caption": ["a red square"]})
        transform = build_transforms(pre, train=False)
        return CaptionDataset(table, folder, tiny_tokenizer, transform).load_image(0)

    torch.manual_seed(0)
    config = load_config("synthetic_tiny", [f"data.root={synthetic_root}"])
    model = build_model(config, tokenizer=tiny_tokenizer).eval()
    pre = model.image_encoder.preprocessing
    from_dataset = dataset_tensor(pre)
    corner = denormalize(from_dataset, pre)[0, 0]
    assert corner.tolist() == [255, 255, 255]  # transparent -> white, not the hidden green
    for other in (eval_tensor(picture, pre), eval_tensor(np.asarray(picture), pre)):
        torch.testing.assert_close(other, from_dataset, atol=0, rtol=0)
    clip = clip_preprocessing(48)
    torch.testing.assert_close(image_transform(48)(picture), dataset_tensor(clip), atol=0, rtol=0)

    expected = embed_images(model, from_dataset[None])
    index = ImageIndex.build(model, folder, cache=False, progress=False)
    from_memory, _ = embed_pictures(model, [picture])  # search_image's path for an image
    from_zeroshot = encode_pictures(model, [picture, np.asarray(picture)])
    for embeds in (index.image_embeds, from_memory, from_zeroshot[:1], from_zeroshot[1:]):
        torch.testing.assert_close(embeds, expected)
    assert index.search_image(picture, top_k=1)[0].score == pytest.approx(1.0, abs=1e-5)
