"""The model card of a shared checkpoint: the ``README.md`` the Hub shows as the model's page.

Its YAML front matter is what the Hub indexes (``library_name``, tags, datasets, and the
measured Recall@K as ``model-index``); its body says what was trained, how well it retrieves,
and how to load it in three lines. Built with ``huggingface_hub``'s ``ModelCard`` from the
checkpoint's ``config.yaml`` and the ``metrics_<split>.json`` files ``simpleclip eval`` writes
next to it. Used by ``simpleclip.hub``.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from simpleclip.checkpoint import CARD, CONFIG, METRICS
from simpleclip.config import CLIP_TOWERS, Config, load_config, save_config
from simpleclip.paths import is_local_name
from simpleclip.recall import KS, recall_cells, recall_key

DIRECTIONS = {"t2i": "Text-to-image retrieval", "i2t": "Image-to-text retrieval"}
KNOWN_DATASETS = ("flickr8k", "flickr30k", "coco")  # recognised in the data folder's name


def read_metrics(directory: str | Path) -> dict[str, dict]:
    """``{split: metrics}`` from the ``metrics_<split>.json`` files ``simpleclip eval`` wrote.

    Files without both retrieval directions (another tool's JSON) are left out.
    """
    found = {}
    for path in sorted(Path(directory).glob(METRICS)):
        metrics = json.loads(path.read_text())
        if isinstance(metrics, dict) and all(isinstance(metrics.get(d), dict) for d in DIRECTIONS):
            found[path.stem.removeprefix("metrics_")] = metrics
    return found


def guess_datasets(config: Config) -> list[str]:
    """The well-known dataset a run trained on, from its data folder's name; [] if unknown (or
    for a pretrained CLIP loaded as it is, not trained here: its data folder is the default)."""
    if loaded_not_trained(config):
        return []
    folder = Path(config.data.root).name.lower()
    return [name for name in KNOWN_DATASETS if name in folder][:1]


def loaded_not_trained(config: Config) -> bool:
    """A pretrained CLIP saved as it was loaded: ``"clip"`` towers and no ``train.init_from``
    (a fine-tune names the CLIP it started from there)."""
    return config.image.name == CLIP_TOWERS and not config.train.init_from


def base_model(config: Config) -> str | None:
    """The Hub id of the pretrained CLIP a fine-tune started from (the Hub links the two);
    None for other runs, or when it started from a local folder."""
    start = config.train.init_from
    if config.image.name != CLIP_TOWERS or not start or is_local_name(start):
        return None
    return start


def write_model_card(directory: str | Path, name: str, datasets: list[str] | None = None) -> Path:
    """Write ``README.md`` for the checkpoint in ``directory`` (its config and metrics files)."""
    directory = Path(directory)
    config = load_config(directory / CONFIG)
    card = model_card(config, name, read_metrics(directory), datasets)
    card.save(directory / CARD)
    return directory / CARD


def model_card(
    config: Config,
    name: str,
    metrics: dict[str, dict] | None = None,
    datasets: list[str] | None = None,
) -> ModelCard:
    """The Hub page of a model: metadata the Hub indexes, then what it is and how to load it.

    Args:
        config: the run config saved with the checkpoint.
        name: the repo id (or folder) the usage snippet loads.
        metrics: ``{split: metrics}`` as ``read_metrics`` returns; values go in unchanged.
        datasets: Hub dataset ids; default: ``guess_datasets(config)``.
    """
    metrics = metrics or {}
    datasets = guess_datasets(config) if datasets is None else datasets
    encoders = [encoder_tag(config.image.name), encoder_tag(config.text.name)]
    tags = list(dict.fromkeys(["clip", "contrastive", "image-text retrieval", *encoders]))
    results = eval_results(metrics, datasets[0] if datasets else Path(config.data.root).name)
    data = ModelCardData(
        library_name="simpleclip",
        base_model=base_model(config),
        tags=tags,
        datasets=datasets or None,
        metrics=["recall"] if results else None,
        model_name=name if results else None,
        eval_results=results or None,
    )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{card_body(config, name, metrics)}")


def eval_results(metrics: dict[str, dict], dataset: str) -> list[EvalResult]:
    """Recall@K of every split and direction, as the Hub's ``model-index`` entries."""
    return [
        EvalResult(
            task_type="image-text-retrieval",
            task_name=task,
            dataset_type=dataset,
            dataset_name=f"{dataset} ({split})",
            dataset_split=split,
            metric_type="recall",
            metric_name=f"{direction} {recall_key(k)}",
            metric_value=values[direction][recall_key(k)],
        )
        for split, values in metrics.items()
        for direction, task in DIRECTIONS.items()
        for k in KS
    ]


