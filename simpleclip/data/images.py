"""Open any photo as a plain RGB image, or say clearly which file is broken.

Real collections hold grayscale, palette, CMYK and transparent images; an encoder wants
3-channel RGB. Transparent pixels are composited onto white, because their hidden colour
values are arbitrary. Every path that turns a picture into pixels (training, evaluation,
search, zero-shot, pretrained CLIP) goes through ``to_pixels``, so a file, an image in memory
and an array of the same picture give the same pixels.
Taught in ``notebooks/01_flickr8k_dataset.ipynb``.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from simpleclip.progress import progress_bar

# a file, a PIL image, an HWC uint8 array, or a file's bytes (a sample of a tar shard)
Picture = str | Path | Image.Image | np.ndarray | bytes

# How to skip unreadable pictures instead of failing, from the command line and from Python.
SKIP_HINT = "--set data.skip_bad_images=true (simpleclip train), skip_bad_images=True (Python)"


# A picture declaring more pixels is refused before it is decoded: a 20 KB PNG can declare
# 13,000 x 13,000 pixels and take 1.8 GB of memory to decode (the app refuses such uploads too).
MAX_PIXELS = 64_000_000
TOO_LARGE_FIX = f"Shrink it to at most {MAX_PIXELS // 1_000_000} megapixels, or skip: {SKIP_HINT}."


class ImageLoadError(RuntimeError):
    """An image file that is missing, truncated or not an image; the message names it."""


def refuse_too_many_pixels(path: str | Path, width: int, height: int) -> None:
    """Raise ``ImageLoadError`` when a picture declares more than ``MAX_PIXELS``."""
    if width * height > MAX_PIXELS:
        raise ImageLoadError(
            f"{path} is {width} x {height} pixels, over {MAX_PIXELS // 1_000_000} megapixels; "
            f"not decoded. {TOO_LARGE_FIX}"
        )


def load_rgb(path: str | Path | io.BytesIO) -> Image.Image:
    """Decode ``path`` (or a file's bytes in memory) fully and return it as an RGB ``PIL.Image``.

    Raises:
        ImageLoadError: the file is missing or cannot be decoded (names the file).
    """
    path = path if isinstance(path, io.BytesIO) else Path(path)
    name = "a picture's bytes" if isinstance(path, io.BytesIO) else path  # for the messages
    try:
        with warnings.catch_warnings():  # PIL's bomb warning: refused below, with a reason
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
        with image:
            refuse_too_many_pixels(name, *image.size)  # read from the header, before decoding
            image.load()  # decode now, so a truncated file fails here and not later
            return to_rgb(image)
    except Image.DecompressionBombError as err:  # PIL's own guard, at twice its warning size
        raise ImageLoadError(f"{name} is too large to decode ({err}). {TOO_LARGE_FIX}") from err
    except FileNotFoundError as err:
        raise ImageLoadError(f"Image file not found: {path}. To skip it: {SKIP_HINT}.") from err
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise ImageLoadError(
            f"Cannot decode image {name}: {err}. Re-download it, delete it, or skip "
            f"unreadable images: {SKIP_HINT}."
        ) from err


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB; transparent pixels composited onto white (for in-memory images)."""
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode.startswith("I;16") or image.mode == "I":  # 16-bit grey: PIL would clip at 255
        grey = np.asarray(image, dtype=np.uint32) >> 8  # 0..65535 -> 0..255
        return Image.fromarray(grey.clip(0, 255).astype(np.uint8)).convert("RGB")
    return image.convert("RGB")


def to_pixels(picture: Picture) -> np.ndarray:
    """Any picture -> (H, W, 3) uint8 RGB pixels: a file (or its bytes) decoded by ``load_rgb``,
    an image in memory or an array (grey (H, W), RGBA (H, W, 4)) converted by ``to_rgb``.

    Raises:
        ImageLoadError: a file that is missing or cannot be decoded.
        ValueError: an array that is not uint8.
    """
    if isinstance(picture, np.ndarray):
        if picture.dtype != np.uint8:
            raise ValueError(f"A picture array must be uint8 (H, W[, C]), got {picture.dtype}.")
        if picture.ndim == 3 and picture.shape[2] == 3:
            return picture
        picture = Image.fromarray(picture)  # grey or RGBA: converted like an image
    elif isinstance(picture, bytes):
        return np.asarray(load_rgb(io.BytesIO(picture)))
    elif not isinstance(picture, Image.Image):
        return np.asarray(load_rgb(picture))
    return np.asarray(to_rgb(picture))


def find_unreadable_images(paths: Iterable[Path], progress: bool = True) -> list[Path]:
    """Decode every file once and return those that fail (slow: a full pass over the data)."""
    paths = list(paths)
    bad = []
    for path in progress_bar(paths, desc="checking images", disable=not progress, leave=False):
        try:
            load_rgb(path)
        except ImageLoadError:
            bad.append(path)
    return bad


def thumbnail(path: str | Path, size: int = 256) -> Image.Image:
    """The picture at ``path`` as RGB, shrunk to at most ``size`` pixels on its longer side.

    The aspect ratio is kept and small pictures are not enlarged. For showing many pictures at
    once (the app's gallery, ``simpleclip search --grid``): full-size photos make slow pages and
    figures.

    Raises:
        ImageLoadError: the file is missing or cannot be decoded (names the file).
    """
    picture = load_rgb(path)
    picture.thumbnail((size, size))  # in place, keeps the aspect ratio, never enlarges
    return picture
