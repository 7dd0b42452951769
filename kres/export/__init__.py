"""Quantise and export kres models to files a phone can run, each verified before it is kept.

>>> manifest = kres.export.export("runs/digits-resnet20", "exports/digits-resnet20")
>>> print(manifest.table())
>>> runner = kres.export.load(manifest.artifact("tflite", "int8"))
>>> logits = runner.predict(images)  # float32 raw pixels in, float32 logits out

The single converters (`to_saved_model`, `to_tflite`, `to_onnx`) write one file without checking
it; `export` converts, searches int8 settings until one agrees with Keras (`precision`), embeds
TFLite metadata (`metadata`), loads every artifact back in its own runtime, compares it with
Keras on held-out images and writes manifest.json. A QAT model's int8 files take its own ranges
(`qat`); `comparison` sets them beside the float model's. `tools/export.py` is the command line.
"""

from kres.errors import ExportError, IntegrityError
from kres.export import comparison, metadata, precision
from kres.export.manifest import Manifest
from kres.export.onnx import to_onnx
from kres.export.pipeline import FORMATS, QUANTIZATIONS, Tolerances, export
from kres.export.runners import Runner, load
from kres.export.savedmodel import to_saved_model
from kres.export.tflite import to_tflite
from kres.files import sha256_of

__all__ = ["ExportError", "FORMATS", "IntegrityError", "Manifest", "QUANTIZATIONS", "Runner",
           "Tolerances", "comparison", "export", "load", "metadata", "precision", "sha256_of",
           "to_onnx", "to_saved_model", "to_tflite"]
