"""Training: one path from a notebook cell or `tools/train.py` to a complete run directory.

>>> from kres.training import TrainConfig, train
>>> result = train(TrainConfig(model="resnet20", data="digits", out="runs/digits-resnet20"))
>>> result.metrics["test_accuracy"]
"""

from kres.training.config import ConfigError, TrainConfig, resolve
from kres.training.loop import TrainResult, decay_exempt, make_optimizer, train

__all__ = ["ConfigError", "TrainConfig", "TrainResult", "decay_exempt", "make_optimizer",
           "resolve", "train"]