def encoder_tag(name: str) -> str:
    """An encoder's name as a tag: a local folder becomes its last part, a hub id stays."""
    return Path(name).name if is_local_name(name) else name


def public_config(config: Config) -> Config:
    """The config as it may be shared: every local path cut to its last part.

    A shared model must not publish the user's name and folder layout (``/home/alice/...``).
    Loading needs none of these paths (the checkpoint holds the weights and the text model's
    architecture): they only say where the run read and wrote, so their last part (the data
    folder's name, the weights file's name) keeps what a reader wants to know.
    """
    public = copy.deepcopy(config)
    public.data.root = Path(config.data.root).name
    public.train.out_dir = Path(config.train.out_dir).name
    public.text.name = encoder_tag(config.text.name)
    if config.image.weights:
        public.image.weights = Path(config.image.weights).name
    if config.train.init_from:
        public.train.init_from = encoder_tag(config.train.init_from)
    return public


def write_public_config(source: Path, target: Path) -> None:
    """``config.yaml`` of the checkpoint ``source`` written to ``target`` without local paths."""
    save_config(public_config(load_config(source)), target)


def card_body(config: Config, name: str, metrics: dict[str, dict]) -> str:
    """The Markdown under the metadata: the config, the measured Recall@K, how to load it."""
    image, text, head, loss, train = (
        config.image,
        config.text,
        config.head,
        config.loss,
        config.train,
    )
    rows = {
        "image encoder": f"`{image.name}`, pretrained: {image.pretrained}, {image.pooling} pool",
        "text encoder": f"`{encoder_tag(text.name)}`, {text.pooling or 'default'} pooling",
        "captions": f"at most {config.data.max_length} tokens",
        "head": f"{head.kind}, embed_dim {head.embed_dim}",
        "loss": f"{loss.kind}, initial temperature {loss.init_temperature}",
        "data": f"`{Path(config.data.root).name}`",
        "training": f"{train.epochs} epochs, batch size {train.batch_size}",
    }
    about = (
        "A CLIP model trained with simpleclip: an image encoder and a text encoder meeting in "
        "one embedding space, trained with a contrastive loss. The full run config is in "
        "`config.yaml`."
    )
    if image.name == CLIP_TOWERS:  # OpenAI's architecture, from scratch: clip_arch's towers
        rows["image encoder"] = f"CLIP's ViT, {'trained' if image.trainable else 'locked'}"
        rows["text encoder"] = (
            f"CLIP's text transformer, {'trained' if text.trainable else 'locked'}"
        )
        rows["head"] = f"CLIP's projections, embed_dim {head.embed_dim}"
        rows["loss"] = f"{loss.kind}, starting from the CLIP's learned temperature"
    if loaded_not_trained(config):  # no data or training to report
        del rows["data"], rows["training"], rows["loss"]
        about = (
            "A pretrained CLIP saved with simpleclip: OpenAI's architecture written from scratch "
            "(`simpleclip.clip_arch`), with the weights it was loaded with; not trained here."
        )
    elif image.name == CLIP_TOWERS:
        about = (
            f"The pretrained CLIP `{encoder_tag(train.init_from or '')}` fine-tuned with "
            "simpleclip (OpenAI's architecture written from scratch, `simpleclip.clip_arch`), "
            "with a contrastive loss. The full run config is in `config.yaml`."
        )
    lines = [
        f"# {name}",
        "",
        about,
        "",
        "| part | setting |",
        "|---|---|",
        *(f"| {part} | {setting} |" for part, setting in rows.items()),
        "",
        *recall_table(metrics),
        "## Usage",
        "",
        "```python",
        "from simpleclip.model import CLIPModel",
        f'model = CLIPModel.from_pretrained("{name}")',
        'text_embeds = model.encode_text(**model.tokenize(["a dog runs on the beach"]))  # (1, E)',
        "```",
        "",
    ]
    return "\n".join(lines)


def recall_table(metrics: dict[str, Any]) -> list[str]:
    """Markdown lines of the measured Recall@K (in %), one row per split and direction."""
    if not metrics:
        return []
    header = " | ".join(["split", "direction", *(recall_key(k) for k in KS)])
    lines = ["## Retrieval (Recall@K, %)", "", f"| {header} |", "|---" * (2 + len(KS)) + "|"]
    for split, values in metrics.items():
        for direction, task in DIRECTIONS.items():
            cells = [split, task, *recall_cells(values[direction])]
            lines.append("| " + " | ".join(cells) + " |")
    counts = next(iter(metrics.values()))
    if "n_images" in counts:
        lines.append(f"\n{counts['n_images']} images, {counts.get('n_captions', '?')} captions.")
    return [*lines, ""]
