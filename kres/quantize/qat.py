"""`qat`: a trained kres model (or run, or .keras file) becomes its QAT twin."""

from __future__ import annotations

import os

import keras

from kres.errors import ConfigError
from kres.quantize.graph import rewrite
from kres.quantize.layers import ActivationQuantizer
from kres.quantize.observe import observe
from kres.rundir import BEST, Run

INPUT_NAME = "images"  # every kres model's input layer


def is_qat(model):
    """Whether ``model`` is a QAT model (holds fake-quantisation layers)."""
    return any(isinstance(layer, ActivationQuantizer) for layer in model.layers)


def qat(model, images=None, *, decay=0.999):
    """The QAT twin of a trained kres ``model`` (a keras.Model, a .keras file, or a training run
    directory or :class:`kres.rundir.Run`, whose best.keras is used), with activation ranges
    observed on ``images`` (real images as the model takes them; without them the ranges are
    empty until :func:`observe`).

    ``decay``: of the ranges' moving average in training.
    Raises ConfigError (one line) for a model that is not a kres model, a file or run that does
    not exist, and layers that have no int8 equivalent.
    """
    model = load(model)
    if is_qat(model):
        raise ConfigError(f"model {model.name!r} is already a QAT model")
    twin = rewrite(model, decay=decay)
    if images is not None:
        observe(twin, images)
    return twin


def load(model):
    """A functional kres keras.Model from a model, a .keras file or a run directory (a path or
    a :class:`kres.rundir.Run`)."""
    from kres.files import load_keras_archive  # the model and QAT layers are registered here
    from kres.models import get_spec

    if not isinstance(model, keras.Model):
        source = os.fspath(model) if isinstance(model, (str, os.PathLike)) else None
        if source is None:
            raise ConfigError(f"qat() takes a kres keras.Model, a .keras file or a training run "
                              f"directory; got {type(model).__name__}")
        if Run.is_run(source):
            source = Run(source).best
        if not os.path.isfile(source):
            raise ConfigError(f"no trained model at {source!r}: give a training run directory "
                              f"(holding {BEST}) or a .keras file")
        try:
            model = load_keras_archive(source)
        except Exception as error:  # KresError with one line already
            raise ConfigError(str(error)) from None
    names = [layer.name for layer in getattr(model, "layers", [])]
    try:
        get_spec(model.name)
        registered = True
    except Exception:  # noqa: BLE001 - an unknown name is the answer, not an error
        registered = False
    if not registered or not names or names[0] != INPUT_NAME or not hasattr(model, "inputs"):
        raise ConfigError(f"model {model.name!r} is not a kres model (built by kres.build, "
                          f"input layer {INPUT_NAME!r}); QAT rewrites kres ResNets only")
    return model
