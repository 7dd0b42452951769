"""Quantise and export kres models to files a phone can run, each verified before it is kept.

>>> manifest = kres.export.export("runs/digits-resnet20", "exports/digits-resnet20")
>>> print(manifest.table())
>>> config = kres.export.ExportConfig(formats="tflite", quantize="int8", io="uint8")
>>> kres.export.export(result.run, "exports/digits-int8", config)   # a TrainResult's run
>>> runner = kres.export.load(manifest.artifact("tflite", "int8"))
>>> logits = runner.predict(images)  # float32 raw pixels in, float32 logits out

The single converters (`to_saved_model`, `to_tflite`, `to_onnx`) write one file without checking
it; `export` converts, searches int8 settings until one agrees with Keras (`precision`), embeds
TFLite metadata (`metadata`), loads every artifact back in its own runtime, compares it with
Keras on held-out images and writes manifest.json. A QAT model's int8 files take its own ranges
(`qat`); `comparison` sets them beside the float model's. What an export does is an
`ExportConfig` (every field an option of ``kres export``, the command line). Every TFLite and
ONNX file gets a deployment report (`deployment`: which delegate takes which op, what it costs)
and the directory a model card, README.md (`card`).
"""

from kres.errors import ExportError, IntegrityError
from kres.export import card, comparison, deployment, metadata, precision
from kres.export.config import FORMATS, QUANTIZATIONS, ExportConfig, Tolerances
from kres.export.manifest import Manifest
from kres.export.onnx import to_onnx
from kres.export.pipeline import default_out, export
from kres.export.runners import Runner, load
from kres.export.savedmodel import to_saved_model
from kres.export.tflite import to_tflite
from kres.files import sha256_of

__all__ = ["ExportConfig", "ExportError", "FORMATS", "IntegrityError", "Manifest", "QUANTIZATIONS",
           "Runner", "Tolerances", "card", "comparison", "default_out", "deployment", "export",
           "load", "metadata", "precision", "sha256_of", "to_onnx", "to_saved_model",
           "to_tflite"]
