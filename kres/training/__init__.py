"""Training: one path from a notebook cell or `kres train` to a complete run directory.

>>> from kres.training import TrainConfig, train
>>> result = train(TrainConfig(model="resnet20", data="digits"))   # into runs/digits-resnet20
>>> result.metrics["test_accuracy"], result.recipe.peak_lr
>>> result.run.best, result.run.history                 # the run directory (kres.rundir.Run)

`train` is `prepare` (plan, recipe, run directory, data: a `Prepared`), `build` (the compiled
model) and `fit`; call them one by one to look at or change the model before it trains.
`evaluate` measures a checkpoint's top-1/top-5 the way its source did (`kres validate`).
"""

from kres.errors import ConfigError
from kres.rundir import Run
from kres.training.config import RECIPES, Recipe, TrainConfig, resolve
from kres.training.evaluate import Evaluation, evaluate
from kres.training.loop import (Prepared, TrainResult, build, decay_exempt, fit, make_optimizer,
                                prepare, train)

__all__ = ["ConfigError", "Evaluation", "Prepared", "RECIPES", "Recipe", "Run", "TrainConfig",
           "TrainResult", "build", "decay_exempt", "evaluate", "fit", "make_optimizer", "prepare",
           "resolve", "train"]
