"""A training run directory: the names of its files, stated once for training (which writes
them) and export (which reads them).

    runs/digits-resnet20/
        config.json    {"config": the TrainConfig as given, "resolved": every value used}
        history.csv    one row per epoch
        best.keras     the epoch with the best validation accuracy
        final.keras    the last epoch
        metrics.json   test and validation accuracy, throughput
        curves.png     loss and accuracy per epoch
        logs/          TensorBoard
        backup/        the resumable checkpoint (weights, optimizer state, epoch)
    runs/digits-resnet20-qat/   its quantisation-aware fine-tuning (``--qat``), the same files
"""

from __future__ import annotations

import json
import os

CONFIG = "config.json"
HISTORY = "history.csv"
BEST = "best.keras"
FINAL = "final.keras"
METRICS = "metrics.json"
CURVES = "curves.png"
LOGS = "logs"
BACKUP = "backup"
QAT_SUFFIX = "-qat"  # a QAT fine-tuning run's directory: the trained run's, plus this


def is_run(path) -> bool:
    """Whether ``path`` is a run directory that holds a trained model."""
    return os.path.isdir(path) and os.path.exists(os.path.join(path, BEST))


def read_config(run_dir) -> dict | None:
    """The run's config.json as written (``{"config": ..., "resolved": ...}``), or None."""
    path = os.path.join(run_dir, CONFIG)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)
