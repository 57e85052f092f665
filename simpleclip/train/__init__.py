"""Step 6 of the course: training a CLIP model, taught in ``notebooks/06_training.ipynb``.

One module per job:
- ``loop``: the epochs, validation, ``metrics.jsonl`` and checkpoints (``train``);
- ``trainer``: one optimisation step and one epoch of them (``Trainer``);
- ``step``: the gradients of one batch, whole or in micro-batches (GradCache);
- ``data``: the dataset folder, splits, tokenizer and caches a run trains on;
- ``optim``: AdamW and the warm-up + cosine schedule;
- ``features``: frozen-encoder feature caching (both towers, or the image tower alone: LiT);
- ``checkpoint``: the random state ``resume`` restores, and a full disk said in one line;
- ``distributed``: torchrun's process group and DDP;
- ``reporting``: where the curves go (``metrics.jsonl``, TensorBoard, W&B);
- ``run_dir``: a new run never overwrites an earlier one by accident (a lock, ``--overwrite``).

``from simpleclip.train import train`` is the entry point. What training shares with the rest of
the package sits below it: the checkpoint folder (``simpleclip.checkpoint``), the device and
precision (``simpleclip.device``) and the ranks (``simpleclip.collectives``).
"""

from __future__ import annotations

from simpleclip.train.loop import TrainResult, train
from simpleclip.train.trainer import Trainer, TrainingDiverged

__all__ = ["TrainResult", "Trainer", "TrainingDiverged", "train"]
