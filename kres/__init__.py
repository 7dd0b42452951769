"""kres: residual networks for Keras 3, from ``kres.build("resnet50")`` to a verified TFLite or
ONNX file."""

__version__ = "0.1.0"

from kres.analysis import model_info
from kres.models import KresError, ResNetSpec, build, list_models, preprocessing
from kres.weights import list_pretrained, pretrained_info

__all__ = ["build", "list_models", "model_info", "preprocessing", "list_pretrained",
           "pretrained_info", "KresError", "ResNetSpec", "__version__"]
