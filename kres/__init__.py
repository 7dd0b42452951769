"""kres: residual networks for Keras 3, from ``kres.build("resnet50")`` to a verified TFLite or
ONNX file."""

__version__ = "0.1.0"

from kres import native as _native

_native.import_tensorflow_for_keras()  # before keras: TensorFlow's start-up lines filtered
from kres.analysis import model_info
from kres.models import KresError, ResNetSpec, build, list_models, preprocessing
from kres.weights import list_pretrained, pretrained_info

_SUBMODULES = ("analysis", "bench", "data", "export", "models", "predict", "training", "weights")


def __getattr__(name):
    """``kres.data``, ``kres.training``, ``kres.export`` and ``kres.predict`` (callable:
    ``kres.predict(source, images)``) load on first use, so that ``import kres`` stays quick
    for people who only build models."""
    import importlib

    if name in _SUBMODULES:
        return importlib.import_module(f"kres.{name}")
    raise AttributeError(f"module 'kres' has no attribute {name!r}")


__all__ = ["build", "list_models", "model_info", "preprocessing", "list_pretrained",
           "pretrained_info", "KresError", "ResNetSpec", "data", "training",
           "export", "predict", "__version__"]
