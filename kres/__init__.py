"""kres: residual networks for Keras 3, from ``kres.build("resnet50")`` to a verified TFLite or
ONNX file.

``import kres`` is quick: it loads neither TensorFlow nor Keras, and its names load on first use
(``kres.build``, ``kres.data``, ...), so that a command can still choose the Keras backend
(``kres train --backend jax``). Whenever TensorFlow loads, its native start-up notices are
filtered (:mod:`kres.native`); whenever Keras loads, kres' layers are registered with it, so
that ``keras.saving.load_model`` reads kres models once kres is imported.
"""

__version__ = "0.1.0"

import contextlib
import importlib

from kres import imports as _imports
from kres import native as _native
from kres.errors import KresError

_NAMES = {"build": "kres.models", "list_models": "kres.models", "preprocessing": "kres.models",
          "ResNetSpec": "kres.models", "model_info": "kres.analysis",
          "list_pretrained": "kres.weights", "pretrained_info": "kres.weights"}
_SUBMODULES = ("analysis", "bench", "cli", "data", "export", "models", "predict", "quantize",
               "rundir", "training", "weights")


def __getattr__(name):
    """kres' functions and subpackages, each imported on first use."""
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"kres.{name}")
    raise AttributeError(f"module 'kres' has no attribute {name!r}")


@contextlib.contextmanager
def _registering_kres_layers():
    yield
    importlib.import_module("kres.models")  # registers kres' layers with Keras


_imports.on_first_import("tensorflow", _native.filtered)
_imports.on_first_import("keras", _registering_kres_layers)

__all__ = ["build", "list_models", "model_info", "preprocessing", "list_pretrained",
           "pretrained_info", "KresError", "ResNetSpec", "data", "training",
           "export", "predict", "__version__"]
