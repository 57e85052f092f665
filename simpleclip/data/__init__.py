"""The data layer: Flickr8k (real or synthetic) from caption files to training batches.

``captions`` reads both Flickr8k caption formats (and any ``image,caption`` CSV), ``formats``
reads Flickr30k and COCO Captions into the same table (Karpathy's splits when present),
``splits`` assigns images to train/dev/test,
``images`` decodes photos safely (any picture -> RGB pixels: ``to_pixels``), ``transforms``
prepares pixels for an encoder (one picture's eval input: ``eval_tensor``), ``dataset``
builds the PyTorch dataset, ``synthetic`` writes the built-in shapes set and ``download``
fetches the real archives. Past one folder: ``shards`` streams the same pairs from webdataset
tar shards (img2dataset's layout; ``shard_plan`` splits them over ranks and workers) and
``shard_writer`` writes a folder as shards (``docs/scale.md``); they are imported where used,
and webdataset only then. Taught in ``notebooks/01_flickr8k_dataset.ipynb``.
"""

from simpleclip.data.captions import CaptionFormatError, read_captions
from simpleclip.data.dataset import (
    CaptionDataset,
    find_captions_file,
    find_images_dir,
    load_split,
    pad_token_ids,
    tokenize_captions,
)
from simpleclip.data.images import (
    ImageLoadError,
    Picture,
    find_unreadable_images,
    load_rgb,
    to_pixels,
)
from simpleclip.data.splits import SPLIT_FILES, split_images
from simpleclip.data.synthetic import make_synthetic
from simpleclip.data.transforms import (
    ImagePreprocessing,
    build_transforms,
    denormalize,
    eval_tensor,
)

__all__ = [
    "SPLIT_FILES",
    "CaptionDataset",
    "CaptionFormatError",
    "ImageLoadError",
    "ImagePreprocessing",
    "Picture",
    "build_transforms",
    "denormalize",
    "eval_tensor",
    "find_captions_file",
    "find_images_dir",
    "find_unreadable_images",
    "load_rgb",
    "load_split",
    "make_synthetic",
    "pad_token_ids",
    "read_captions",
    "split_images",
    "to_pixels",
    "tokenize_captions",
]
