"""Step 6 of the course: training a CLIP model, taught in ``notebooks/06_training.ipynb``.

One module per job:
- ``loop``: the epochs, validation, ``metrics.jsonl`` and checkpoints (``train``);
- ``trainer``: one optimisation step and one epoch of them (``Trainer``);
- ``step``: the gradients of one batch, whole or in micro-batches (GradCache);
- ``data``: the dataset folder, splits, tokenizer and caches a run trains on;
- ``optim``: AdamW and the warm-up + cosine schedule;
- ``features``: frozen-encoder feature caching (both towers, or the image tower alone: LiT);
- ``checkpoint``: folders written atomically, and the random state ``resume`` restores;
- ``device``: CUDA, MPS or CPU, and the precision there;
- ``distributed``: torchrun's process group and DDP;
- ``reporting``: where the curves go (``metrics.jsonl``, TensorBoard, W&B);
- ``run_dir``: a new run never overwrites an earlier one by accident (a lock, ``--overwrite``).

``from simpleclip.train import train`` is the entry point. The loop is imported on first use,
so ``simpleclip.train.checkpoint`` and ``simpleclip.train.device`` stay cheap to import for the
model and the command line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simpleclip.train.loop import TrainResult, train
    from simpleclip.train.trainer import Trainer, TrainingDiverged

__all__ = ["TrainResult", "Trainer", "TrainingDiverged", "train"]


def __getattr__(name: str) -> Any:
    # PEP 562: the loop imports the model, which imports ``train.checkpoint``; importing the loop
    # eagerly here would be circular.
    if name in ("Trainer", "TrainingDiverged"):
        from simpleclip.train import trainer

        return getattr(trainer, name)
    if name in __all__:
        from simpleclip.train import loop

        return getattr(loop, name)
    raise AttributeError(f"module 'simpleclip.train' has no attribute {name!r}")
