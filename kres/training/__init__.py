"""Training: one path from a notebook cell or `tools/train.py` to a complete run directory.

>>> from kres.training import TrainConfig, train
>>> result = train(TrainConfig(model="resnet20", data="digits", out="runs/digits-resnet20"))
>>> result.metrics["test_accuracy"], result.recipe.peak_lr

`train` is `prepare` (plan, recipe, run directory, data), `build` (the compiled model) and `fit`;
call them one by one to look at or change the model before it trains. `evaluate` measures a
checkpoint's top-1/top-5 the way its source did (tools/validate.py).
"""

from kres.errors import ConfigError
from kres.training.config import RECIPES, Recipe, TrainConfig, resolve
from kres.training.evaluate import Evaluation, evaluate
from kres.training.loop import (Run, TrainResult, build, decay_exempt, fit, make_optimizer,
                                prepare, train)

__all__ = ["ConfigError", "Evaluation", "RECIPES", "Recipe", "Run", "TrainConfig", "TrainResult",
           "build", "decay_exempt", "evaluate", "fit", "make_optimizer", "prepare", "resolve",
           "train"]
